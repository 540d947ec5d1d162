package rpc

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/etcdapi/proto/v3electionpb"
	"github.com/kvd-io/kvd/etcdapi/proto/v3lockpb"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/member"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// Authorization: one unary and one stream interceptor (authz) look every
// method up in methodRules, find out who calls (a token in the metadata
// "token", else a verified client certificate's common name with
// Config.ClientCertAuth, else a member's proof), and let the call through
// only if the rule allows it under the auth state this member has applied.
// A method without a rule is refused, so that a method added later without
// one fails closed (and TestEveryMethodHasARule fails).
//
// While auth is disabled every caller may call every method but the member
// API, as etcd. The streams whose messages name keys (KV Stream, Watch)
// are let in for any user; each of their ops is then checked by the
// handler with authz.checkOp, against the same rules as the unary method
// of its kind.
//
// Who called and at which auth revision goes into the context
// (member.WithAuthInfo), and from there into each command proposed for
// the call, so that the state machine authorizes the command again if the
// auth state changed before it was applied; a member that lags behind the
// leader's auth state cannot let through what the cluster no longer
// allows. Forwarded commands travel on the member API, which only members
// may call.

// rule says who may call a method.
type rule int

const (
	// rulePublic: anybody, with or without credentials.
	rulePublic rule = iota + 1
	// ruleUser: any authenticated user.
	ruleUser
	// ruleKeys: a user whose permissions cover the keys the request reads
	// and writes (auth.Requirements).
	ruleKeys
	// ruleOps: any user may open the stream; each op is checked as
	// ruleKeys (authz.checkOp).
	ruleOps
	// ruleRoot: a user holding the root role.
	ruleRoot
	// ruleMember: another member of the cluster only.
	ruleMember
	// ruleDelegated: a method of another API (package etcdapi) that does
	// its work through Local. The interceptor only identifies the caller;
	// each kv.v1 call the handler makes is then authorized by that
	// method's rule, so the other API allows exactly what kvd's does.
	ruleDelegated
)

func (r rule) String() string {
	return [...]string{"", "public", "user", "keys", "per-op", "root", "member", "delegated"}[r]
}

// MethodRule is the name of the authorization rule of a full method name,
// and whether it has one: for the tests of an API served beside kvd's.
func MethodRule(method string) (string, bool) {
	r, ok := methodRules[method]
	if !ok {
		return "", false
	}
	return r.String(), true
}

