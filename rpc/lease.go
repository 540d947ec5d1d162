package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// LeaseNode is what LeaseService needs.
type LeaseNode interface {
	LeaseGrant(ctx context.Context, id, ttl int64) (*kvv1.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, id int64) (*kvv1.LeaseRevokeResponse, error)
	// LeaseRenew renews a lease (asking the leader if need be) and returns
	// its TTL; member.ErrLeaseNotFound when it does not exist.
	LeaseRenew(ctx context.Context, id int64) (int64, error)
	LeaseTimeToLive(ctx context.Context, id int64, keys bool) (*kvv1.LeaseTimeToLiveResponse, error)
	Leases(ctx context.Context) (*kvv1.LeaseLeasesResponse, error)
	// MinLeaseTTL is the shortest TTL a lease may be granted, in seconds.
	MinLeaseTTL() int64
	Header(rev int64) *kvv1.ResponseHeader
	Revision() int64
	RequestTimeout() time.Duration
	Draining() <-chan struct{}
}

// leaseService serves kv.v1.LeaseService.
type leaseService struct {
	kvv1.UnimplementedLeaseServiceServer
	node LeaseNode
	cfg  Config
}

func (l *leaseService) LeaseGrant(ctx context.Context, req *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	resp, err := l.node.LeaseGrant(ctx, req.GetId(), req.GetTtl())
	if err != nil {
		return nil, err
	}
	resp.Header = l.node.Header(resp.GetHeader().GetRevision())
	return resp, nil
}

func (l *leaseService) LeaseRevoke(ctx context.Context, req *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	resp, err := l.node.LeaseRevoke(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	resp.Header = l.node.Header(resp.GetHeader().GetRevision())
	return resp, nil
}

func (l *leaseService) LeaseTimeToLive(ctx context.Context, req *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	return l.node.LeaseTimeToLive(ctx, req.GetId(), req.GetKeys())
}

func (l *leaseService) LeaseLeases(ctx context.Context, _ *kvv1.LeaseLeasesRequest) (*kvv1.LeaseLeasesResponse, error) {
	return l.node.Leases(ctx)
}

// leaseNotFound reports whether a renewal failed because the lease does not
// exist: this member's error, or the leader's NotFound relayed.
func leaseNotFound(err error) bool {
	return errors.Is(err, fsm.ErrLeaseNotFound) || status.Code(err) == codes.NotFound
}

// keepAliveInFlight bounds the renewals one keep-alive stream has in
// flight; the stream stops reading while it is reached.
const keepAliveInFlight = 256

// errKeepAliveDraining ends keep-alive streams when the member shuts down,
// so that their clients move to another member.
var errKeepAliveDraining = fmt.Errorf("%w: this member is shutting down; keep alive through another", member.ErrNotApplied)

// LeaseKeepAlive renews leases as their requests arrive, several at once,
// and answers each when it is renewed: answers may come out of order (each
// names its lease). A lease that does not exist is answered with ttl 0, as
// etcd does; any other failure ends the stream, and the client opens a
// new one.
func (l *leaseService) LeaseKeepAlive(st kvv1.LeaseService_LeaseKeepAliveServer) error {
	ctx, cancel := context.WithCancel(st.Context())
	defer cancel()
	var (
		sendMu   sync.Mutex
		inFlight sync.WaitGroup
		failOnce sync.Once
		failed   = make(chan error, 1)
	)
	fail := func(err error) {
		failOnce.Do(func() { failed <- err; cancel() })
	}
	slots := make(chan struct{}, keepAliveInFlight)
	reqs := make(chan *kvv1.LeaseKeepAliveRequest)
	go func() {
		defer close(reqs)
		for {
			req, err := st.Recv()
			if err != nil {
				return // the client closed its side, or the stream broke
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer inFlight.Wait()
	for {
		var req *kvv1.LeaseKeepAliveRequest
		var ok bool
		select {
		case req, ok = <-reqs:
			if !ok {
				return nil
			}
		case err := <-failed:
			return err
		case <-l.node.Draining():
			return errKeepAliveDraining
		}
		select {
		case slots <- struct{}{}:
		case err := <-failed:
			return err
		case <-l.node.Draining():
			return errKeepAliveDraining
		}
		inFlight.Add(1)
		l.cfg.Workers.Submit(func() {
			defer inFlight.Done()
			defer func() { <-slots }()
			rctx, rcancel := context.WithTimeout(ctx, l.node.RequestTimeout())
			ttl, err := l.node.LeaseRenew(rctx, req.GetId())
			rcancel()
			if leaseNotFound(err) {
				ttl, err = 0, nil
			}
			if err != nil {
				fail(err)
				return
			}
			resp := &kvv1.LeaseKeepAliveResponse{Header: l.node.Header(l.node.Revision()), Id: req.GetId(), Ttl: ttl}
			sendMu.Lock()
			err = st.Send(resp)
			sendMu.Unlock()
			if err != nil {
				fail(err)
			}
		})
	}
}
