package etcdapi_test

import (
	"context"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

// BenchmarkAPIs compares a call through the etcd API with the same call
// through kv.v1, on one connection to a one-member cluster: the
// difference is what the translation and the delegation cost.
func BenchmarkAPIs(b *testing.B) {
	c := servertest.New(b, 1)
	cc := c.Member("m1").Conn()
	ekv, kkv := pb.NewKVClient(cc), kvv1.NewKVServiceClient(cc)
	ctx := context.Background()
	if _, err := kkv.Put(ctx, &kvv1.PutRequest{Key: []byte("bench/key"), Value: make([]byte, 256)}); err != nil {
		b.Fatal(err)
	}
	calls := []struct {
		name string
		fn   func(i int) error
	}{
		{"range-serializable/etcd", func(int) error {
			_, err := ekv.Range(ctx, &pb.RangeRequest{Key: []byte("bench/key"), Serializable: true})
			return err
		}},
		{"range-serializable/kvd", func(int) error {
			_, err := kkv.Range(ctx, &kvv1.RangeRequest{Key: []byte("bench/key"), Serializable: true})
			return err
		}},
		{"range-linearizable/etcd", func(int) error {
			_, err := ekv.Range(ctx, &pb.RangeRequest{Key: []byte("bench/key")})
			return err
		}},
		{"range-linearizable/kvd", func(int) error {
			_, err := kkv.Range(ctx, &kvv1.RangeRequest{Key: []byte("bench/key")})
			return err
		}},
		{"put/etcd", func(i int) error {
			_, err := ekv.Put(ctx, &pb.PutRequest{Key: fmt.Appendf(nil, "bench/%d", i%1000), Value: make([]byte, 256)})
			return err
		}},
		{"put/kvd", func(i int) error {
			_, err := kkv.Put(ctx, &kvv1.PutRequest{Key: fmt.Appendf(nil, "bench/%d", i%1000), Value: make([]byte, 256)})
			return err
		}},
	}
	for _, call := range calls {
		b.Run(call.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := call.fn(i); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