// methodRules is the rule of every method the member serves.
var methodRules = map[string]rule{
	kvv1.KVService_Range_FullMethodName:       ruleKeys,
	kvv1.KVService_Put_FullMethodName:         ruleKeys,
	kvv1.KVService_DeleteRange_FullMethodName: ruleKeys,
	kvv1.KVService_Txn_FullMethodName:         ruleKeys,
	kvv1.KVService_Stream_FullMethodName:      ruleOps,
	kvv1.KVService_Compact_FullMethodName:     ruleRoot,

	kvv1.WatchService_Watch_FullMethodName: ruleOps,

	// The lock and election services work on the keys of their queue
	// (auth.Requirements): the caller needs the permissions the same
	// recipe would need through the KV API.
	kvv1.LockService_Lock_FullMethodName:         ruleKeys,
	kvv1.LockService_Unlock_FullMethodName:       ruleKeys,
	kvv1.ElectionService_Campaign_FullMethodName: ruleKeys,
	kvv1.ElectionService_Proclaim_FullMethodName: ruleKeys,
	kvv1.ElectionService_Leader_FullMethodName:   ruleKeys,
	kvv1.ElectionService_Resign_FullMethodName:   ruleKeys,
	kvv1.ElectionService_Observe_FullMethodName:  ruleKeys,

	// As etcd: any user may grant and keep leases alive; revoking needs
	// write on every key attached to the lease, which the state machine
	// checks when it applies the revocation.
	kvv1.LeaseService_LeaseGrant_FullMethodName:      ruleUser,
	kvv1.LeaseService_LeaseRevoke_FullMethodName:     ruleUser,
	kvv1.LeaseService_LeaseKeepAlive_FullMethodName:  ruleUser,
	kvv1.LeaseService_LeaseTimeToLive_FullMethodName: ruleUser,
	kvv1.LeaseService_LeaseLeases_FullMethodName:     ruleUser,

	// Clients list members to find endpoints; changing them is root's.
	kvv1.ClusterService_MemberList_FullMethodName:     ruleUser,
	kvv1.ClusterService_MemberAdd_FullMethodName:      ruleRoot,
	kvv1.ClusterService_MemberPromote_FullMethodName:  ruleRoot,
	kvv1.ClusterService_MemberRemove_FullMethodName:   ruleRoot,
	kvv1.ClusterService_LeaderTransfer_FullMethodName: ruleRoot,

	kvv1.MaintenanceService_Status_FullMethodName:     rulePublic,
	kvv1.MaintenanceService_Snapshot_FullMethodName:   ruleRoot,
	kvv1.MaintenanceService_HashKV_FullMethodName:     ruleRoot,
	kvv1.MaintenanceService_Defragment_FullMethodName: ruleRoot,
	kvv1.MaintenanceService_Alarm_FullMethodName:      ruleRoot,

	kvv1.AuthService_Authenticate_FullMethodName:         rulePublic,
	kvv1.AuthService_AuthStatus_FullMethodName:           rulePublic,
	kvv1.AuthService_AuthEnable_FullMethodName:           ruleRoot,
	kvv1.AuthService_AuthDisable_FullMethodName:          ruleRoot,
	kvv1.AuthService_UserAdd_FullMethodName:              ruleRoot,
	kvv1.AuthService_UserGet_FullMethodName:              ruleRoot,
	kvv1.AuthService_UserList_FullMethodName:             ruleRoot,
	kvv1.AuthService_UserDelete_FullMethodName:           ruleRoot,
	kvv1.AuthService_UserChangePassword_FullMethodName:   ruleRoot,
	kvv1.AuthService_UserGrantRole_FullMethodName:        ruleRoot,
	kvv1.AuthService_UserRevokeRole_FullMethodName:       ruleRoot,
	kvv1.AuthService_RoleAdd_FullMethodName:              ruleRoot,
	kvv1.AuthService_RoleGet_FullMethodName:              ruleRoot,
	kvv1.AuthService_RoleList_FullMethodName:             ruleRoot,
	kvv1.AuthService_RoleDelete_FullMethodName:           ruleRoot,
	kvv1.AuthService_RoleGrantPermission_FullMethodName:  ruleRoot,
	kvv1.AuthService_RoleRevokePermission_FullMethodName: ruleRoot,

	peerv1.PeerService_Propose_FullMethodName:         ruleMember,
	peerv1.PeerService_ProposeStream_FullMethodName:   ruleMember,
	peerv1.PeerService_ReadIndex_FullMethodName:       ruleMember,
	peerv1.PeerService_MemberRemoved_FullMethodName:   ruleMember,
	peerv1.PeerService_LeaseRenew_FullMethodName:      ruleMember,
	peerv1.PeerService_LeaseRenewBatch_FullMethodName: ruleMember,
	peerv1.PeerService_LeaseTimeToLive_FullMethodName: ruleMember,

	// etcd's v3 API (package etcdapi) does its work through Local; each
	// of its kv.v1 calls meets that method's rule. RangeStream answers
	// Unimplemented to anybody, and so does Downgrade (its cancel, etcd's
	// "no inflight downgrade job").
	etcdpb.KV_Range_FullMethodName:       ruleDelegated,
	etcdpb.KV_RangeStream_FullMethodName: ruleDelegated,
	etcdpb.KV_Put_FullMethodName:         ruleDelegated,
	etcdpb.KV_DeleteRange_FullMethodName: ruleDelegated,
	etcdpb.KV_Txn_FullMethodName:         ruleDelegated,
	etcdpb.KV_Compact_FullMethodName:     ruleDelegated,

	etcdpb.Watch_Watch_FullMethodName: ruleDelegated,

	etcdpb.Lease_LeaseGrant_FullMethodName:      ruleDelegated,
	etcdpb.Lease_LeaseRevoke_FullMethodName:     ruleDelegated,
	etcdpb.Lease_LeaseKeepAlive_FullMethodName:  ruleDelegated,
	etcdpb.Lease_LeaseTimeToLive_FullMethodName: ruleDelegated,
	etcdpb.Lease_LeaseLeases_FullMethodName:     ruleDelegated,

	etcdpb.Auth_Authenticate_FullMethodName:         ruleDelegated,
	etcdpb.Auth_AuthStatus_FullMethodName:           ruleDelegated,
	etcdpb.Auth_AuthEnable_FullMethodName:           ruleDelegated,
	etcdpb.Auth_AuthDisable_FullMethodName:          ruleDelegated,
	etcdpb.Auth_UserAdd_FullMethodName:              ruleDelegated,
	etcdpb.Auth_UserGet_FullMethodName:              ruleDelegated,
	etcdpb.Auth_UserList_FullMethodName:             ruleDelegated,
	etcdpb.Auth_UserDelete_FullMethodName:           ruleDelegated,
	etcdpb.Auth_UserChangePassword_FullMethodName:   ruleDelegated,
	etcdpb.Auth_UserGrantRole_FullMethodName:        ruleDelegated,
	etcdpb.Auth_UserRevokeRole_FullMethodName:       ruleDelegated,
	etcdpb.Auth_RoleAdd_FullMethodName:              ruleDelegated,
	etcdpb.Auth_RoleGet_FullMethodName:              ruleDelegated,
	etcdpb.Auth_RoleList_FullMethodName:             ruleDelegated,
	etcdpb.Auth_RoleDelete_FullMethodName:           ruleDelegated,
	etcdpb.Auth_RoleGrantPermission_FullMethodName:  ruleDelegated,
	etcdpb.Auth_RoleRevokePermission_FullMethodName: ruleDelegated,

	etcdpb.Maintenance_Alarm_FullMethodName:      ruleDelegated,
	etcdpb.Maintenance_Status_FullMethodName:     ruleDelegated,
	etcdpb.Maintenance_Defragment_FullMethodName: ruleDelegated,
	etcdpb.Maintenance_Hash_FullMethodName:       ruleDelegated,
	etcdpb.Maintenance_HashKV_FullMethodName:     ruleDelegated,
	etcdpb.Maintenance_Snapshot_FullMethodName:   ruleDelegated,
	etcdpb.Maintenance_MoveLeader_FullMethodName: ruleDelegated,
	etcdpb.Maintenance_Downgrade_FullMethodName:  ruleDelegated,

	etcdpb.Cluster_MemberAdd_FullMethodName:     ruleDelegated,
	etcdpb.Cluster_MemberRemove_FullMethodName:  ruleDelegated,
	etcdpb.Cluster_MemberUpdate_FullMethodName:  ruleDelegated,
	etcdpb.Cluster_MemberList_FullMethodName:    ruleDelegated,
	etcdpb.Cluster_MemberPromote_FullMethodName: ruleDelegated,

	v3lockpb.Lock_Lock_FullMethodName:   ruleDelegated,
	v3lockpb.Lock_Unlock_FullMethodName: ruleDelegated,

	v3electionpb.Election_Campaign_FullMethodName: ruleDelegated,
	v3electionpb.Election_Proclaim_FullMethodName: ruleDelegated,
	v3electionpb.Election_Leader_FullMethodName:   ruleDelegated,
	v3electionpb.Election_Observe_FullMethodName:  ruleDelegated,
	v3electionpb.Election_Resign_FullMethodName:   ruleDelegated,

	healthpb.Health_Check_FullMethodName: rulePublic,
	healthpb.Health_Watch_FullMethodName: rulePublic,
	healthpb.Health_List_FullMethodName:  rulePublic,
}

