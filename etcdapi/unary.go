package etcdapi

import (
	"context"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"

	"github.com/kvd-io/kvd/member"
	"github.com/kvd-io/kvd/rpc"
)

// unary serves one unary etcd call: it refuses the call, as etcd's
// interceptor does, when the client asked for a leader ("hasleader") and
// this member knows none; else it translates the request (in), makes the
// kv.v1 call through rpc.Local (call), and translates the answer (out).
// Every unary handler of the package is this one line, so that they all
// behave alike.
func unary[ER, KR, KResp, EResp any](ctx context.Context, l rpc.Local, r ER,
	in func(ER) (KR, error), call func(context.Context, KR) (KResp, error), out func(KResp) EResp,
) (EResp, error) {
	var zero EResp
	if err := requireLeader(ctx, l); err != nil {
		return zero, err
	}
	req, err := in(r)
	if err != nil {
		return zero, err
	}
	resp, err := call(ctx, req)
	if err != nil {
		return zero, err
	}
	return out(resp), nil
}

// total makes a translation that cannot fail one that unary takes.
func total[A, B any](fn func(A) B) func(A) (B, error) {
	return func(a A) (B, error) { return fn(a), nil }
}

// requireLeader refuses a call whose client asked, with etcd's metadata
// "hasleader: true", to be served only by a member that knows a leader.
func requireLeader(ctx context.Context, l rpc.Local) error {
	if !hasLeaderRequired(ctx) || !l.Leaderless() {
		return nil
	}
	return member.ErrNoLeader
}

func hasLeaderRequired(ctx context.Context) bool {
	for _, v := range metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataRequireLeaderKey) {
		if v == rpctypes.MetadataHasLeader {
			return true
		}
	}
	return false
}
