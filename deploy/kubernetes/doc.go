// Package kubernetes holds the test of deploy/kubernetes, kvd's manifests:
// it decodes every manifest strictly into the Kubernetes API types and
// checks the invariants a kvd cluster depends on (an odd number of members,
// founding members named after the pod ordinals, probes, volumes, the
// disruption budget, anti-affinity, the grace period). No Kubernetes
// cluster is needed. docs/kubernetes.md is the runbook.
package kubernetes