// Metadata keys: a user's token (etcd's name) and a member's token.
const (
	TokenMetadataKey       = "token"
	MemberTokenMetadataKey = "kvd-member-token"
)

// AuthNode is what authorization and AuthService need.
type AuthNode interface {
	// AuthState is the auth state this member has applied.
	AuthState() *auth.State
	// ProposeAuth puts a change of the auth state through the log.
	ProposeAuth(ctx context.Context, c *fsmv1.AuthCommand) (*fsmv1.AuthResult, error)
	Linearize(ctx context.Context) error
	Header(rev int64) *kvv1.ResponseHeader
	Revision() int64
}

// authz is the authorization interceptor.
type authz struct {
	node AuthNode
	cfg  Config
	now  func() time.Time
}

// caller is who made a call, as authz found out.
type caller struct {
	user   string
	member bool
}

type callerKey struct{}

func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

func (z *authz) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := z.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (z *authz) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := z.authorize(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return err
	}
	as := &authorizedStream{ServerStream: ss, ctx: ctx}
	if methodRules[info.FullMethod] == ruleKeys {
		// A server stream's request (Observe's) is only known once the
		// handler receives it: check its keys then.
		as.check = func(m any) error {
			msg, ok := m.(proto.Message)
			if !ok {
				return fmt.Errorf("%w: %s: request of unknown type", auth.ErrPermissionDenied, info.FullMethod)
			}
			_, err := z.checkOp(ctx, msg)
			return err
		}
	}
	return handler(srv, as)
}

