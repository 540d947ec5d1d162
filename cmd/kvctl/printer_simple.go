package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// simplePrinter writes etcdctl's default format: one value per line, in the
// same layout etcdctl uses.
type simplePrinter struct {
	out    io.Writer
	errOut io.Writer
	now    func() time.Time // for "last contact 0.4s ago"
}

var _ printer = (*simplePrinter)(nil)

// printKV writes a key line then a value line, or the value line alone. Like
// etcdctl, the value line is written even when it is empty (--keys-only).
func printKV(w *errWriter, valueOnly bool, kv *kvv1.KeyValue) {
	if !valueOnly {
		w.println(string(kv.GetKey()))
	}
	w.println(string(kv.GetValue()))
}

func (p *simplePrinter) Put(resp *client.PutResponse) error {
	w := &errWriter{w: p.out}
	p.put(w, resp.PutResponse)
	return w.err
}

func (p *simplePrinter) put(w *errWriter, resp *kvv1.PutResponse) {
	w.println("OK")
	if resp.GetPrevKv() != nil {
		printKV(w, false, resp.GetPrevKv())
	}
}

func (p *simplePrinter) Get(resp *client.GetResponse, f getFormat) error {
	w := &errWriter{w: p.out}
	p.get(w, resp.RangeResponse, f)
	return w.err
}

func (p *simplePrinter) get(w *errWriter, resp *kvv1.RangeResponse, f getFormat) {
	if f.countOnly {
		w.println(resp.GetCount())
		return
	}
	for _, kv := range resp.GetKvs() {
		printKV(w, f.valueOnly, kv)
	}
}

func (p *simplePrinter) Del(resp *client.DeleteResponse) error {
	w := &errWriter{w: p.out}
	p.del(w, resp.DeleteRangeResponse)
	return w.err
}

func (p *simplePrinter) del(w *errWriter, resp *kvv1.DeleteRangeResponse) {
	w.println(resp.GetDeleted())
	for _, kv := range resp.GetPrevKvs() {
		printKV(w, false, kv)
	}
}

// Txn writes SUCCESS or FAILURE, then a blank line before each response,
// printed as the matching single command prints it.
func (p *simplePrinter) Txn(resp *client.TxnResponse, formats []getFormat) error {
	w := &errWriter{w: p.out}
	p.txn(w, resp.TxnResponse, formats)
	return w.err
}

func (p *simplePrinter) txn(w *errWriter, resp *kvv1.TxnResponse, formats []getFormat) {
	if resp.GetSucceeded() {
		w.println("SUCCESS")
	} else {
		w.println("FAILURE")
	}
	for i, r := range resp.GetResponses() {
		w.println()
		switch v := r.GetResponse().(type) {
		case *kvv1.ResponseOp_ResponsePut:
			p.put(w, v.ResponsePut)
		case *kvv1.ResponseOp_ResponseRange:
			var f getFormat
			if i < len(formats) {
				f = formats[i]
			}
			p.get(w, v.ResponseRange, f)
		case *kvv1.ResponseOp_ResponseDeleteRange:
			p.del(w, v.ResponseDeleteRange)
		case *kvv1.ResponseOp_ResponseTxn:
			p.txn(w, v.ResponseTxn, nil)
		default:
			w.printf("unexpected response %v\n", r)
		}
	}
}

// MemberList writes one line per member: id, name, raft address, client
// address, is learner, is leader, healthy, last contact.
func (p *simplePrinter) MemberList(resp *client.MemberListResponse) error {
	w := &errWriter{w: p.out}
	p.memberLines(w, resp.GetMembers())
	return w.err
}

func (p *simplePrinter) memberLines(w *errWriter, members []*kvv1.Member) {
	for _, row := range memberRows(members, p.now()) {
		w.println(strings.Join(row, ", "))
	}
}

// MemberChange writes etcdctl's "Member <id> added to cluster <id>", then
// the members after the change as member list does, then, for a new member,
// how to start it.
func (p *simplePrinter) MemberChange(ch memberChange) error {
	w := &errWriter{w: p.out}
	w.println(memberChangeLine(ch))
	w.println()
	p.memberLines(w, ch.Members)
	p.joinHint(w, ch)
	return w.err
}

