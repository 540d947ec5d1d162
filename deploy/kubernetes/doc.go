// Package kubernetes holds the test of deploy/kubernetes, kvd's manifests:
// it decodes every manifest strictly into the Kubernetes API types and
// checks the invariants a kvd cluster depends on (an odd number of members,
// founding members named after the pod ordinals, probes, volumes, the
// disruption budget, anti-affinity, the grace period, mutual TLS from the
// Secret kvd-tls), and checks that the certificates of
// cert-manager/certificates.yaml and of the docs' `kvdutil certs` line are
// valid for every name members and clients dial. No Kubernetes cluster is
// needed. docs/kubernetes.md is the runbook.
package kubernetes
