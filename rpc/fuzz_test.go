package rpc

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/member"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// requestValidators are the checks the API runs on a request before it
// proposes or serves it, one per kind of request, each on the bytes a
// client could send.
var requestValidators = []struct {
	name     string
	validate func(data []byte) (proto.Message, error, bool)
}{
	{"Range", decodeThen(func(r *kvv1.RangeRequest) error { return fsm.ValidateRange(r) })},
	{"Put", decodeThen(func(r *kvv1.PutRequest) error { return fsm.ValidatePut(r) })},
	{"DeleteRange", decodeThen(func(r *kvv1.DeleteRangeRequest) error { return fsm.ValidateDeleteRange(r) })},
	{"Txn", decodeThen(func(r *kvv1.TxnRequest) error {
		if err := fsm.ValidateTxn(r); err != nil {
			return err
		}
		return fsm.CheckTxnOps(r, fsm.MaxTxnOps)
	})},
	{"Compact", decodeThen(func(r *kvv1.CompactRequest) error { return fsm.ValidateCompact(r) })},
	{"Alarm", decodeThen(func(r *kvv1.AlarmRequest) error { return fsm.ValidateAlarm(r) })},
	{"MemberAdd", decodeThen(func(r *kvv1.MemberAddRequest) error { return member.ValidateMemberAdd(r) })},
	{"Lock", decodeThen(func(r *kvv1.LockRequest) error { return checkQueue(r.GetName(), r.GetLease()) })},
	{"Campaign", decodeThen(func(r *kvv1.CampaignRequest) error { return checkQueue(r.GetName(), r.GetLease()) })},
	{"Proclaim", decodeThen(func(r *kvv1.ProclaimRequest) error { return checkLeaderKey(r.GetLeader()) })},
	{"Resign", decodeThen(func(r *kvv1.ResignRequest) error { return checkLeaderKey(r.GetLeader()) })},
	{"Authenticate", decodeThen(func(r *kvv1.AuthenticateRequest) error { return auth.ValidateName("user", r.GetName()) })},
	{"UserAdd", decodeThen(func(r *kvv1.UserAddRequest) error {
		if err := auth.ValidateName("user", r.GetName()); err != nil {
			return err
		}
		if r.GetHashedPassword() != "" {
			return auth.ValidateHash(r.GetHashedPassword())
		}
		return nil
	})},
	{"RoleGet", decodeThen(func(r *kvv1.RoleGetRequest) error { return auth.ValidateName("role", r.GetRole()) })},
	// What the auth service proposes is checked again by the state
	// machine's validator before it reaches the log.
	{"AuthCommand", decodeThen(func(c *fsmv1.AuthCommand) error { return fsm.ValidateAuthCommand(c) })},
}

func decodeThen[M any, PM interface {
	*M
	proto.Message
}](validate func(PM) error) func([]byte) (proto.Message, error, bool) {
	return func(data []byte) (proto.Message, error, bool) {
		m := PM(new(M))
		if proto.Unmarshal(data, m) != nil {
			return nil, nil, false // gRPC refuses what does not decode
		}
		return m, validate(m), true
	}
}

// FuzzRequestValidators: whatever a client sends, each validator answers
// without panicking, and what it refuses becomes a gRPC status that says
// the request was bad (InvalidArgument, or OutOfRange and FailedPrecondition
// for what is wrong only against the state), with a message: never Internal
// or Unknown, which would tell the client the member failed. kind picks the
// validator; data is the request's bytes.
func FuzzRequestValidators(f *testing.F) {
	seed := func(kind int, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(kind), b)
	}
	seed(0, &kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), Limit: 3})
	seed(1, &kvv1.PutRequest{Key: []byte("a"), Value: []byte("v"), Lease: 7})
	seed(2, &kvv1.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}})
	seed(3, &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{{Key: []byte("a"), Target: kvv1.Compare_COMPARE_TARGET_VERSION, Result: kvv1.Compare_COMPARE_RESULT_GREATER, TargetUnion: &kvv1.Compare_Version{Version: 1}}},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("b")}}}},
		Failure: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestTxn{RequestTxn: &kvv1.TxnRequest{}}}},
	})
	seed(4, &kvv1.CompactRequest{Revision: 5})
	seed(5, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_DEACTIVATE, Alarm: kvv1.AlarmType_ALARM_TYPE_NOSPACE})
	seed(6, &kvv1.MemberAddRequest{Name: "n4", RaftAddr: "127.0.0.1:7410", ClientAddr: "127.0.0.1:7409"})
	seed(7, &kvv1.LockRequest{Name: []byte("l"), Lease: 1})
	seed(8, &kvv1.CampaignRequest{Name: []byte("e"), Lease: 1, Value: []byte("v")})
	seed(9, &kvv1.ProclaimRequest{Leader: &kvv1.LeaderKey{Name: []byte("e"), Key: []byte("e/1"), Rev: 3, Lease: 1}})
	seed(10, &kvv1.ResignRequest{Leader: &kvv1.LeaderKey{Name: []byte("e"), Key: []byte("x"), Rev: 3}})
	seed(11, &kvv1.AuthenticateRequest{Name: "alice", Password: "pw"})
	seed(12, &kvv1.UserAddRequest{Name: "bob", HashedPassword: "$2a$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"})
	seed(13, &kvv1.RoleGetRequest{Role: "r w"})
	seed(14, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleGrantPermission{RoleGrantPermission: &kvv1.RoleGrantPermissionRequest{
		Name: "r", Perm: &kvv1.Permission{PermType: kvv1.PermissionType_PERMISSION_TYPE_READ, Key: []byte("b"), RangeEnd: []byte("a")}}}})

	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		v := requestValidators[int(kind)%len(requestValidators)]
		msg, err, ok := v.validate(data)
		if !ok || err == nil {
			return
		}
		st := status.Convert(toStatus(err))
		switch st.Code() {
		case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		default:
			t.Fatalf("%s %v refused with %v %q, want a bad-request code", v.name, msg, st.Code(), st.Message())
		}
		if st.Message() == "" {
			t.Fatalf("%s %v refused without a message", v.name, msg)
		}
	})
}