func memberChangeLine(ch memberChange) string {
	return fmt.Sprintf("Member %s %s cluster %s", hexID(ch.ID), ch.Action, hexID(ch.Header.GetClusterId()))
}

// joinHint writes the kvd command that starts an added member.
func (p *simplePrinter) joinHint(w *errWriter, ch memberChange) {
	if ch.Action != memberAdded || ch.Member == nil {
		return
	}
	w.println()
	w.println("Start the new member on an empty data dir with:")
	w.println("  " + joinCommand(ch.Member, ch.Join))
}

// joinCommand is the kvd command line that starts m and joins it through the
// client addresses in join.
func joinCommand(m *kvv1.Member, join []string) string {
	args := []string{"kvd", "--name", m.GetName(), "--raft-addr", m.GetRaftAddr()}
	if a := m.GetClientAddr(); a != "" {
		args = append(args, "--client-addr", a)
	}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	} else {
		args = append(args, "--join", "<client address of a member>")
	}
	if m.GetIsLearner() {
		args = append(args, "--learner")
	}
	return strings.Join(args, " ")
}

// LeaderTransfer writes "Leadership transferred to <name>".
func (p *simplePrinter) LeaderTransfer(resp *client.LeaderTransferResponse) error {
	w := &errWriter{w: p.out}
	if resp.GetLeader() == "" {
		w.println("Leadership transferred; the new leader is not known yet")
	} else {
		w.printf("Leadership transferred to %s\n", resp.GetLeader())
	}
	return w.err
}

// SnapshotSave writes etcdctl's "Snapshot saved at FILE", with the size of
// the file and the member's revision when the copy began, then the kvdutil
// command that shows what the file holds.
func (p *simplePrinter) SnapshotSave(s snapshotSaved) error {
	w := &errWriter{w: p.out}
	if s.Header != nil {
		w.printf("Snapshot saved at %s (%d bytes, revision %d)\n", s.Path, s.Size, s.Header.GetRevision())
	} else {
		w.printf("Snapshot saved at %s (%d bytes)\n", s.Path, s.Size)
	}
	w.printf("To see what it holds: kvdutil snapshot status %s\n", shellQuote(s.Path))
	return w.err
}

// HashCheck writes one comma-separated line per member, in the columns of
// the table format.
func (p *simplePrinter) HashCheck(hashes []memberHash) error {
	w := &errWriter{w: p.out}
	for _, row := range hashRows(hashes) {
		w.println(strings.Join(row, ", "))
	}
	return w.err
}

// Alarms writes etcdctl's "memberID:ID alarm:NOSPACE", one line each.
func (p *simplePrinter) Alarms(resp *client.AlarmResponse) error {
	w := &errWriter{w: p.out}
	for _, a := range resp.GetAlarms() {
		w.println(fmt.Sprintf("memberID:%x alarm:%s", a.GetMemberId(), alarmName(a.GetAlarm())))
	}
	return w.err
}

// Compaction writes etcdctl's "compacted revision REV".
func (p *simplePrinter) Compaction(rev int64, _ *client.CompactResponse) error {
	_, err := fmt.Fprintf(p.out, "compacted revision %d\n", rev)
	return err
}

// Defrag writes "Finished defragmenting member ENDPOINT (BEFORE -> AFTER) in
// TOOK" on stdout for each member defragmented, and "Failed to defragment
// member ENDPOINT after TOOK (ERROR)" on stderr for each failure, the
// counterparts of etcdctl's lines.
func (p *simplePrinter) Defrag(results []defragResult) error {
	w, werr := &errWriter{w: p.out}, &errWriter{w: p.errOut}
	for _, r := range results {
		if r.Resp == nil {
			werr.printf("Failed to defragment member %s after %v (%s)\n", r.Endpoint, r.Took, r.Error)
			continue
		}
		w.printf("Finished defragmenting member %s (%s -> %s) in %v\n", r.Endpoint,
			humanBytes(r.Resp.GetDbSizeBefore()), humanBytes(r.Resp.GetDbSize()), r.Took)
	}
	if w.err != nil {
		return w.err
	}
	return werr.err
}

