package observe_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"

	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/observe"
)

// staticSource stands in for a member: a caught-up leader.
type staticSource struct{}

func (staticSource) RaftState() string    { return "Leader" }
func (staticSource) RaftTerm() uint64     { return 2 }
func (staticSource) CommitIndex() uint64  { return 10 }
func (staticSource) AppliedIndex() uint64 { return 10 }
func (staticSource) LastLogIndex() uint64 { return 10 }
func (staticSource) DBSizeBytes() int64   { return 1 << 16 }
func (staticSource) Revision() int64      { return 5 }
func (staticSource) KnownLeader() bool    { return true }
func (staticSource) IsLearner() bool      { return false }

func ExampleNewServer() {
	src := staticSource{}
	srv, err := observe.NewServer(observe.Config{
		Addr:   "127.0.0.1:0", // any free port
		Logger: slog.New(slog.DiscardHandler),
	}, src, observe.NewMetrics(src))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	resp, err := http.Get("http://" + srv.Addr() + "/healthz")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 200 ok
}

// The member installs the interceptors on its gRPC server.
func ExampleMetrics_UnaryServerInterceptor() {
	m := observe.NewMetrics(staticSource{})
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
	)
	defer g.Stop()
}
