package etcdapi

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The field mapping between etcd's messages and kv.v1's. The two have the
// same fields with the same meaning; they differ in field numbers and in
// enums, which kv.v1 numbers from an _UNSPECIFIED zero, so that each etcd
// enum value is kv.v1's plus one.

func header(h *kvv1.ResponseHeader) *pb.ResponseHeader {
	if h == nil {
		return nil
	}
	return &pb.ResponseHeader{ClusterId: h.GetClusterId(), MemberId: h.GetMemberId(), Revision: h.GetRevision(), RaftTerm: h.GetRaftTerm()}
}

func keyValue(kv *kvv1.KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	return &mvccpb.KeyValue{Key: kv.GetKey(), CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(),
		Version: kv.GetVersion(), Value: kv.GetValue(), Lease: kv.GetLease()}
}

func keyValues(kvs []*kvv1.KeyValue) []*mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*mvccpb.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = keyValue(kv)
	}
	return out
}

// rangeRequest is r in kv.v1's terms; an order or target etcd does not
// define is etcd's ErrGRPCInvalidSortOption.
func rangeRequest(r *pb.RangeRequest) (*kvv1.RangeRequest, error) {
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return nil, rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return nil, rpctypes.ErrGRPCInvalidSortOption
	}
	order := kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED
	switch r.GetSortOrder() {
	case pb.RangeRequest_ASCEND:
		order = kvv1.RangeRequest_SORT_ORDER_ASCEND
	case pb.RangeRequest_DESCEND:
		order = kvv1.RangeRequest_SORT_ORDER_DESCEND
	}
	return &kvv1.RangeRequest{
		Key: r.GetKey(), RangeEnd: r.GetRangeEnd(), Limit: r.GetLimit(), Revision: r.GetRevision(),
		Serializable: r.GetSerializable(), KeysOnly: r.GetKeysOnly(), CountOnly: r.GetCountOnly(),
		SortOrder: order, SortTarget: kvv1.RangeRequest_SortTarget(r.GetSortTarget() + 1),
		MinModRevision: r.GetMinModRevision(), MaxModRevision: r.GetMaxModRevision(),
		MinCreateRevision: r.GetMinCreateRevision(), MaxCreateRevision: r.GetMaxCreateRevision(),
	}, nil
}

func rangeResponse(r *kvv1.RangeResponse) *pb.RangeResponse {
	if r == nil {
		return nil
	}
	return &pb.RangeResponse{Header: header(r.GetHeader()), Kvs: keyValues(r.GetKvs()), More: r.GetMore(), Count: r.GetCount()}
}

func putRequest(r *pb.PutRequest) *kvv1.PutRequest {
	return &kvv1.PutRequest{Key: r.GetKey(), Value: r.GetValue(), Lease: r.GetLease(), PrevKv: r.GetPrevKv(),
		IgnoreValue: r.GetIgnoreValue(), IgnoreLease: r.GetIgnoreLease()}
}

func putResponse(r *kvv1.PutResponse) *pb.PutResponse {
	if r == nil {
		return nil
	}
	return &pb.PutResponse{Header: header(r.GetHeader()), PrevKv: keyValue(r.GetPrevKv())}
}

func deleteRangeRequest(r *pb.DeleteRangeRequest) *kvv1.DeleteRangeRequest {
	return &kvv1.DeleteRangeRequest{Key: r.GetKey(), RangeEnd: r.GetRangeEnd(), PrevKv: r.GetPrevKv()}
}

func deleteRangeResponse(r *kvv1.DeleteRangeResponse) *pb.DeleteRangeResponse {
	if r == nil {
		return nil
	}
	return &pb.DeleteRangeResponse{Header: header(r.GetHeader()), Deleted: r.GetDeleted(), PrevKvs: keyValues(r.GetPrevKvs())}
}