// Watch writes each event as etcdctl does: its type (PUT or DELETE), then,
// when the watch asked for it and the key existed, the previous key and
// value lines, then the key and value lines (the value is empty for a
// delete). A progress notification is "progress notify: REV". The end of a
// watch is left to the command's error.
func (p *simplePrinter) Watch(resp client.WatchResponse) error {
	w := &errWriter{w: p.out}
	if resp.IsProgressNotify() {
		w.printf("progress notify: %d\n", resp.Header.GetRevision())
	}
	for _, ev := range resp.Events {
		w.println(eventType(ev.GetType()))
		if ev.GetPrevKv() != nil {
			printKV(w, false, ev.GetPrevKv())
		}
		printKV(w, false, ev.GetKv())
	}
	return w.err
}

// EndpointStatus writes one comma-separated line per endpoint, in the columns
// of the table format.
func (p *simplePrinter) EndpointStatus(statuses []endpointStatus) error {
	w := &errWriter{w: p.out}
	for _, row := range statusRows(statuses) {
		w.println(strings.Join(row, ", "))
	}
	return w.err
}

// EndpointHealth writes etcdctl's lines: healthy endpoints on stdout,
// unhealthy ones on stderr.
func (p *simplePrinter) EndpointHealth(healths []endpointHealth) error {
	w, werr := &errWriter{w: p.out}, &errWriter{w: p.errOut}
	for _, h := range healths {
		if h.Healthy {
			w.printf("%s is healthy: successfully committed proposal: took = %v\n", h.Endpoint, h.Took)
		} else {
			werr.printf("%s is unhealthy: %s\n", h.Endpoint, h.Error)
		}
	}
	if w.err != nil {
		return w.err
	}
	return werr.err
}

var memberHeader = []string{"ID", "NAME", "RAFT ADDR", "CLIENT ADDR", "IS LEARNER", "IS LEADER", "HEALTHY", "LAST CONTACT"}

func memberRows(members []*kvv1.Member, now time.Time) [][]string {
	rows := make([][]string, 0, len(members))
	for _, m := range members {
		var last time.Time
		if m.GetLastContact() != nil {
			last = m.GetLastContact().AsTime()
		}
		rows = append(rows, []string{
			hexID(m.GetId()), m.GetName(), m.GetRaftAddr(), m.GetClientAddr(),
			fmt.Sprint(m.GetIsLearner()), fmt.Sprint(m.GetIsLeader()),
			fmt.Sprint(m.GetHealthy()), ago(last, now),
		})
	}
	return rows
}

var hashHeader = []string{"NAME", "ID", "ENDPOINT", "HASH", "HASH REVISION", "COMPACT REVISION", "MATCHES"}

func hashRows(hashes []memberHash) [][]string {
	rows := make([][]string, 0, len(hashes))
	for _, h := range hashes {
		rows = append(rows, []string{
			h.Name, hexID(h.ID), h.Endpoint, fmt.Sprintf("%08x", h.Resp.GetHash()),
			fmt.Sprint(h.Resp.GetHashRevision()), fmt.Sprint(h.Resp.GetCompactRevision()),
			fmt.Sprint(h.Matches),
		})
	}
	return rows
}

func statusRows(statuses []endpointStatus) [][]string {
	rows := make([][]string, 0, len(statuses))
	for _, s := range statuses {
		r := s.Resp
		rows = append(rows, []string{
			s.Endpoint,
			hexID(r.GetHeader().GetMemberId()),
			r.GetName(),
			r.GetVersion(),
			humanBytes(r.GetDbSize()),
			humanBytes(r.GetDbSizeInUse()),
			fmt.Sprint(r.IsLeader()),
			fmt.Sprint(r.GetIsLearner()),
			r.GetRaftState(),
			fmt.Sprint(r.GetRaftTerm()),
			fmt.Sprint(r.GetCommitIndex()),
			fmt.Sprint(r.GetAppliedIndex()),
			fmt.Sprint(r.GetHeader().GetRevision()),
			r.GetLeaderName(),
		})
	}
	return rows
}
