package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The floor answers what etcd's tool sends in the rows it runs: puts,
// gets, transactions of a ranged get, lease grants and keep-alives.
func TestFloorAnswersTheToolsRequests(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newFloorServer()
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	put, err := cli.Put(ctx, "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	get, err := cli.Get(ctx, "bench-key", clientv3.WithSerializable())
	if err != nil || len(get.Kvs) != 1 || string(get.Kvs[0].Key) != "bench-key" || len(get.Kvs[0].Value) != valSize {
		t.Fatalf("get: %v, %v", get, err)
	}
	if get.Header.Revision <= put.Header.Revision-1 {
		t.Errorf("revision %d after a put at %d", get.Header.Revision, put.Header.Revision)
	}
	txn, err := cli.Txn(ctx).Then(clientv3.OpGet("", clientv3.WithPrefix(), clientv3.WithLimit(100))).Commit()
	if err != nil || !txn.Succeeded || len(txn.Responses) != 1 || len(txn.Responses[0].GetResponseRange().Kvs) != 100 {
		t.Fatalf("txn: %v, %v", txn, err)
	}
	grant, err := cli.Grant(ctx, 100)
	if err != nil || grant.ID == 0 {
		t.Fatalf("grant: %v, %v", grant, err)
	}
	ka, err := cli.KeepAliveOnce(ctx, grant.ID)
	if err != nil || ka.ID != grant.ID || ka.TTL <= 0 {
		t.Fatalf("keep-alive: %v, %v", ka, err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpDelete("k")).Commit(); err == nil {
		t.Error("a delete in a transaction was answered; the floor does not serve it")
	}
}

// A missed bar names the floor's ratio when the floor is below 1.5 x too.
func TestVerdictNamesTheFloor(t *testing.T) {
	row := toolRow{bar: barThroughput, kvd: measurement{rps: 1200}, etcd: measurement{rps: 1000},
		floor: measurement{rps: 1250}, hasFloor: true}
	if v := row.verdict(); !strings.Contains(v, "missed") || !strings.Contains(v, "the gRPC floor does 1.25 x") {
		t.Errorf("verdict %q", v)
	}
	row.floor.rps = 5000
	if v := row.verdict(); strings.Contains(v, "floor") {
		t.Errorf("verdict %q names a floor above the bar", v)
	}
	row.kvd.rps = 1600
	if v := row.verdict(); v != "≥ 1.5 x: met" {
		t.Errorf("verdict %q", v)
	}
}
