// Package compose holds the tests of deploy/compose/compose.yaml, kvd's
// three-member cluster in containers with mutual TLS: static checks of the
// file that always run, and TestComposeCluster, which brings the cluster up
// with Docker, talks to it over TLS with a client certificate, checks that
// plaintext is refused, kills and restarts a member, and tears everything
// down. `make
// compose-test` (part of `make test` when Docker works) runs the latter.
package compose
