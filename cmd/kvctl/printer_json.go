package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// jsonPrinter writes one JSON document per command, on one line. Keys and
// values are []byte and so base64-encoded, as etcdctl prints them; ids are
// numbers. Unlike etcdctl, fields are not omitted when zero (count, more,
// kvs), except prev_kv and prev_kvs, which appear only when returned.
type jsonPrinter struct {
	out io.Writer
}

var _ printer = (*jsonPrinter)(nil)

type jsonHeader struct {
	ClusterID uint64 `json:"cluster_id"`
	MemberID  uint64 `json:"member_id"`
	Revision  int64  `json:"revision"`
	RaftTerm  uint64 `json:"raft_term"`
}

type jsonKV struct {
	Key            []byte `json:"key"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Value          []byte `json:"value"`
	Lease          int64  `json:"lease"`
}

type jsonPut struct {
	Header jsonHeader `json:"header"`
	PrevKV *jsonKV    `json:"prev_kv,omitempty"`
}

type jsonGet struct {
	Header jsonHeader `json:"header"`
	KVs    []jsonKV   `json:"kvs"`
	Count  int64      `json:"count"`
	More   bool       `json:"more"`
}

type jsonDel struct {
	Header  jsonHeader `json:"header"`
	Deleted int64      `json:"deleted"`
	PrevKVs []jsonKV   `json:"prev_kvs,omitempty"`
}

type jsonTxn struct {
	Header    jsonHeader       `json:"header"`
	Succeeded bool             `json:"succeeded"`
	Responses []jsonResponseOp `json:"responses"`
}

// jsonResponseOp holds exactly one of its fields, named as in the proto.
type jsonResponseOp struct {
	Range  *jsonGet `json:"response_range,omitempty"`
	Put    *jsonPut `json:"response_put,omitempty"`
	Delete *jsonDel `json:"response_delete_range,omitempty"`
	Txn    *jsonTxn `json:"response_txn,omitempty"`
}

type jsonMember struct {
	ID         uint64 `json:"id"`
	Name       string `json:"name"`
	RaftAddr   string `json:"raft_addr"`
	ClientAddr string `json:"client_addr"`
	IsLearner  bool   `json:"is_learner"`
	IsLeader   bool   `json:"is_leader"`
	Healthy    bool   `json:"healthy"`
	// LastContact is RFC 3339 with nanoseconds, in UTC; absent when never.
	LastContact string `json:"last_contact,omitempty"`
}

// jsonMemberChange is the result of member add, promote or remove: the
// member changed, then the members after the change.
type jsonMemberChange struct {
	Header  jsonHeader   `json:"header"`
	Action  string       `json:"action"` // "add", "promote" or "remove"
	ID      uint64       `json:"id"`
	Name    string       `json:"name"`
	Member  *jsonMember  `json:"member,omitempty"` // the added member
	Members []jsonMember `json:"members"`
}

type jsonLeaderTransfer struct {
	Header jsonHeader `json:"header"`
	Leader string     `json:"leader"`
}

type jsonSnapshotSaved struct {
	Path     string     `json:"path"`
	Size     int64      `json:"size"`
	DBSize   int64      `json:"db_size"`
	SHA256   string     `json:"sha256"`
	Endpoint string     `json:"endpoint"`
	Header   jsonHeader `json:"header"`
}

type jsonMemberHash struct {
	Name            string `json:"name"`
	ID              uint64 `json:"id"`
	Endpoint        string `json:"endpoint"`
	Hash            uint32 `json:"hash"`
	HashRevision    int64  `json:"hash_revision"`
	CompactRevision int64  `json:"compact_revision"`
	Matches         bool   `json:"matches"`
}

type jsonMemberList struct {
	Header  jsonHeader   `json:"header"`
	Members []jsonMember `json:"members"`
}

type jsonStatus struct {
	Endpoint     string `json:"endpoint"`
	Name         string `json:"name"`
	ID           uint64 `json:"id"`
	ClusterID    uint64 `json:"cluster_id"`
	Leader       string `json:"leader"`
	LeaderID     uint64 `json:"leader_id"`
	IsLeader     bool   `json:"is_leader"`
	IsLearner    bool   `json:"is_learner"`
	RaftState    string `json:"raft_state"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Revision     int64  `json:"revision"`
	DBSize       int64  `json:"db_size"`
	DBSizeInUse  int64  `json:"db_size_in_use"`
	Version      string `json:"version"`
}

