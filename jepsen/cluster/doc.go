// Package cluster runs real kvd processes as separate hosts on one machine.
//
// Each member gets its own network namespace (kvdj-n1, kvdj-n2, ...) joined
// to a bridge in the root namespace (kvdj0) by a veth pair, and an address in
// a private /24 (by default 10.213.0.0/24: the bridge is .1, member i is
// .10+i). kvd is started with `ip netns exec`, so its client API and raft
// listen on the member's own address, and the harness in the root namespace
// reaches the members the way clients on other hosts would.
//
// Faults act on those processes and namespaces: SIGKILL and restart on the
// same data directory, an empty data directory and a restart with --join
// (a member removed through the SDK rejoining under its old name and
// addresses), SIGSTOP and SIGCONT, and partitions made of iptables
// DROP rules on INPUT inside the members' namespaces (a DROP on one side
// breaks TCP both ways; host FORWARD rules do not see bridged veth traffic
// reliably, rules inside the namespaces always do).
//
// Because the host may filter bridged traffic (br_netfilter with
// net.bridge.bridge-nf-call-iptables=1 and a FORWARD policy of DROP, as
// Docker sets up), Setup inserts one ACCEPT rule for traffic within the
// bridge at the top of the host's FORWARD chain, tagged with a comment, and
// Teardown deletes it. No sysctl is changed.
//
// Everything is named with fixed prefixes, and Cleanup removes whatever a
// crashed run left behind: processes inside the namespaces, the namespaces,
// the veths, the bridge and the FORWARD rule. Setup runs it first. A lock
// file keeps two runs from sharing the names.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
package cluster