// authorizedStream is a stream whose context knows the caller; check, when
// set, authorizes each message received.
type authorizedStream struct {
	grpc.ServerStream
	ctx   context.Context
	check func(m any) error
}

func (s *authorizedStream) Context() context.Context { return s.ctx }

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.check != nil {
		return s.check(m)
	}
	return nil
}

// authorize lets a call of method through or says why not; the returned
// context knows the caller (callerFrom, member.AuthInfoFrom). A delegated
// method only has its caller identified: the context carries who it is,
// and the kv.v1 call it makes through Local is authorized by that method's
// rule (authorizeLocal).
func (z *authz) authorize(ctx context.Context, method string, req any) (context.Context, error) {
	r, ok := methodRules[method]
	if !ok {
		return ctx, fmt.Errorf("%w: method %s has no authorization rule", auth.ErrPermissionDenied, method)
	}
	if r == ruleDelegated {
		return context.WithValue(ctx, identityKey{}, z.identifyCall(ctx)), nil
	}
	return z.check(ctx, z.identifyCall(ctx), r, req)
}

// authorizeLocal authorizes an in-process call of a kv.v1 method (Local)
// as the gRPC call of that method would be, for the caller a delegated
// method identified, or else the caller the context's metadata names.
func (z *authz) authorizeLocal(ctx context.Context, method string, req any) (context.Context, error) {
	r, ok := methodRules[method]
	if !ok || r == ruleDelegated {
		return ctx, fmt.Errorf("%w: method %s has no authorization rule of its own", auth.ErrPermissionDenied, method)
	}
	id, ok := ctx.Value(identityKey{}).(identity)
	if !ok {
		id = z.identifyCall(ctx)
	}
	return z.check(ctx, id, r, req)
}

// identity is who makes a call, as identifyCall found out, and the auth
// state it was found under.
type identity struct {
	member bool
	user   string
	st     *auth.State
	// enabled: auth was enabled when the caller was identified (the
	// state identify returns may be fresher, never older).
	enabled bool
	// err is why the credentials presented were refused; only a public
	// method lets such a call through.
	err error
}

type identityKey struct{}

// identifyCall finds out who makes the call of ctx: a member, a user
// (identify), or nobody.
func (z *authz) identifyCall(ctx context.Context) identity {
	st := z.node.AuthState()
	if z.isMember(ctx, st) {
		return identity{member: true, st: st}
	}
	if !st.Enabled {
		return identity{st: st}
	}
	user, fresh, err := z.identify(ctx, st)
	return identity{user: user, st: fresh, err: err, enabled: true}
}

// check lets the call of id through rule r or says why not.
func (z *authz) check(ctx context.Context, id identity, r rule, req any) (context.Context, error) {
	if id.member {
		// Members pass on what their own clients were authorized for
		// (forwarded membership changes) and call the member API.
		return context.WithValue(ctx, callerKey{}, caller{member: true}), nil
	}
	st := id.st
	if r == ruleMember {
		if st.Enabled || z.cfg.PeerCAs != nil {
			return ctx, auth.ErrNotMember
		}
		return ctx, nil
	}
	if !id.enabled {
		return member.WithAuthInfo(ctx, &fsmv1.AuthInfo{Revision: st.Revision}), nil
	}
	if id.err != nil {
		if r == rulePublic {
			return ctx, nil // a public method does not care for a bad token
		}
		return ctx, id.err
	}
	user := id.user
	var err error
	switch r {
	case rulePublic:
	case ruleUser, ruleOps:
		err = st.CheckUser(user)
	case ruleKeys:
		if req == nil { // a stream: its messages are checked as received
			err = st.CheckUser(user)
		} else {
			err = st.Check(user, auth.Requirements(req))
		}
	case ruleRoot:
		err = st.CheckRoot(user)
	}
	if err != nil {
		return ctx, err
	}
	ctx = context.WithValue(ctx, callerKey{}, caller{user: user})
	return member.WithAuthInfo(ctx, &fsmv1.AuthInfo{User: user, Revision: st.Revision}), nil
}