type jsonCompaction struct {
	Header   jsonHeader `json:"header"`
	Revision int64      `json:"revision"`
}

type jsonDefrag struct {
	Endpoint     string `json:"endpoint"`
	DBSizeBefore int64  `json:"db_size_before"`
	DBSize       int64  `json:"db_size"`
	Took         string `json:"took"`
	Error        string `json:"error,omitempty"`
}

type jsonWatchEvent struct {
	Type   string  `json:"type"` // "PUT" or "DELETE"
	KV     jsonKV  `json:"kv"`
	PrevKV *jsonKV `json:"prev_kv,omitempty"`
}

// jsonWatch is one watch response. progress_notify is set on progress
// notifications, which have no events.
type jsonWatch struct {
	Header          jsonHeader       `json:"header"`
	Events          []jsonWatchEvent `json:"events"`
	CompactRevision int64            `json:"compact_revision"`
	Canceled        bool             `json:"canceled"`
	Created         bool             `json:"created"`
	ProgressNotify  bool             `json:"progress_notify"`
	CancelReason    string           `json:"cancel_reason,omitempty"`
}

type jsonHealth struct {
	Endpoint string `json:"endpoint"`
	Health   bool   `json:"health"`
	Took     string `json:"took"`
	Error    string `json:"error,omitempty"`
}

