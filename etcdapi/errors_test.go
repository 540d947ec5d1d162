package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/member"
	"github.com/kvd-io/kvd/rpc"
)

// TestErrorTable: each of kvd's errors in the table, wrapped with detail
// as kvd's code wraps them, becomes etcd's status with etcd's exact code
// and message, which clientv3 turns into etcd's own sentinel; and so does
// the same error relayed from another member as kvd's status.
func TestErrorTable(t *testing.T) {
	for _, row := range errorTable {
		t.Run(row.kvd.Error(), func(t *testing.T) {
			wantSt := status.Convert(row.etcd)
			cases := map[string]error{"local": fmt.Errorf("%w: some detail", row.kvd)}
			if relayed := rpc.ToStatus(fmt.Errorf("%w: some detail", row.kvd)); strings.Contains(status.Convert(relayed).Message(), row.kvd.Error()) {
				// Relayed by its text, when kvd's status carries it
				// (not kvd's own deadline message).
				cases["relayed"] = relayed
			}
			for name, err := range cases {
				got := ToStatus(err)
				st, ok := status.FromError(got)
				if !ok || st.Code() != wantSt.Code() || st.Message() != wantSt.Message() {
					t.Errorf("%s: %v, want %v", name, got, row.etcd)
				}
				if client, want := rpctypes.Error(got), rpctypes.Error(row.etcd); client != want {
					t.Errorf("%s: clientv3 sees %#v, want %#v", name, client, want)
				}
			}
		})
	}
}

func TestToStatus(t *testing.T) {
	if ToStatus(nil) != nil {
		t.Fatal("nil error: want nil")
	}
	// An error etcd has no word for keeps kvd's code and message.
	err := fmt.Errorf("%w: target 9", fsm.ErrInvalidCompare)
	if got := ToStatus(err); status.Code(got) != codes.InvalidArgument || status.Convert(got).Message() != err.Error() {
		t.Errorf("unnamed error: %v, want kvd's InvalidArgument with its message", got)
	}
	// A write a follower forwarded and lost track of (internal/peer's
	// relayError) is etcd's timeout due to leader failure.
	forwarded := status.Errorf(codes.Unknown, "%v: forwarding to leader at 127.0.0.1:1 failed after sending; the write may or may not have been applied: transport is closing", member.ErrOutcomeUnknown)
	if got := ToStatus(forwarded); got.Error() != rpctypes.ErrGRPCTimeoutDueToLeaderFail.Error() {
		t.Errorf("forwarded write of unknown outcome: %v, want %v", got, rpctypes.ErrGRPCTimeoutDueToLeaderFail)
	}
	// etcd's own statuses pass as they are.
	if got := ToStatus(rpctypes.ErrGRPCInvalidSortOption); got.Error() != rpctypes.ErrGRPCInvalidSortOption.Error() {
		t.Errorf("etcd status: %v", got)
	}
	// A relayed status of another code with a matching text is not taken
	// for the sentinel.
	other := status.Error(codes.Internal, "requested lease not found somewhere")
	if got := ToStatus(other); got.Error() != other.Error() {
		t.Errorf("relayed status of another code: %v, want it as it is", got)
	}
	// No leader keeps kvd's mark that the request was not applied.
	got := ToStatus(fmt.Errorf("%w: waiting", member.ErrNoLeader))
	if status.Convert(got).Message() != "etcdserver: no leader" || !apierr.IsNotApplied(got) {
		t.Errorf("no leader: %v (not applied: %v)", got, apierr.IsNotApplied(got))
	}
	if got := ToStatus(context.DeadlineExceeded); !errors.Is(rpctypes.Error(got), rpctypes.Error(rpctypes.ErrGRPCDeadlineExceeded)) {
		t.Errorf("deadline: %v", got)
	}
}