func compare(c *pb.Compare) (*kvv1.Compare, error) {
	if _, ok := pb.Compare_CompareResult_name[int32(c.GetResult())]; !ok {
		return nil, fmt.Errorf("%w: operator %d", fsm.ErrInvalidCompare, c.GetResult())
	}
	if _, ok := pb.Compare_CompareTarget_name[int32(c.GetTarget())]; !ok {
		return nil, fmt.Errorf("%w: target %d", fsm.ErrInvalidCompare, c.GetTarget())
	}
	out := &kvv1.Compare{
		Result: kvv1.Compare_CompareResult(c.GetResult() + 1), Target: kvv1.Compare_CompareTarget(c.GetTarget() + 1),
		Key: c.GetKey(), RangeEnd: c.GetRangeEnd(),
	}
	switch u := c.GetTargetUnion().(type) {
	case *pb.Compare_Version:
		out.TargetUnion = &kvv1.Compare_Version{Version: u.Version}
	case *pb.Compare_CreateRevision:
		out.TargetUnion = &kvv1.Compare_CreateRevision{CreateRevision: u.CreateRevision}
	case *pb.Compare_ModRevision:
		out.TargetUnion = &kvv1.Compare_ModRevision{ModRevision: u.ModRevision}
	case *pb.Compare_Value:
		out.TargetUnion = &kvv1.Compare_Value{Value: u.Value}
	case *pb.Compare_Lease:
		out.TargetUnion = &kvv1.Compare_Lease{Lease: u.Lease}
	}
	return out, nil
}

func requestOps(ops []*pb.RequestOp) ([]*kvv1.RequestOp, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	out := make([]*kvv1.RequestOp, len(ops))
	for i, op := range ops {
		o := &kvv1.RequestOp{}
		switch r := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := rangeRequest(r.RequestRange)
			if err != nil {
				return nil, err
			}
			o.Request = &kvv1.RequestOp_RequestRange{RequestRange: rr}
		case *pb.RequestOp_RequestPut:
			o.Request = &kvv1.RequestOp_RequestPut{RequestPut: putRequest(r.RequestPut)}
		case *pb.RequestOp_RequestDeleteRange:
			o.Request = &kvv1.RequestOp_RequestDeleteRange{RequestDeleteRange: deleteRangeRequest(r.RequestDeleteRange)}
		case *pb.RequestOp_RequestTxn:
			t, err := txnRequest(r.RequestTxn)
			if err != nil {
				return nil, err
			}
			o.Request = &kvv1.RequestOp_RequestTxn{RequestTxn: t}
		}
		out[i] = o
	}
	return out, nil
}

func txnRequest(r *pb.TxnRequest) (*kvv1.TxnRequest, error) {
	out := &kvv1.TxnRequest{}
	if n := len(r.GetCompare()); n > 0 {
		out.Compare = make([]*kvv1.Compare, n)
		for i, c := range r.GetCompare() {
			kc, err := compare(c)
			if err != nil {
				return nil, err
			}
			out.Compare[i] = kc
		}
	}
	var err error
	if out.Success, err = requestOps(r.GetSuccess()); err != nil {
		return nil, err
	}
	if out.Failure, err = requestOps(r.GetFailure()); err != nil {
		return nil, err
	}
	return out, nil
}

// txnResponse is r in etcd's terms. etcd gives every response inside a
// txn a header holding only a revision, zero but for ranges: a range
// reads at the revision before the txn until an op of the txn changed
// something, and at the txn's own revision after. Clients use it
// (concurrency.STM takes its snapshot revision from the first range).
func txnResponse(r *kvv1.TxnResponse) *pb.TxnResponse {
	if r == nil {
		return nil
	}
	rev := r.GetHeader().GetRevision()
	h := &innerHeaders{rev: rev, begin: rev}
	if txnChanges(r) {
		h.begin = rev - 1
	}
	out := h.txn(r)
	out.Header = header(r.GetHeader())
	return out
}

// innerHeaders numbers the ranges of a txn as etcd does.
type innerHeaders struct {
	rev, begin int64 // the txn's revision, the one before it if it wrote
	changed    bool  // an op so far changed something
}

func (h *innerHeaders) txn(r *kvv1.TxnResponse) *pb.TxnResponse {
	out := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: r.GetSucceeded()}
	if len(r.GetResponses()) == 0 {
		return out
	}
	out.Responses = make([]*pb.ResponseOp, len(r.GetResponses()))
	for i, op := range r.GetResponses() {
		o := &pb.ResponseOp{}
		switch v := op.GetResponse().(type) {
		case *kvv1.ResponseOp_ResponseRange:
			rr := rangeResponse(v.ResponseRange)
			rr.Header = &pb.ResponseHeader{Revision: h.begin}
			if h.changed {
				rr.Header.Revision = h.rev
			}
			o.Response = &pb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *kvv1.ResponseOp_ResponsePut:
			h.changed = true
			pr := putResponse(v.ResponsePut)
			pr.Header = &pb.ResponseHeader{}
			o.Response = &pb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *kvv1.ResponseOp_ResponseDeleteRange:
			h.changed = h.changed || v.ResponseDeleteRange.GetDeleted() > 0
			dr := deleteRangeResponse(v.ResponseDeleteRange)
			dr.Header = &pb.ResponseHeader{}
			o.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}
		case *kvv1.ResponseOp_ResponseTxn:
			o.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: h.txn(v.ResponseTxn)}
		}
		out.Responses[i] = o
	}
	return out
}

