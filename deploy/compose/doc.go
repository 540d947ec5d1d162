// Package compose holds the tests of deploy/compose/compose.yaml, kvd's
// three-member cluster in containers: a static check of the file that always
// runs, and TestComposeCluster, which brings the cluster up with Docker,
// kills and restarts a member, and tears everything down. `make
// compose-test` (part of `make test` when Docker works) runs the latter.
package compose
