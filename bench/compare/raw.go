package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// The idle-watcher and idle-lease measurements drive both systems with the
// same hand-written client, so that only the servers differ: kvd's watch and
// lease messages have etcd's field numbers, and the two differ only in the
// services' names.
type rawAPI struct {
	watch, grant, revoke, keepAlive string
}

var (
	kvdAPI = rawAPI{
		watch:     "/kv.v1.WatchService/Watch",
		grant:     "/kv.v1.LeaseService/LeaseGrant",
		revoke:    "/kv.v1.LeaseService/LeaseRevoke",
		keepAlive: "/kv.v1.LeaseService/LeaseKeepAlive",
	}
	etcdAPI = rawAPI{
		watch:     "/etcdserverpb.Watch/Watch",
		grant:     "/etcdserverpb.Lease/LeaseGrant",
		revoke:    "/etcdserverpb.Lease/LeaseRevoke",
		keepAlive: "/etcdserverpb.Lease/LeaseKeepAlive",
	}
)

// idleWatchers holds watchers of one key on streams spread round-robin
// over addrs until close.
type idleWatchers struct {
	conns   []*grpc.ClientConn
	cancel  context.CancelFunc
	streams []grpc.ClientStream
}

// openIdleWatchers opens nStreams watch streams (each on a connection of its
// own, round-robin over addrs) and creates perStream watchers of key on each,
// waiting for every creation to be confirmed.
func openIdleWatchers(ctx context.Context, api rawAPI, addrs []string, nStreams, perStream int, key string) (*idleWatchers, error) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &idleWatchers{cancel: cancel}
	var create []byte
	{
		var inner []byte
		inner = protowire.AppendTag(inner, 1, protowire.BytesType)
		inner = protowire.AppendString(inner, key)
		create = protowire.AppendTag(create, 1, protowire.BytesType)
		create = protowire.AppendBytes(create, inner)
	}
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true, ClientStreams: true}
	for i := range nStreams {
		cc, err := dialRaw(addrs[i%len(addrs)])
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, cc)
		s, err := cc.NewStream(sctx, desc, api.watch)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("open watch stream %d: %w", i, err)
		}
		w.streams = append(w.streams, s)
	}
	errs := make([]error, nStreams)
	var wg sync.WaitGroup
	for i, s := range w.streams {
		wg.Go(func() {
			for range perStream {
				if err := s.SendMsg(&create); err != nil {
					errs[i] = err
					return
				}
			}
			for created := 0; created < perStream; {
				var msg []byte
				if err := s.RecvMsg(&msg); err != nil {
					errs[i] = fmt.Errorf("stream %d after %d watchers: %w", i, created, err)
					return
				}
				f := fields(msg)
				if c, _ := f[4].(uint64); c != 0 {
					errs[i] = fmt.Errorf("stream %d: a watcher was canceled: %q", i, f[6])
					return
				}
				if c, _ := f[3].(uint64); c != 0 {
					created++
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		w.close()
		<-done
		return nil, ctx.Err()
	}
	if err := errors.Join(errs...); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *idleWatchers) close() {
	w.cancel()
	for _, cc := range w.conns {
		_ = cc.Close()
	}
}

// idleLeases is a set of leases renewed every third of their TTL, as
// clientv3 and kvd's SDK do, on streams spread round-robin over members.
type idleLeases struct {
	api     rawAPI
	addrs   []string
	ids     []int64
	ttl     int64
	renewed atomic.Int64
	failed  atomic.Int64
}

const rawCallers = 100 // concurrent grants and revokes

// grantLeases grants n leases of ttl seconds through addrs, rawCallers at a
// time, and returns them.
func grantLeases(ctx context.Context, api rawAPI, addrs []string, n int, ttl int64) (*idleLeases, error) {
	l := &idleLeases{api: api, addrs: addrs, ttl: ttl, ids: make([]int64, n)}
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.VarintType)
	req = protowire.AppendVarint(req, uint64(ttl))
	err := l.each(ctx, func(ctx context.Context, cc *grpc.ClientConn, i int) error {
		var resp []byte
		if err := cc.Invoke(ctx, api.grant, &req, &resp); err != nil {
			return err
		}
		f := fields(resp)
		id, _ := f[2].(uint64)
		if id == 0 {
			return fmt.Errorf("lease grant answered without an id: %q", f[4])
		}
		l.ids[i] = int64(id)
		return nil
	})
	return l, err
}

// revoke revokes every lease, so that the cluster does not expire them
// during later measurements.
func (l *idleLeases) revoke(ctx context.Context) error {
	return l.each(ctx, func(ctx context.Context, cc *grpc.ClientConn, i int) error {
		if l.ids[i] == 0 {
			return nil
		}
		var req, resp []byte
		req = protowire.AppendTag(req, 1, protowire.VarintType)
		req = protowire.AppendVarint(req, uint64(l.ids[i]))
		// A lease may have expired meanwhile (revoking 100,000 takes longer
		// than their TTL): that is as good as revoked.
		if err := cc.Invoke(ctx, l.api.revoke, &req, &resp); err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		return nil
	})
}

// each calls fn for every lease index, rawCallers at a time, caller j on
// connection j mod len(addrs) with a 30-second bound per call.
func (l *idleLeases) each(ctx context.Context, fn func(context.Context, *grpc.ClientConn, int) error) error {
	conns := make([]*grpc.ClientConn, len(l.addrs))
	for i, a := range l.addrs {
		cc, err := dialRaw(a)
		if err != nil {
			return err
		}
		defer cc.Close()
		conns[i] = cc
	}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for j := range rawCallers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(l.ids) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := fn(cctx, conns[j%len(conns)], i)
				cancel()
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("lease %d: %w", i, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// keepAlive renews every lease every third of its TTL, spread evenly over
// that period, on streams round-robin over the members, until ctx ends.
func (l *idleLeases) keepAlive(ctx context.Context, nStreams int) error {
	desc := &grpc.StreamDesc{StreamName: "LeaseKeepAlive", ServerStreams: true, ClientStreams: true}
	period := time.Duration(l.ttl) * time.Second / 3
	var wg sync.WaitGroup
	defer wg.Wait()
	for s := range nStreams {
		cc, err := dialRaw(l.addrs[s%len(l.addrs)])
		if err != nil {
			return err
		}
		defer cc.Close()
		st, err := cc.NewStream(ctx, desc, l.api.keepAlive)
		if err != nil {
			return err
		}
		var mine []int64
		for i := s; i < len(l.ids); i += nStreams {
			mine = append(mine, l.ids[i])
		}
		wg.Go(func() {
			for {
				var msg []byte
				if err := st.RecvMsg(&msg); err != nil {
					return
				}
				if ttl, _ := fields(msg)[3].(uint64); ttl > 0 {
					l.renewed.Add(1)
				} else {
					l.failed.Add(1)
				}
			}
		})
		wg.Go(func() {
			if len(mine) == 0 {
				return
			}
			gap := period / time.Duration(len(mine))
			next := time.Now()
			for {
				for _, id := range mine {
					var req []byte
					req = protowire.AppendTag(req, 1, protowire.VarintType)
					req = protowire.AppendVarint(req, uint64(id))
					if err := st.SendMsg(&req); err != nil {
						if !errors.Is(err, io.EOF) {
							l.failed.Add(1)
						}
						return
					}
					next = next.Add(gap)
					if d := time.Until(next); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					} else if ctx.Err() != nil {
						return
					}
				}
			}
		})
	}
	<-ctx.Done()
	return nil
}