// txnChanges reports whether a txn's ops changed anything: then it has a
// revision of its own.
func txnChanges(r *kvv1.TxnResponse) bool {
	for _, op := range r.GetResponses() {
		switch v := op.GetResponse().(type) {
		case *kvv1.ResponseOp_ResponsePut:
			return true
		case *kvv1.ResponseOp_ResponseDeleteRange:
			if v.ResponseDeleteRange.GetDeleted() > 0 {
				return true
			}
		case *kvv1.ResponseOp_ResponseTxn:
			if txnChanges(v.ResponseTxn) {
				return true
			}
		}
	}
	return false
}

func leaseGrantRequest(r *pb.LeaseGrantRequest) *kvv1.LeaseGrantRequest {
	return &kvv1.LeaseGrantRequest{Id: r.GetID(), Ttl: r.GetTTL()}
}

func leaseGrantResponse(r *kvv1.LeaseGrantResponse) *pb.LeaseGrantResponse {
	return &pb.LeaseGrantResponse{Header: header(r.GetHeader()), ID: r.GetId(), TTL: r.GetTtl()}
}

func leaseRevokeRequest(r *pb.LeaseRevokeRequest) *kvv1.LeaseRevokeRequest {
	return &kvv1.LeaseRevokeRequest{Id: r.GetID()}
}

func leaseRevokeResponse(r *kvv1.LeaseRevokeResponse) *pb.LeaseRevokeResponse {
	return &pb.LeaseRevokeResponse{Header: header(r.GetHeader())}
}

func leaseTimeToLiveRequest(r *pb.LeaseTimeToLiveRequest) *kvv1.LeaseTimeToLiveRequest {
	return &kvv1.LeaseTimeToLiveRequest{Id: r.GetID(), Keys: r.GetKeys()}
}

func leaseTimeToLiveResponse(r *kvv1.LeaseTimeToLiveResponse) *pb.LeaseTimeToLiveResponse {
	return &pb.LeaseTimeToLiveResponse{Header: header(r.GetHeader()), ID: r.GetId(), TTL: r.GetTtl(),
		GrantedTTL: r.GetGrantedTtl(), Keys: r.GetKeys()}
}

func leaseLeasesRequest(*pb.LeaseLeasesRequest) *kvv1.LeaseLeasesRequest {
	return &kvv1.LeaseLeasesRequest{}
}

func leaseLeasesResponse(r *kvv1.LeaseLeasesResponse) *pb.LeaseLeasesResponse {
	out := &pb.LeaseLeasesResponse{Header: header(r.GetHeader())}
	if n := len(r.GetLeases()); n > 0 {
		out.Leases = make([]*pb.LeaseStatus, n)
		for i, l := range r.GetLeases() {
			out.Leases[i] = &pb.LeaseStatus{ID: l.GetId()}
		}
	}
	return out
}

func authenticateRequest(r *pb.AuthenticateRequest) *kvv1.AuthenticateRequest {
	return &kvv1.AuthenticateRequest{Name: r.GetName(), Password: r.GetPassword()}
}

func authenticateResponse(r *kvv1.AuthenticateResponse) *pb.AuthenticateResponse {
	return &pb.AuthenticateResponse{Header: header(r.GetHeader()), Token: r.GetToken()}
}

func authEnableRequest(*pb.AuthEnableRequest) *kvv1.AuthEnableRequest {
	return &kvv1.AuthEnableRequest{}
}

func authEnableResponse(r *kvv1.AuthEnableResponse) *pb.AuthEnableResponse {
	return &pb.AuthEnableResponse{Header: header(r.GetHeader())}
}

func authDisableRequest(*pb.AuthDisableRequest) *kvv1.AuthDisableRequest {
	return &kvv1.AuthDisableRequest{}
}

func authDisableResponse(r *kvv1.AuthDisableResponse) *pb.AuthDisableResponse {
	return &pb.AuthDisableResponse{Header: header(r.GetHeader())}
}

func authStatusRequest(*pb.AuthStatusRequest) *kvv1.AuthStatusRequest {
	return &kvv1.AuthStatusRequest{}
}

func authStatusResponse(r *kvv1.AuthStatusResponse) *pb.AuthStatusResponse {
	return &pb.AuthStatusResponse{Header: header(r.GetHeader()), Enabled: r.GetEnabled(), AuthRevision: r.GetAuthRevision()}
}

