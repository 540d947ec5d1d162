package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// printer writes command results in one output format. Each -w value has its
// own implementation, in its own file.
// Every method returns the first write error, so a closed stdout fails the
// command.
type printer interface {
	// Put prints the result of put.
	Put(resp *client.PutResponse) error
	// Get prints the result of get, shaped by the get flags in f.
	Get(resp *client.GetResponse, f getFormat) error
	// Del prints the result of del.
	Del(resp *client.DeleteResponse) error
	// Txn prints a transaction's result; formats[i], when present, is how to
	// print the i-th response if it is a read.
	Txn(resp *client.TxnResponse, formats []getFormat) error
	// MemberList prints the members.
	MemberList(resp *client.MemberListResponse) error
	// EndpointStatus prints the endpoints that answered, in --endpoints order.
	EndpointStatus(statuses []endpointStatus) error
	// EndpointHealth prints every endpoint's health, in --endpoints order.
	EndpointHealth(healths []endpointHealth) error
	// MemberChange prints the result of member add, promote or remove.
	MemberChange(ch memberChange) error
	// LeaderTransfer prints the leader after a transfer.
	LeaderTransfer(resp *client.LeaderTransferResponse) error
	// SnapshotSave prints where a snapshot was saved and how to inspect it.
	SnapshotSave(s snapshotSaved) error
	// HashCheck prints the hash of every member that answered, in member
	// list order.
	HashCheck(hashes []memberHash) error
	// Compaction prints the result of compaction at revision rev.
	Compaction(rev int64, resp *client.CompactResponse) error
	// Defrag prints the result of defrag on every endpoint, in order:
	// successes on stdout, failures on stderr (simple format).
	Defrag(results []defragResult) error
	// Watch prints one response of a watch.
	Watch(resp client.WatchResponse) error
	// Alarms prints alarms listed or disarmed.
	Alarms(resp *client.AlarmResponse) error
	// LeaseGrant prints a granted lease.
	LeaseGrant(resp *client.LeaseGrantResponse) error
	// LeaseRevoke prints the revocation of lease id.
	LeaseRevoke(id client.LeaseID, resp *client.LeaseRevokeResponse) error
	// LeaseKeepAlive prints one renewal of lease id; resp is nil when the
	// lease expired or was revoked.
	LeaseKeepAlive(id client.LeaseID, resp *client.LeaseKeepAliveResponse) error
	// LeaseTimeToLive prints a lease's TTLs and, with keys, its keys.
	LeaseTimeToLive(resp *client.LeaseTimeToLiveResponse, keys bool) error
	// LeaseList prints the cluster's leases.
	LeaseList(resp *client.LeaseLeasesResponse) error
	// Lock prints the key of a lock acquired and its fencing token.
	Lock(resp *client.LockResponse) error
	// Leader prints an election's leader (elect, elect --listen).
	Leader(hdr *kvv1.ResponseHeader, kv *kvv1.KeyValue) error
	// AuthChange prints the result of a change of users, roles or auth
	// (enable, user add, role grant-permission...): line in the simple
	// and table formats.
	AuthChange(line string, hdr *kvv1.ResponseHeader) error
	// AuthStatus prints whether auth is on, and the auth revision.
	AuthStatus(resp *kvv1.AuthStatusResponse) error
	// UserGet prints a user's roles.
	UserGet(name string, resp *kvv1.UserGetResponse) error
	// UserList prints the users.
	UserList(resp *kvv1.UserListResponse) error
	// RoleGet prints a role's permissions.
	RoleGet(name string, resp *kvv1.RoleGetResponse) error
	// RoleList prints the roles.
	RoleList(resp *kvv1.RoleListResponse) error
}

// alarmName is an alarm as etcdctl names it: NOSPACE.
func alarmName(t kvv1.AlarmType) string {
	return strings.TrimPrefix(t.String(), "ALARM_TYPE_")
}

