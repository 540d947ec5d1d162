package fsm

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// ignorable lists the command types a member that does not know them may
// skip: they describe the cluster, not key-value state, so skipping one
// cannot make members' data diverge. A type added later is listed here when
// the same holds for it.
var ignorable = map[fsmv1.CommandType]bool{
	fsmv1.CommandType_COMMAND_TYPE_LEADER_START:   true,
	fsmv1.CommandType_COMMAND_TYPE_PUBLISH_MEMBER: true,
}

// The features a member publishes (in MemberAttributes.features): the log
// formats it can apply beyond those of the first release. A leader writes
// one only once every member has published it.
const (
	// FeatureBatchCommands: the member can apply COMMAND_TYPE_BATCH.
	FeatureBatchCommands = "batch-commands"
	// FeatureCompact: the member can apply COMMAND_TYPE_COMPACT.
	FeatureCompact = "compact"
	// FeatureLeases: the member can apply the lease commands.
	FeatureLeases = "leases"
	// FeatureAlarms: the member can apply COMMAND_TYPE_ALARM and refuses
	// growing writes while NOSPACE is raised.
	FeatureAlarms = "alarms"
	// FeatureLargeTxns: the member applies transactions of up to
	// MaxTxnOpsLimit operations per list (older members: MaxTxnOps).
	FeatureLargeTxns = "large-txns"
)

// FeatureAuth (auth.go) is the last feature so far.

// Features lists the log formats this state machine can apply beyond those
// of the first release, for a member to publish.
func Features() []string {
	return []string{FeatureBatchCommands, FeatureCompact, FeatureLeases, FeatureAlarms, FeatureLargeTxns, FeatureAuth}
}

// HasFeature reports whether a member's published attributes name feature.
func HasFeature(m *fsmv1.MemberAttributes, feature string) bool {
	return slices.Contains(m.GetFeatures(), feature)
}

// BatchResult is what applying a COMMAND_TYPE_BATCH returns: the result of
// each of its commands, in order, as each would have returned alone.
type BatchResult []any

// EncodeBatch packs encoded commands (none of them a batch) into one
// COMMAND_TYPE_BATCH command.
func EncodeBatch(cmds [][]byte) ([]byte, error) {
	return EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_BATCH, &fsmv1.CommandBatch{Commands: cmds})
}

// EncodeCommand wraps msg in a Command envelope of the given type.
func EncodeCommand(t fsmv1.CommandType, msg proto.Message) ([]byte, error) {
	return EncodeClientCommand(t, msg, nil)
}

// EncodeClientCommand wraps a client's request in a Command envelope that
// records who sent it and the auth revision it was authorized at (see
// fsmv1.Command.auth); info nil is EncodeCommand.
func EncodeClientCommand(t fsmv1.CommandType, msg proto.Message, info *fsmv1.AuthInfo) ([]byte, error) {
	payload, err := protoMarshal.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", t, err)
	}
	return protoMarshal.Marshal(&fsmv1.Command{Type: t, Ignorable: ignorable[t], Payload: payload, Auth: info})
}

// EncodeResult turns what Apply returned for a command into a Result, for
// sending back to a member that forwarded the command. Domain errors are not
// encoded; the caller sends them as errors.
func EncodeResult(res any) (*fsmv1.Result, error) {
	switch r := res.(type) {
	case nil:
		return &fsmv1.Result{}, nil
	case *kvv1.PutResponse:
		return &fsmv1.Result{Result: &fsmv1.Result_Put{Put: r}}, nil
	case *kvv1.DeleteRangeResponse:
		return &fsmv1.Result{Result: &fsmv1.Result_DeleteRange{DeleteRange: r}}, nil
	case *kvv1.TxnResponse:
		return &fsmv1.Result{Result: &fsmv1.Result_Txn{Txn: r}}, nil
	case *kvv1.CompactResponse:
		return &fsmv1.Result{Result: &fsmv1.Result_Compact{Compact: r}}, nil
	case *kvv1.AlarmResponse:
		return &fsmv1.Result{Result: &fsmv1.Result_Alarm{Alarm: r}}, nil
	case *fsmv1.AuthResult:
		return &fsmv1.Result{Result: &fsmv1.Result_Auth{Auth: r}}, nil
	case *kvv1.LeaseGrantResponse:
		return &fsmv1.Result{Result: &fsmv1.Result_LeaseGrant{LeaseGrant: r}}, nil
	case *kvv1.LeaseRevokeResponse:
		return &fsmv1.Result{Result: &fsmv1.Result_LeaseRevoke{LeaseRevoke: r}}, nil
	case error:
		return nil, r
	default:
		return nil, fmt.Errorf("fsm: cannot encode result of type %T", res)
	}
}

// DecodeResult is the inverse of EncodeResult: it returns the response inside
// a Result, or nil for an empty one.
func DecodeResult(r *fsmv1.Result) any {
	switch v := r.GetResult().(type) {
	case *fsmv1.Result_Put:
		return v.Put
	case *fsmv1.Result_DeleteRange:
		return v.DeleteRange
	case *fsmv1.Result_Txn:
		return v.Txn
	case *fsmv1.Result_Compact:
		return v.Compact
	case *fsmv1.Result_Alarm:
		return v.Alarm
	case *fsmv1.Result_Auth:
		return v.Auth
	case *fsmv1.Result_LeaseGrant:
		return v.LeaseGrant
	case *fsmv1.Result_LeaseRevoke:
		return v.LeaseRevoke
	}
	return nil
}
