package rpc

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// maintenanceService serves kv.v1.MaintenanceService.
type maintenanceService struct {
	kvv1.UnimplementedMaintenanceServiceServer
	node    MaintenanceNode
	version string
}

func (m *maintenanceService) Status(ctx context.Context, _ *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	st, err := m.node.Status()
	if err != nil {
		return nil, err
	}
	return &kvv1.StatusResponse{
		Header:          m.node.Header(st.Revision),
		Name:            st.Name,
		Version:         m.version,
		LeaderName:      st.LeaderName,
		LeaderId:        st.LeaderID,
		RaftState:       st.RaftState,
		RaftTerm:        st.RaftTerm,
		CommitIndex:     st.CommitIndex,
		AppliedIndex:    st.AppliedIndex,
		DbSize:          st.DBSize,
		DbSizeInUse:     st.DBSizeInUse,
		CompactRevision: st.CompactRevision,
		IsLearner:       st.IsLearner,
	}, nil
}

// snapshotChunk is the size of one message of a snapshot stream.
const snapshotChunk = 256 * 1024

func (m *maintenanceService) Snapshot(_ *kvv1.SnapshotRequest, stream kvv1.MaintenanceService_SnapshotServer) error {
	if err := m.node.Err(); err != nil {
		return err
	}
	w := &snapshotStreamer{stream: stream, sum: sha256.New(), header: m.node.Header(m.node.Revision())}
	if _, err := m.node.Backup(w, func(size int64) { w.total = uint64(size); w.remaining = uint64(size) }); err != nil {
		return err
	}
	return w.flush(true)
}

// snapshotStreamer cuts the database into messages and hashes it on the way.
type snapshotStreamer struct {
	stream    kvv1.MaintenanceService_SnapshotServer
	sum       hash.Hash
	header    *kvv1.ResponseHeader
	buf       []byte
	total     uint64
	remaining uint64
	sent      bool
}

func (w *snapshotStreamer) Write(p []byte) (int, error) {
	w.sum.Write(p)
	n := len(p)
	for len(p) > 0 {
		take := min(len(p), snapshotChunk-len(w.buf))
		w.buf = append(w.buf, p[:take]...)
		p = p[take:]
		if len(w.buf) == snapshotChunk {
			if err := w.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *snapshotStreamer) flush(last bool) error {
	if len(w.buf) == 0 && !last {
		return nil
	}
	w.remaining -= uint64(len(w.buf))
	msg := &kvv1.SnapshotResponse{Blob: w.buf, RemainingBytes: w.remaining}
	if !w.sent {
		msg.Header, msg.TotalBytes = w.header, w.total
		w.sent = true
	}
	if last {
		msg.Sha256 = w.sum.Sum(nil)
	}
	if err := w.stream.Send(msg); err != nil {
		return fmt.Errorf("send snapshot: %w", err)
	}
	w.buf = make([]byte, 0, snapshotChunk)
	return nil
}

func (m *maintenanceService) HashKV(ctx context.Context, req *kvv1.HashKVRequest) (*kvv1.HashKVResponse, error) {
	// Catch up with the cluster first, so that a member that is merely
	// behind is not reported as different.
	if err := m.node.Linearize(ctx); err != nil {
		return nil, err
	}
	h, rev, compacted, err := m.node.HashKV(req.GetRevision())
	if err != nil {
		return nil, err
	}
	return &kvv1.HashKVResponse{Header: m.node.Header(m.node.Revision()), Hash: h, HashRevision: rev, CompactRevision: compacted}, nil
}

// Defragment rewrites this member's state file without its free space,
// while the member goes on serving.
func (m *maintenanceService) Defragment(ctx context.Context, _ *kvv1.DefragmentRequest) (*kvv1.DefragmentResponse, error) {
	before, after, err := m.node.Defragment(ctx)
	if err != nil {
		return nil, err
	}
	return &kvv1.DefragmentResponse{Header: m.node.Header(m.node.Revision()), DbSizeBefore: before, DbSize: after}, nil
}

// Alarm lists, raises or clears alarms.
func (m *maintenanceService) Alarm(ctx context.Context, req *kvv1.AlarmRequest) (*kvv1.AlarmResponse, error) {
	return m.node.Alarm(ctx, req)
}