// password translates etcd's password fields. etcd's hashedPassword is
// the base64 of a bcrypt hash (etcd's server fills it in for the log);
// kvd takes the hash itself, so it is decoded here and checked as bcrypt
// by kvd. A request with both fields is refused: etcd would hash the
// password and drop the hash, silently.
func password(plain, hashed string) (string, string, error) {
	if hashed == "" {
		return plain, "", nil
	}
	if plain != "" {
		return "", "", fmt.Errorf("%w: both password and hashedPassword are set; send one", auth.ErrInvalidPassword)
	}
	h, err := base64.StdEncoding.DecodeString(hashed)
	if err != nil {
		return "", "", fmt.Errorf("%w: hashedPassword is not the base64 of a bcrypt hash, as etcd's is: %v", auth.ErrInvalidPassword, err)
	}
	return "", string(h), nil
}

func userAddRequest(r *pb.AuthUserAddRequest) (*kvv1.UserAddRequest, error) {
	out := &kvv1.UserAddRequest{Name: r.GetName()}
	if r.GetOptions().GetNoPassword() {
		// etcd ignores the password of a user without one.
		out.Options = &kvv1.UserAddOptions{NoPassword: true}
		return out, nil
	}
	var err error
	out.Password, out.HashedPassword, err = password(r.GetPassword(), r.GetHashedPassword())
	return out, err
}

func userAddResponse(r *kvv1.UserAddResponse) *pb.AuthUserAddResponse {
	return &pb.AuthUserAddResponse{Header: header(r.GetHeader())}
}

func userGetRequest(r *pb.AuthUserGetRequest) *kvv1.UserGetRequest {
	return &kvv1.UserGetRequest{Name: r.GetName()}
}

func userGetResponse(r *kvv1.UserGetResponse) *pb.AuthUserGetResponse {
	return &pb.AuthUserGetResponse{Header: header(r.GetHeader()), Roles: r.GetRoles()}
}

func userListRequest(*pb.AuthUserListRequest) *kvv1.UserListRequest { return &kvv1.UserListRequest{} }

func userListResponse(r *kvv1.UserListResponse) *pb.AuthUserListResponse {
	return &pb.AuthUserListResponse{Header: header(r.GetHeader()), Users: r.GetUsers()}
}

func userDeleteRequest(r *pb.AuthUserDeleteRequest) *kvv1.UserDeleteRequest {
	return &kvv1.UserDeleteRequest{Name: r.GetName()}
}

func userDeleteResponse(r *kvv1.UserDeleteResponse) *pb.AuthUserDeleteResponse {
	return &pb.AuthUserDeleteResponse{Header: header(r.GetHeader())}
}

func userChangePasswordRequest(r *pb.AuthUserChangePasswordRequest) (*kvv1.UserChangePasswordRequest, error) {
	plain, hashed, err := password(r.GetPassword(), r.GetHashedPassword())
	if err != nil {
		return nil, err
	}
	return &kvv1.UserChangePasswordRequest{Name: r.GetName(), Password: plain, HashedPassword: hashed}, nil
}

func userChangePasswordResponse(r *kvv1.UserChangePasswordResponse) *pb.AuthUserChangePasswordResponse {
	return &pb.AuthUserChangePasswordResponse{Header: header(r.GetHeader())}
}

func userGrantRoleRequest(r *pb.AuthUserGrantRoleRequest) *kvv1.UserGrantRoleRequest {
	return &kvv1.UserGrantRoleRequest{User: r.GetUser(), Role: r.GetRole()}
}

func userGrantRoleResponse(r *kvv1.UserGrantRoleResponse) *pb.AuthUserGrantRoleResponse {
	return &pb.AuthUserGrantRoleResponse{Header: header(r.GetHeader())}
}

func userRevokeRoleRequest(r *pb.AuthUserRevokeRoleRequest) *kvv1.UserRevokeRoleRequest {
	return &kvv1.UserRevokeRoleRequest{Name: r.GetName(), Role: r.GetRole()}
}

func userRevokeRoleResponse(r *kvv1.UserRevokeRoleResponse) *pb.AuthUserRevokeRoleResponse {
	return &pb.AuthUserRevokeRoleResponse{Header: header(r.GetHeader())}
}

func roleAddRequest(r *pb.AuthRoleAddRequest) *kvv1.RoleAddRequest {
	return &kvv1.RoleAddRequest{Name: r.GetName()}
}

