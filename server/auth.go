package server

import (
	"context"
	"sync/atomic"

	"github.com/kvd-io/kvd/member"
	"github.com/kvd-io/kvd/rpc"
)

// memberCreds add the member token to every call a member makes to another
// (forwarded writes, member RPCs), once auth was first enabled and the
// cluster has a secret. Like passwords and tokens, it travels in the clear
// without TLS: see docs/operations.md for what that protects against.
type memberCreds struct {
	m *atomic.Pointer[member.Member]
}

func (c memberCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	m := c.m.Load()
	if m == nil {
		return nil, nil
	}
	if tok := m.MemberToken(); tok != "" {
		return map[string]string{rpc.MemberTokenMetadataKey: tok}, nil
	}
	return nil, nil
}

func (memberCreds) RequireTransportSecurity() bool { return false }
