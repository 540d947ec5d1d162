package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
)

// The gRPC floor: three processes that serve etcd's KV and Lease with
// grpc-go and answers made up on the spot, no store, no raft, no disk. What
// etcd's tool gets from them is what any server built on grpc-go could get
// on this machine at best: a bar above the floor's own ratio to etcd cannot
// be met by working on the store.

// floorEnv, set to a listen address, makes this binary a floor server.
const floorEnv = "KVD_COMPARE_GRPC_FLOOR"

// floorWorkers is kvd's grpc.NumStreamWorkers (server.workerCount).
const floorWorkers = 256

// floorAddrs are the floor's three client addresses.
var floorAddrs = []string{"127.0.0.1:41379", "127.0.0.1:42379", "127.0.0.1:43379"}

// floorCluster is the three floor processes.
type floorCluster struct{ procs }

func (f *floorCluster) endpoints() string { return strings.Join(floorAddrs, ",") }

// startFloor starts a floor process per address (this binary again, with
// floorEnv set) and waits until each answers a Range.
func startFloor(ctx context.Context) (*floorCluster, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f := &floorCluster{procs{what: "the gRPC floor"}}
	for _, addr := range floorAddrs {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), floorEnv+"="+addr)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := f.procs.start(cmd, nil); err != nil {
			_ = f.stop()
			return nil, fmt.Errorf("start the gRPC floor on %s: %w", addr, err)
		}
	}
	for _, addr := range floorAddrs {
		if err := waitFloor(ctx, addr); err != nil {
			_ = f.stop()
			return nil, err
		}
	}
	return f, nil
}

func waitFloor(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := etcdGet(cctx, addr, getKey)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the gRPC floor on %s did not answer: %w", addr, err)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func (f *floorCluster) stop() error { return f.procs.stop(5 * time.Second) }

// serveFloor serves the floor on addr until SIGTERM.
func serveFloor(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := newFloorServer()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		s.Stop()
	}()
	return s.Serve(lis)
}

// newFloorServer returns the floor's gRPC server, not yet serving.
func newFloorServer() *grpc.Server {
	s := grpc.NewServer(grpc.NumStreamWorkers(floorWorkers))
	pb.RegisterKVServer(s, &floorKV{value: []byte(randomValue(valSize))})
	pb.RegisterLeaseServer(s, &floorLease{})
	return s
}

// floorKV answers as a store holding every key would, with the revision
// counting puts.
type floorKV struct {
	pb.UnimplementedKVServer
	rev   atomic.Int64
	value []byte
}

func (k *floorKV) header() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 1, MemberId: 1, Revision: k.rev.Load() + 1, RaftTerm: 1}
}

// Range returns the key itself, or limit keys of a range (at most 100),
// with 256-byte values.
func (k *floorKV) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	n := int64(1)
	if len(r.RangeEnd) > 0 {
		n = min(max(r.Limit, 1), 100)
	}
	resp := &pb.RangeResponse{Header: k.header(), Count: n, More: len(r.RangeEnd) > 0}
	for i := range n {
		key := r.Key
		if i > 0 {
			key = fmt.Appendf(nil, "%08d", i)
		}
		resp.Kvs = append(resp.Kvs, &mvccpb.KeyValue{Key: key, Value: k.value, CreateRevision: 1, ModRevision: 1, Version: 1})
	}
	if r.CountOnly {
		resp.Kvs = nil
	}
	return resp, nil
}

func (k *floorKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	k.rev.Add(1)
	return &pb.PutResponse{Header: k.header()}, nil
}

// Txn takes the success branch.
func (k *floorKV) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp := &pb.TxnResponse{Header: k.header(), Succeeded: true}
	for _, op := range r.Success {
		switch {
		case op.GetRequestRange() != nil:
			rr, _ := k.Range(ctx, op.GetRequestRange())
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}})
		case op.GetRequestPut() != nil:
			pr, _ := k.Put(ctx, op.GetRequestPut())
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}})
		default:
			return nil, fmt.Errorf("the gRPC floor answers ranges and puts in a transaction, not %T", op.Request)
		}
	}
	return resp, nil
}

// floorLease grants every lease and renews every renewal.
type floorLease struct {
	pb.UnimplementedLeaseServer
	id atomic.Int64
}

func (l *floorLease) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{ClusterId: 1, MemberId: 1, RaftTerm: 1}, ID: l.id.Add(1), TTL: r.TTL}, nil
}

func (l *floorLease) LeaseKeepAlive(st pb.Lease_LeaseKeepAliveServer) error {
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		err = st.Send(&pb.LeaseKeepAliveResponse{Header: &pb.ResponseHeader{ClusterId: 1, MemberId: 1, RaftTerm: 1}, ID: r.ID, TTL: 100})
		if err != nil {
			return err
		}
	}
}