func roleAddResponse(r *kvv1.RoleAddResponse) *pb.AuthRoleAddResponse {
	return &pb.AuthRoleAddResponse{Header: header(r.GetHeader())}
}

func roleGetRequest(r *pb.AuthRoleGetRequest) *kvv1.RoleGetRequest {
	return &kvv1.RoleGetRequest{Role: r.GetRole()}
}

// roleGetResponse translates the answer of RoleGet of role. The root
// role's permissions are etcd's: readwrite on every key (etcd shows the
// permission root has, whatever was granted to the role), which is what
// root may do on kvd too.
func roleGetResponse(role string) func(*kvv1.RoleGetResponse) *pb.AuthRoleGetResponse {
	return func(r *kvv1.RoleGetResponse) *pb.AuthRoleGetResponse {
		out := &pb.AuthRoleGetResponse{Header: header(r.GetHeader())}
		if role == auth.Root {
			out.Perm = []*authpb.Permission{{PermType: authpb.READWRITE, Key: []byte{}, RangeEnd: []byte{0}}}
			return out
		}
		for _, p := range r.GetPerms() {
			key := p.GetKey()
			if len(p.GetRangeEnd()) > 0 && bytes.Equal(key, everyKeyStart) {
				key = []byte{}
			}
			out.Perm = append(out.Perm, &authpb.Permission{PermType: authpb.Permission_Type(p.GetPermType() - 1), Key: key, RangeEnd: p.GetRangeEnd()})
		}
		return out
	}
}

func roleListRequest(*pb.AuthRoleListRequest) *kvv1.RoleListRequest { return &kvv1.RoleListRequest{} }

func roleListResponse(r *kvv1.RoleListResponse) *pb.AuthRoleListResponse {
	return &pb.AuthRoleListResponse{Header: header(r.GetHeader()), Roles: r.GetRoles()}
}

func roleDeleteRequest(r *pb.AuthRoleDeleteRequest) *kvv1.RoleDeleteRequest {
	return &kvv1.RoleDeleteRequest{Role: r.GetRole()}
}

func roleDeleteResponse(r *kvv1.RoleDeleteResponse) *pb.AuthRoleDeleteResponse {
	return &pb.AuthRoleDeleteResponse{Header: header(r.GetHeader())}
}

// everyKeyStart is where kvd's permissions on a range from the empty key
// start. etcd writes the permission on every key (etcdctl's --prefix or
// --from-key on "") with an empty key, which kvd refuses as it refuses
// the empty key everywhere; "\x00" is the first key there is, so the
// range is the same.
var everyKeyStart = []byte{0}

// permKey is kvd's key of an etcd permission's key and range end.
func permKey(key, rangeEnd []byte) []byte {
	if len(key) == 0 && len(rangeEnd) > 0 {
		return everyKeyStart
	}
	return key
}

func roleGrantPermissionRequest(r *pb.AuthRoleGrantPermissionRequest) (*kvv1.RoleGrantPermissionRequest, error) {
	out := &kvv1.RoleGrantPermissionRequest{Name: r.GetName()}
	p := r.GetPerm()
	if p == nil {
		// kvd answers, after authorizing the call, with etcd's
		// "permission not given".
		return out, nil
	}
	switch p.GetPermType() {
	case authpb.READ, authpb.WRITE, authpb.READWRITE:
	default:
		return nil, fmt.Errorf("%w: type %d (want READ 0, WRITE 1 or READWRITE 2)", auth.ErrInvalidPermission, p.GetPermType())
	}
	out.Perm = &kvv1.Permission{PermType: kvv1.PermissionType(p.GetPermType() + 1), Key: permKey(p.GetKey(), p.GetRangeEnd()), RangeEnd: p.GetRangeEnd()}
	return out, nil
}

func roleGrantPermissionResponse(r *kvv1.RoleGrantPermissionResponse) *pb.AuthRoleGrantPermissionResponse {
	return &pb.AuthRoleGrantPermissionResponse{Header: header(r.GetHeader())}
}

func roleRevokePermissionRequest(r *pb.AuthRoleRevokePermissionRequest) *kvv1.RoleRevokePermissionRequest {
	return &kvv1.RoleRevokePermissionRequest{Role: r.GetRole(), Key: permKey(r.GetKey(), r.GetRangeEnd()), RangeEnd: r.GetRangeEnd()}
}

func roleRevokePermissionResponse(r *kvv1.RoleRevokePermissionResponse) *pb.AuthRoleRevokePermissionResponse {
	return &pb.AuthRoleRevokePermissionResponse{Header: header(r.GetHeader())}
}
