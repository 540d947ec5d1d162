package member

import (
	"context"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

// Authorization is the API's (package rpc): it checks each request
// against the auth state of this member's FSM, then puts who asked and at
// which auth revision into the command (WithAuthInfo), so that the state
// machine authorizes again a command the auth state changed under (see
// fsmv1.Command.auth). Member-to-member traffic carries the member token
// (MemberToken) when no peer certificate proves it comes from a member.

type authInfoKey struct{}

// WithAuthInfo returns ctx carrying who sent a request and the auth
// revision it was authorized at; the commands proposed for it record them.
func WithAuthInfo(ctx context.Context, info *fsmv1.AuthInfo) context.Context {
	return context.WithValue(ctx, authInfoKey{}, info)
}

// AuthInfoFrom returns what WithAuthInfo put into ctx, or nil.
func AuthInfoFrom(ctx context.Context) *fsmv1.AuthInfo {
	info, _ := ctx.Value(authInfoKey{}).(*fsmv1.AuthInfo)
	return info
}

// AuthState returns the auth state this member has applied.
func (m *Member) AuthState() *auth.State { return m.fsm.Auth() }

// MemberToken is what this member sends to other members to prove it is
// one, empty before auth was first enabled (see auth.MemberToken).
func (m *Member) MemberToken() string { return auth.MemberToken(m.fsm.Auth().Secret) }

// ProposeAuth puts a change of the auth state through the log, once every
// member can apply it.
func (m *Member) ProposeAuth(ctx context.Context, c *fsmv1.AuthCommand) (*fsmv1.AuthResult, error) {
	if err := fsm.ValidateAuthCommand(c); err != nil {
		return nil, err
	}
	if err := m.RequireFeature(fsm.FeatureAuth); err != nil {
		return nil, err
	}
	res, err := m.proposeMsg(ctx, fsmv1.CommandType_COMMAND_TYPE_AUTH, c)
	if err != nil {
		return nil, err
	}
	return resultAs[*fsmv1.AuthResult](res, "an auth change")
}
