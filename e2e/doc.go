// Package e2e holds end-to-end tests that build the kvd and kvctl binaries
// and run them as real processes on loopback: clusters are started, killed
// with SIGKILL and restarted, and checked through kvctl and the Go client.
package e2e