// checkOp authorizes one op of a stream (a KV Stream request, a watch
// creation) for the stream's caller, against the auth state as it is now,
// and returns the info to propose a write with.
func (z *authz) checkOp(ctx context.Context, msg proto.Message) (*fsmv1.AuthInfo, error) {
	st := z.node.AuthState()
	c := callerFrom(ctx)
	if !st.Enabled || c.member {
		return &fsmv1.AuthInfo{User: c.user, Revision: st.Revision}, nil
	}
	if err := st.Check(c.user, auth.Requirements(msg)); err != nil {
		return nil, err
	}
	return &fsmv1.AuthInfo{User: c.user, Revision: st.Revision}, nil
}

// recheck authorizes a read again after it waited for its read index, if
// the auth state changed while it waited: the member may then have applied
// an AuthEnable, a revoked role or a deleted user that were acknowledged
// before the read began, and a linearizable read must reflect them as it
// reflects writes (etcd checks permissions after that wait). info is the
// AuthInfo the call was authorized with (nil: a member's call, which
// passes), and allowed is the read's rule, applied to the state now.
func (z *authz) recheck(info *fsmv1.AuthInfo, allowed func(st *auth.State, user string) error) error {
	if info == nil {
		return nil
	}
	st := z.node.AuthState()
	if st.Revision <= info.GetRevision() {
		return nil
	}
	return allowed(st, info.GetUser())
}

// mayRead is the rule of a read of req's keys, for recheck.
func mayRead(req proto.Message) func(*auth.State, string) error {
	return func(st *auth.State, user string) error { return st.Check(user, auth.Requirements(req)) }
}

// identify finds the user of a call: the token's, else the verified client
// certificate's common name (with ClientCertAuth), else nobody (""). A
// token is refused if it is malformed, expired, or older than its user's
// last change (deleted, password or roles changed). It returns the auth
// state it checked against, which is fresher than st if the token came
// from a member further ahead.
func (z *authz) identify(ctx context.Context, st *auth.State) (string, *auth.State, error) {
	// ValueFromIncomingContext reads the one key; FromIncomingContext
	// would copy every header of the call, on every call.
	if toks := metadata.ValueFromIncomingContext(ctx, TokenMetadataKey); len(toks) > 0 {
		key := z.cfg.TokenKey
		if len(key) == 0 {
			key = st.Secret
		}
		claims, err := auth.Verify(key, toks[0], z.now())
		if err != nil {
			return "", st, err
		}
		if claims.Revision > st.Revision {
			// Issued by a member further ahead: catch up before judging.
			if err := z.node.Linearize(ctx); err != nil {
				return "", st, err
			}
			st = z.node.AuthState()
		}
		u, ok := st.Users[claims.User]
		if !ok {
			return "", st, fmt.Errorf("%w: user %q does not exist", auth.ErrInvalidToken, claims.User)
		}
		if u.GetRevision() > claims.Revision {
			return "", st, fmt.Errorf("%w: user %q changed since it was issued; authenticate again", auth.ErrInvalidToken, claims.User)
		}
		return claims.User, st, nil
	}
	if z.cfg.ClientCertAuth {
		if cert := verifiedCert(ctx); cert != nil && cert.Subject.CommonName != "" {
			return cert.Subject.CommonName, st, nil
		}
	}
	return "", st, nil
}

// verifiedCert is the client certificate TLS verified for the call's
// connection, or nil.
func verifiedCert(ctx context.Context) *x509.Certificate {
	chains := verifiedChains(ctx)
	if len(chains) == 0 || len(chains[0]) == 0 {
		return nil
	}
	return chains[0][0]
}

func verifiedChains(ctx context.Context) [][]*x509.Certificate {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return ti.State.VerifiedChains
}

// isMember reports whether the caller proved to be a member of the
// cluster: a client certificate that verifies against the peer CAs
// (Config.PeerCAs), or the member token.
func (z *authz) isMember(ctx context.Context, st *auth.State) bool {
	if z.cfg.PeerCAs != nil {
		if cert := verifiedCert(ctx); cert != nil {
			opts := x509.VerifyOptions{Roots: z.cfg.PeerCAs, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			for _, c := range verifiedChains(ctx)[0][1:] {
				opts.Intermediates.AddCert(c)
			}
			if _, err := cert.Verify(opts); err == nil {
				return true
			}
		}
	}
	if toks := metadata.ValueFromIncomingContext(ctx, MemberTokenMetadataKey); len(toks) > 0 {
		return auth.CheckMemberToken(st.Secret, toks[0])
	}
	return false
}
