package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/kvd-io/kvd/client"
)

// tablePrinter draws boxed tables with a header row, like etcdctl's table
// format. Put, del and txn results, leader transfer, snapshot save,
// compaction and watch events have no table form and print as simple, as in
// etcdctl.
type tablePrinter struct {
	*simplePrinter
}

var _ printer = (*tablePrinter)(nil)

// Get prints a row per key (KEY, VALUE, revisions, version, lease), or a
// COUNT table with --count-only. Non-printable bytes are shown quoted.
func (p *tablePrinter) Get(resp *client.GetResponse, f getFormat) error {
	if f.countOnly {
		return writeTable(p.out, []string{"COUNT"}, [][]string{{fmt.Sprint(resp.GetCount())}})
	}
	rows := make([][]string, 0, len(resp.GetKvs()))
	for _, kv := range resp.GetKvs() {
		rows = append(rows, []string{
			printableCell(string(kv.GetKey())),
			printableCell(string(kv.GetValue())),
			fmt.Sprint(kv.GetCreateRevision()),
			fmt.Sprint(kv.GetModRevision()),
			fmt.Sprint(kv.GetVersion()),
			fmt.Sprint(kv.GetLease()),
		})
	}
	return writeTable(p.out, []string{"KEY", "VALUE", "CREATE REVISION", "MOD REVISION", "VERSION", "LEASE"}, rows)
}

func (p *tablePrinter) MemberList(resp *client.MemberListResponse) error {
	return writeTable(p.out, memberHeader, memberRows(resp.GetMembers(), p.now()))
}

// MemberChange writes the change's line, then the members after it as a
// table, then, for a new member, how to start it.
func (p *tablePrinter) MemberChange(ch memberChange) error {
	w := &errWriter{w: p.out}
	w.println(memberChangeLine(ch))
	w.println()
	if w.err == nil {
		w.err = writeTable(p.out, memberHeader, memberRows(ch.Members, p.now()))
	}
	p.joinHint(w, ch)
	return w.err
}

// tableStatusHeader is endpoint status's table, narrower than the simple
// format's columns so that the leader and any lagging member stand out: the
// role in words, the commit and applied indexes side by side.
var tableStatusHeader = []string{
	"ENDPOINT", "NAME", "ROLE", "LEADER", "TERM", "COMMIT/APPLIED", "REVISION", "DB SIZE", "DB SIZE IN USE", "VERSION",
}

func (p *tablePrinter) EndpointStatus(statuses []endpointStatus) error {
	rows := make([][]string, 0, len(statuses))
	for _, s := range statuses {
		r := s.Resp
		rows = append(rows, []string{
			s.Endpoint,
			r.GetName(),
			statusRole(r),
			r.GetLeaderName(),
			fmt.Sprint(r.GetRaftTerm()),
			fmt.Sprintf("%d/%d", r.GetCommitIndex(), r.GetAppliedIndex()),
			fmt.Sprint(r.GetHeader().GetRevision()),
			humanBytes(r.GetDbSize()),
			humanBytes(r.GetDbSizeInUse()),
			r.GetVersion(),
		})
	}
	return writeTable(p.out, tableStatusHeader, rows)
}

// statusRole names a member's role: leader, learner, or its raft state in
// lower case (follower, candidate).
func statusRole(r *client.StatusResponse) string {
	switch {
	case r.IsLeader():
		return "leader"
	case r.GetIsLearner():
		return "learner"
	case r.GetRaftState() == "":
		return "unknown"
	default:
		return strings.ToLower(r.GetRaftState())
	}
}

func (p *tablePrinter) HashCheck(hashes []memberHash) error {
	return writeTable(p.out, hashHeader, hashRows(hashes))
}

func (p *tablePrinter) Defrag(results []defragResult) error {
	rows := make([][]string, 0, len(results))
	for _, r := range results {
		before, after := "", ""
		if r.Resp != nil {
			before, after = humanBytes(r.Resp.GetDbSizeBefore()), humanBytes(r.Resp.GetDbSize())
		}
		rows = append(rows, []string{r.Endpoint, before, after, r.Took.String(), r.Error})
	}
	return writeTable(p.out, []string{"ENDPOINT", "DB SIZE BEFORE", "DB SIZE AFTER", "TOOK", "ERROR"}, rows)
}

func (p *tablePrinter) EndpointHealth(healths []endpointHealth) error {
	rows := make([][]string, 0, len(healths))
	for _, h := range healths {
		rows = append(rows, []string{h.Endpoint, fmt.Sprint(h.Healthy), h.Took.String(), h.Error})
	}
	return writeTable(p.out, []string{"ENDPOINT", "HEALTH", "TOOK", "ERROR"}, rows)
}

// writeTable draws header and rows with every column as wide as its widest
// cell:
//
//	+-----+-------+
//	| KEY | VALUE |
//	+-----+-------+
//	| a   | 1     |
//	+-----+-------+
func writeTable(w io.Writer, header []string, rows [][]string) error {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	var sep strings.Builder
	sep.WriteString("+")
	for _, wd := range widths {
		sep.WriteString(strings.Repeat("-", wd+2))
		sep.WriteString("+")
	}
	line := func(cells []string) string {
		var b strings.Builder
		b.WriteString("|")
		for i, wd := range widths {
			var cell string
			if i < len(cells) {
				cell = cells[i]
			}
			b.WriteString(" ")
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", wd-utf8.RuneCountInString(cell)))
			b.WriteString(" |")
		}
		return b.String()
	}
	ew := &errWriter{w: w}
	ew.println(sep.String())
	ew.println(line(header))
	ew.println(sep.String())
	for _, row := range rows {
		ew.println(line(row))
	}
	ew.println(sep.String())
	return ew.err
}