func (p *jsonPrinter) write(v any) error {
	enc := json.NewEncoder(p.out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func toJSONHeader(h *kvv1.ResponseHeader) jsonHeader {
	return jsonHeader{
		ClusterID: h.GetClusterId(),
		MemberID:  h.GetMemberId(),
		Revision:  h.GetRevision(),
		RaftTerm:  h.GetRaftTerm(),
	}
}

func toJSONKV(kv *kvv1.KeyValue) jsonKV {
	return jsonKV{
		Key:            kv.GetKey(),
		CreateRevision: kv.GetCreateRevision(),
		ModRevision:    kv.GetModRevision(),
		Version:        kv.GetVersion(),
		Value:          kv.GetValue(),
		Lease:          kv.GetLease(),
	}
}

func toJSONKVs(kvs []*kvv1.KeyValue) []jsonKV {
	out := make([]jsonKV, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, toJSONKV(kv))
	}
	return out
}

func toJSONPut(r *kvv1.PutResponse) *jsonPut {
	out := &jsonPut{Header: toJSONHeader(r.GetHeader())}
	if r.GetPrevKv() != nil {
		kv := toJSONKV(r.GetPrevKv())
		out.PrevKV = &kv
	}
	return out
}

func toJSONGet(r *kvv1.RangeResponse) *jsonGet {
	return &jsonGet{Header: toJSONHeader(r.GetHeader()), KVs: toJSONKVs(r.GetKvs()), Count: r.GetCount(), More: r.GetMore()}
}

func toJSONDel(r *kvv1.DeleteRangeResponse) *jsonDel {
	out := &jsonDel{Header: toJSONHeader(r.GetHeader()), Deleted: r.GetDeleted()}
	if len(r.GetPrevKvs()) > 0 {
		out.PrevKVs = toJSONKVs(r.GetPrevKvs())
	}
	return out
}

func toJSONTxn(r *kvv1.TxnResponse) *jsonTxn {
	out := &jsonTxn{Header: toJSONHeader(r.GetHeader()), Succeeded: r.GetSucceeded(), Responses: []jsonResponseOp{}}
	for _, op := range r.GetResponses() {
		var j jsonResponseOp
		switch v := op.GetResponse().(type) {
		case *kvv1.ResponseOp_ResponseRange:
			j.Range = toJSONGet(v.ResponseRange)
		case *kvv1.ResponseOp_ResponsePut:
			j.Put = toJSONPut(v.ResponsePut)
		case *kvv1.ResponseOp_ResponseDeleteRange:
			j.Delete = toJSONDel(v.ResponseDeleteRange)
		case *kvv1.ResponseOp_ResponseTxn:
			j.Txn = toJSONTxn(v.ResponseTxn)
		}
		out.Responses = append(out.Responses, j)
	}
	return out
}

func (p *jsonPrinter) Put(resp *client.PutResponse) error {
	return p.write(toJSONPut(resp.PutResponse))
}

// Get ignores --print-value-only, which is for the simple format; with
// --count-only the server returns no kvs and the count is in "count".
func (p *jsonPrinter) Get(resp *client.GetResponse, _ getFormat) error {
	return p.write(toJSONGet(resp.RangeResponse))
}

func (p *jsonPrinter) Del(resp *client.DeleteResponse) error {
	return p.write(toJSONDel(resp.DeleteRangeResponse))
}

func (p *jsonPrinter) Txn(resp *client.TxnResponse, _ []getFormat) error {
	return p.write(toJSONTxn(resp.TxnResponse))
}

func toJSONMember(m *kvv1.Member) jsonMember {
	out := jsonMember{
		ID:         m.GetId(),
		Name:       m.GetName(),
		RaftAddr:   m.GetRaftAddr(),
		ClientAddr: m.GetClientAddr(),
		IsLearner:  m.GetIsLearner(),
		IsLeader:   m.GetIsLeader(),
		Healthy:    m.GetHealthy(),
	}
	if m.GetLastContact() != nil {
		out.LastContact = m.GetLastContact().AsTime().UTC().Format(time.RFC3339Nano)
	}
	return out
}

func toJSONMembers(members []*kvv1.Member) []jsonMember {
	out := make([]jsonMember, 0, len(members))
	for _, m := range members {
		out = append(out, toJSONMember(m))
	}
	return out
}

func (p *jsonPrinter) MemberList(resp *client.MemberListResponse) error {
	return p.write(jsonMemberList{Header: toJSONHeader(resp.GetHeader()), Members: toJSONMembers(resp.GetMembers())})
}

func (p *jsonPrinter) MemberChange(ch memberChange) error {
	out := jsonMemberChange{
		Header:  toJSONHeader(ch.Header),
		ID:      ch.ID,
		Name:    ch.Name,
		Members: toJSONMembers(ch.Members),
	}
	switch ch.Action {
	case memberAdded:
		out.Action = "add"
	case memberPromoted:
		out.Action = "promote"
	case memberRemoved:
		out.Action = "remove"
	}
	if ch.Member != nil {
		m := toJSONMember(ch.Member)
		out.Member = &m
	}
	return p.write(out)
}

func (p *jsonPrinter) LeaderTransfer(resp *client.LeaderTransferResponse) error {
	return p.write(jsonLeaderTransfer{Header: toJSONHeader(resp.GetHeader()), Leader: resp.GetLeader()})
}

func (p *jsonPrinter) SnapshotSave(s snapshotSaved) error {
	return p.write(jsonSnapshotSaved{
		Path:     s.Path,
		Size:     s.Size,
		DBSize:   s.DBSize,
		SHA256:   hex.EncodeToString(s.SHA256),
		Endpoint: s.Endpoint,
		Header:   toJSONHeader(s.Header),
	})
}

// HashCheck writes a JSON array with one object per member that answered.
func (p *jsonPrinter) HashCheck(hashes []memberHash) error {
	out := make([]jsonMemberHash, 0, len(hashes))
	for _, h := range hashes {
		out = append(out, jsonMemberHash{
			Name:            h.Name,
			ID:              h.ID,
			Endpoint:        h.Endpoint,
			Hash:            h.Resp.GetHash(),
			HashRevision:    h.Resp.GetHashRevision(),
			CompactRevision: h.Resp.GetCompactRevision(),
			Matches:         h.Matches,
		})
	}
	return p.write(out)
}

// EndpointStatus writes a JSON array with one object per endpoint that
// answered.
func (p *jsonPrinter) EndpointStatus(statuses []endpointStatus) error {
	out := make([]jsonStatus, 0, len(statuses))
	for _, s := range statuses {
		r := s.Resp
		out = append(out, jsonStatus{
			Endpoint:     s.Endpoint,
			Name:         r.GetName(),
			ID:           r.GetHeader().GetMemberId(),
			ClusterID:    r.GetHeader().GetClusterId(),
			Leader:       r.GetLeaderName(),
			LeaderID:     r.GetLeaderId(),
			IsLeader:     r.IsLeader(),
			IsLearner:    r.GetIsLearner(),
			RaftState:    r.GetRaftState(),
			Term:         r.GetRaftTerm(),
			CommitIndex:  r.GetCommitIndex(),
			AppliedIndex: r.GetAppliedIndex(),
			Revision:     r.GetHeader().GetRevision(),
			DBSize:       r.GetDbSize(),
			DBSizeInUse:  r.GetDbSizeInUse(),
			Version:      r.GetVersion(),
		})
	}
	return p.write(out)
}

// jsonAlarm is one alarm, with the member id in hex as kvctl prints ids.
type jsonAlarm struct {
	MemberID string `json:"member_id"`
	Alarm    string `json:"alarm"`
}

func (p *jsonPrinter) Alarms(resp *client.AlarmResponse) error {
	out := struct {
		Header jsonHeader  `json:"header"`
		Alarms []jsonAlarm `json:"alarms"`
	}{Header: toJSONHeader(resp.GetHeader()), Alarms: []jsonAlarm{}}
	for _, a := range resp.GetAlarms() {
		out.Alarms = append(out.Alarms, jsonAlarm{MemberID: fmt.Sprintf("%x", a.GetMemberId()), Alarm: alarmName(a.GetAlarm())})
	}
	return p.write(out)
}

func (p *jsonPrinter) Compaction(rev int64, resp *client.CompactResponse) error {
	return p.write(jsonCompaction{Header: toJSONHeader(resp.GetHeader()), Revision: rev})
}

// Defrag writes a JSON array with one object per endpoint, defragmented or
// not.
func (p *jsonPrinter) Defrag(results []defragResult) error {
	out := make([]jsonDefrag, 0, len(results))
	for _, r := range results {
		d := jsonDefrag{Endpoint: r.Endpoint, Took: r.Took.String(), Error: r.Error}
		if r.Resp != nil {
			d.DBSizeBefore, d.DBSize = r.Resp.GetDbSizeBefore(), r.Resp.GetDbSize()
		}
		out = append(out, d)
	}
	return p.write(out)
}

// Watch writes one JSON document, on one line, per response.
func (p *jsonPrinter) Watch(resp client.WatchResponse) error {
	out := jsonWatch{
		Header:          toJSONHeader(resp.Header),
		Events:          make([]jsonWatchEvent, 0, len(resp.Events)),
		CompactRevision: resp.CompactRevision,
		Canceled:        resp.Canceled,
		Created:         resp.Created,
		ProgressNotify:  resp.IsProgressNotify(),
		CancelReason:    resp.CancelReason,
	}
	for _, ev := range resp.Events {
		e := jsonWatchEvent{Type: eventType(ev.GetType()), KV: toJSONKV(ev.GetKv())}
		if ev.GetPrevKv() != nil {
			kv := toJSONKV(ev.GetPrevKv())
			e.PrevKV = &kv
		}
		out.Events = append(out.Events, e)
	}
	return p.write(out)
}

// EndpointHealth writes a JSON array with one object per endpoint, healthy or
// not, as etcdctl does.
func (p *jsonPrinter) EndpointHealth(healths []endpointHealth) error {
	out := make([]jsonHealth, 0, len(healths))
	for _, h := range healths {
		out = append(out, jsonHealth{Endpoint: h.Endpoint, Health: h.Healthy, Took: h.Took.String(), Error: h.Error})
	}
	return p.write(out)
}
