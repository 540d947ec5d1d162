// Package server assembles one kvd member: the member itself (package
// member: raft, the state machine, its lifecycle), the calls it makes to
// other members (package internal/peer), its gRPC API (package rpc), and its
// metrics and probes (package observe). cmd/kvd runs one; servertest builds
// in-process clusters of them.
package server
