// Package e2e holds end-to-end tests that build the kvd, kvctl and kvdutil
// binaries and run them as real processes on loopback: clusters are started,
// killed with SIGKILL and restarted, and checked through kvctl and the Go
// client; backups are restored with kvdutil.
package e2e
