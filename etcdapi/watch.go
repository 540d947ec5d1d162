package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
)

// watchServer serves etcdserverpb.Watch with kvd's watch stream.
type watchServer struct {
	pb.UnimplementedWatchServer
	l rpc.Local
}

// Watch serves one stream of watchers. etcd's "hasleader" metadata
// becomes kvd's own (rpc.RequireLeaderKey): a member that lost its leader
// ends the stream with etcd's "no leader", and clientv3 moves on.
func (s *watchServer) Watch(st grpc.BidiStreamingServer[pb.WatchRequest, pb.WatchResponse]) error {
	ctx := st.Context()
	if hasLeaderRequired(ctx) {
		md, _ := metadata.FromIncomingContext(ctx)
		md = md.Copy()
		md.Set(rpc.RequireLeaderKey, "true")
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	return s.l.Watch(&localStream{
		ServerStream: st,
		ctx:          ctx,
		recv: func(m any) error {
			r, err := st.Recv()
			if err != nil {
				return err
			}
			watchRequest(r, m.(*kvv1.WatchRequest))
			return nil
		},
		send: func(m any) error {
			return st.Send(watchResponse(m.(*kvv1.WatchResponse)))
		},
	})
}

// watchRequest fills out, a fresh kv.v1 request, from r. A request of a
// kind etcd does not define is left empty, which kvd ignores, as etcd
// does.
func watchRequest(r *pb.WatchRequest, out *kvv1.WatchRequest) {
	switch u := r.GetRequestUnion().(type) {
	case *pb.WatchRequest_CreateRequest:
		c := u.CreateRequest
		kc := &kvv1.WatchCreateRequest{
			Key: c.GetKey(), RangeEnd: c.GetRangeEnd(), StartRevision: c.GetStartRevision(),
			ProgressNotify: c.GetProgressNotify(), PrevKv: c.GetPrevKv(), WatchId: c.GetWatchId(), Fragment: c.GetFragment(),
		}
		for _, f := range c.GetFilters() {
			switch f {
			case pb.WatchCreateRequest_NOPUT:
				kc.Filters = append(kc.Filters, kvv1.WatchFilter_WATCH_FILTER_NO_PUT)
			case pb.WatchCreateRequest_NODELETE:
				kc.Filters = append(kc.Filters, kvv1.WatchFilter_WATCH_FILTER_NO_DELETE)
			}
		}
		out.Request = &kvv1.WatchRequest_CreateRequest{CreateRequest: kc}
	case *pb.WatchRequest_CancelRequest:
		out.Request = &kvv1.WatchRequest_CancelRequest{CancelRequest: &kvv1.WatchCancelRequest{WatchId: u.CancelRequest.GetWatchId()}}
	case *pb.WatchRequest_ProgressRequest:
		out.Request = &kvv1.WatchRequest_ProgressRequest{ProgressRequest: &kvv1.WatchProgressRequest{}}
	}
}

// watchResponse is r in etcd's terms. etcd gives a reason only for a
// refused creation (created and canceled at once): a watcher cancelled
// by its client, or ended by a compaction (compact_revision set), has
// none.
func watchResponse(r *kvv1.WatchResponse) *pb.WatchResponse {
	out := &pb.WatchResponse{
		Header: header(r.GetHeader()), WatchId: r.GetWatchId(), Created: r.GetCreated(), Canceled: r.GetCanceled(),
		CompactRevision: r.GetCompactRevision(), Fragment: r.GetFragment(),
	}
	if r.GetCreated() && r.GetCanceled() {
		out.CancelReason = r.GetCancelReason()
	}
	if n := len(r.GetEvents()); n > 0 {
		out.Events = make([]*mvccpb.Event, n)
		for i, ev := range r.GetEvents() {
			t := mvccpb.Event_PUT
			if ev.GetType() == kvv1.EventType_EVENT_TYPE_DELETE {
				t = mvccpb.Event_DELETE
			}
			out.Events[i] = &mvccpb.Event{Type: t, Kv: keyValue(ev.GetKv()), PrevKv: keyValue(ev.GetPrevKv())}
		}
	}
	return out
}