// getFormat holds the get flags that change how a read is printed.
type getFormat struct {
	valueOnly bool // --print-value-only: values without keys (simple only)
	countOnly bool // --count-only: the count instead of the keys
}

// endpointStatus is the status of one endpoint, for endpoint status.
type endpointStatus struct {
	Endpoint string
	Resp     *client.StatusResponse
}

// endpointHealth is the health of one endpoint, for endpoint health.
type endpointHealth struct {
	Endpoint string
	Healthy  bool
	Took     time.Duration
	Error    string
}

// memberAction is what member add, promote or remove did.
type memberAction string

const (
	memberAdded    memberAction = "added to"
	memberPromoted memberAction = "promoted in"
	memberRemoved  memberAction = "removed from"
)

// memberChange is the result of member add, promote or remove.
type memberChange struct {
	Action  memberAction
	ID      uint64
	Name    string
	Header  *kvv1.ResponseHeader
	Member  *kvv1.Member // the added member; nil for promote and remove
	Members []*kvv1.Member
	// Join lists the client addresses a new member joins through; empty
	// for promote and remove.
	Join []string
}

// snapshotSaved describes a snapshot file that snapshot save wrote: what
// the stream told, checked against the bytes written. kvctl does not open
// the database; kvdutil snapshot status does.
type snapshotSaved struct {
	Path     string
	Size     int64 // of the file: the database and its SHA-256
	DBSize   int64
	SHA256   []byte
	Endpoint string
	// Header is the stream's: the member that sent the snapshot and its
	// revision when the copy began.
	Header *kvv1.ResponseHeader
}

// defragResult is the outcome of defrag on one endpoint.
type defragResult struct {
	Endpoint string
	Took     time.Duration
	Resp     *client.DefragmentResponse // nil when it failed
	Error    string
}

// memberHash is one member's answer to check hash.
type memberHash struct {
	Name     string
	ID       uint64
	Endpoint string
	Resp     *client.HashKVResponse
	// Matches is true when the member's hash is the majority's.
	Matches bool
}

// newPrinter returns the printer for format, which must be valid (the global
// flags were validated).
func newPrinter(format string, out, errOut io.Writer) printer {
	simple := &simplePrinter{out: out, errOut: errOut, now: time.Now}
	switch format {
	case formatJSON:
		return &jsonPrinter{out: out}
	case formatTable:
		return &tablePrinter{simplePrinter: simple}
	default:
		return simple
	}
}

// eventType names an event's type as etcdctl does: PUT or DELETE.
func eventType(t client.EventType) string {
	return strings.TrimPrefix(t.String(), "EVENT_TYPE_")
}

// leaseID formats a lease id as etcdctl does: hex.
func leaseID(id client.LeaseID) string { return fmt.Sprintf("%x", id) }

// hexID formats a member id as etcdctl does.
func hexID(id uint64) string { return fmt.Sprintf("%x", id) }

// humanBytes formats a size in SI units, as etcdctl's "20 kB".
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	const units = "kMGTPE"
	f := float64(n) / 1000
	i := 0
	for f >= 999.5 && i < len(units)-1 { // would print as 1000
		f /= 1000
		i++
	}
	if f < 9.95 { // would print as 10.0
		return fmt.Sprintf("%.1f %cB", f, units[i])
	}
	return fmt.Sprintf("%.0f %cB", f, units[i])
}

// ago formats how long before now t was: "0.4s ago" under a minute, "2m3s
// ago" beyond; "never" for a zero t. A t in the future (clock skew between
// kvctl and the member) counts as now.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := max(now.Sub(t), 0)
	if d < time.Minute {
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	}
	return d.Round(time.Second).String() + " ago"
}

// printableCell returns s as is when it prints on one line, and quoted with
// Go escapes otherwise, so table cells stay aligned.
func printableCell(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0 {
		return s
	}
	return strconv.Quote(s)
}

// errWriter remembers the first write error, so printers can write many
// lines and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func (e *errWriter) println(args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintln(e.w, args...)
	}
}
