package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/kvd-io/kvd/internal/watch"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// RequireLeaderKey is the metadata key with which a client asks that a
// watch stream end (Unavailable) when its member has lost its leader, so
// that it moves to a member that has one (etcd's "hasleader").
const RequireLeaderKey = "kvd-require-leader"

// WatchNode is what WatchService needs.
type WatchNode interface {
	// NewWatchStream opens a stream of watchers on the member's hub.
	NewWatchStream() *watch.Stream
	// LeaderlessFor is how long the member has known no leader; zero
	// while it knows one.
	LeaderlessFor() time.Duration
	// ElectionTimeout is the member's raft election timeout.
	ElectionTimeout() time.Duration
	// WatchProgressInterval is how often idle watchers that asked for it
	// get a progress notification.
	WatchProgressInterval() time.Duration
	Header(rev int64) *kvv1.ResponseHeader
	Draining() <-chan struct{}
}

// watchService serves kv.v1.WatchService.
type watchService struct {
	kvv1.UnimplementedWatchServiceServer
	node WatchNode
	// foreign is the error table of another API's method (Config.Statuses)
	// that serves its watches through Local, nil for kvd's own.
	foreign func(method string) func(error) error
}

// errLeaderLost ends a stream that asked to require a leader.
var errLeaderLost = fmt.Errorf("%w: this member has lost its leader; watch from another member", member.ErrNoLeader)

// Watch serves one stream of watchers: requests are handed to the hub as
// they arrive, and what the hub queues is sent by one goroutine, in order.
func (w *watchService) Watch(st kvv1.WatchService_WatchServer) error {
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	ws := w.node.NewWatchStream()
	defer ws.Close()
	// A refused or ended watcher's reason is the error's text, in the
	// words of the API the stream was opened on.
	refusal := func(err error) string { return err.Error() }
	if method, ok := grpc.MethodFromServerStream(st); ok && w.foreign != nil {
		if fn := w.foreign(method); fn != nil {
			refusal = func(err error) string { return fn(err).Error() }
		}
	}
	if c := callerFrom(ctx); !c.member {
		// The hub refuses the caller's watches outside its permissions
		// and ends those it loses the right to read, as auth changes.
		ws.Authorize(c.user, refusal)
	}
	requireLeader := false
	for _, v := range metadata.ValueFromIncomingContext(ctx, RequireLeaderKey) {
		requireLeader = requireLeader || v == "true"
	}

	// The sender and the monitor end with the stream (ctx); the receiver
	// ends when the client's side does, which gRPC brings about once this
	// handler returns. A client that half-closes keeps its watchers.
	done := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { done <- w.send(ctx, st, ws) })
	wg.Go(func() { done <- w.monitor(ctx, ws, requireLeader) })
	go func() {
		if err := w.receive(st, ws); err != nil {
			done <- nil // the stream is broken: end it
		}
	}()
	err := <-done
	cancel()
	wg.Wait()
	return err
}

// send sends what the hub queues for the stream until ctx ends.
func (w *watchService) send(ctx context.Context, st kvv1.WatchService_WatchServer, ws *watch.Stream) error {
	for {
		rs, err := ws.Next(ctx)
		if err != nil {
			if errors.Is(err, watch.ErrStreamClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		// Responses of one revision (to many watchers) share a header:
		// gRPC encodes each before Send returns, and nothing changes it.
		var header *kvv1.ResponseHeader
		for _, r := range rs {
			if rev := r.GetHeader().GetRevision(); header == nil || header.GetRevision() != rev {
				header = w.node.Header(rev)
			}
			r.Header = header
			if err := st.Send(r); err != nil {
				return err
			}
		}
	}
}

// receive hands the client's requests to the hub until the client
// half-closes (nil) or the stream fails.
func (w *watchService) receive(st kvv1.WatchService_WatchServer, ws *watch.Stream) error {
	for {
		req, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch r := req.GetRequest().(type) {
		case *kvv1.WatchRequest_CreateRequest:
			ws.Watch(r.CreateRequest) // authorized by the hub (Authorize)
		case *kvv1.WatchRequest_CancelRequest:
			ws.Cancel(r.CancelRequest.GetWatchId())
		case *kvv1.WatchRequest_ProgressRequest:
			ws.RequestProgress()
		}
	}
}

// monitor sends idle watchers their progress notifications, and ends the
// stream when the member begins to shut down (the client resumes on
// another member) or, when the client asked for it, when the member has had
// no leader for longer than its election timeout.
func (w *watchService) monitor(ctx context.Context, ws *watch.Stream, requireLeader bool) error {
	progress := time.NewTicker(w.node.WatchProgressInterval())
	defer progress.Stop()
	check := time.NewTicker(max(w.node.ElectionTimeout()/2, 10*time.Millisecond))
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.node.Draining():
			return member.ErrStopped
		case <-progress.C:
			ws.NotifyIdle()
		case <-check.C:
			if requireLeader && w.node.LeaderlessFor() > w.node.ElectionTimeout() {
				return errLeaderLost
			}
		}
	}
}
