package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Alarms are replicated like members: the bucket "alarms" holds one key per
// raised alarm, the member id (8 bytes, big-endian) followed by the alarm
// type (1 byte). While a NOSPACE alarm is raised, commands that grow the
// state (a put, a txn with a put in either branch, a lease grant) are
// answered ErrNoSpace and change nothing, on every member alike: the
// refusal depends on replicated state only. Deletes, reads, revocations and
// compactions go on, so that space can be freed.

var bucketAlarms = []byte("alarms")

var (
	// ErrNoSpace: a NOSPACE alarm is raised; the write would grow the state.
	ErrNoSpace = errors.New("database space exceeded")
	// ErrInvalidAlarm: an alarm request without an action, member or type.
	ErrInvalidAlarm = errors.New("invalid alarm request")
)

// ValidateAlarm checks an alarm request that changes the alarms.
func ValidateAlarm(r *kvv1.AlarmRequest) error {
	switch r.GetAction() {
	case kvv1.AlarmRequest_ALARM_ACTION_ACTIVATE, kvv1.AlarmRequest_ALARM_ACTION_DEACTIVATE:
	default:
		return fmt.Errorf("%w: action %v does not change alarms", ErrInvalidAlarm, r.GetAction())
	}
	if _, ok := kvv1.AlarmType_name[int32(r.GetAlarm())]; !ok || r.GetAlarm() == kvv1.AlarmType_ALARM_TYPE_UNSPECIFIED {
		return fmt.Errorf("%w: alarm type %v", ErrInvalidAlarm, r.GetAlarm())
	}
	if r.GetMemberId() == 0 {
		return fmt.Errorf("%w: no member id", ErrInvalidAlarm)
	}
	return nil
}

func alarmKey(member uint64, t kvv1.AlarmType) []byte {
	return append(binary.BigEndian.AppendUint64(nil, member), byte(t))
}

func (w *writer) alarm(r *kvv1.AlarmRequest) (any, error) {
	b := w.alarms
	key := alarmKey(r.GetMemberId(), r.GetAlarm())
	var err error
	if r.GetAction() == kvv1.AlarmRequest_ALARM_ACTION_ACTIVATE {
		err = b.Put(key, nil)
	} else {
		err = b.Delete(key)
	}
	if err != nil {
		return nil, err
	}
	w.alarmsChanged = true
	return &kvv1.AlarmResponse{
		Header: &kvv1.ResponseHeader{Revision: w.kv.Revision()},
		Alarms: []*kvv1.AlarmMember{{MemberId: r.GetMemberId(), Alarm: r.GetAlarm()}},
	}, nil
}

// noSpace reports whether a NOSPACE alarm is raised, as this write
// transaction sees the alarms.
func (w *writer) noSpace() bool {
	c := w.alarms.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == 9 && kvv1.AlarmType(k[8]) == kvv1.AlarmType_ALARM_TYPE_NOSPACE {
			return true
		}
	}
	return false
}

// Grows reports whether a command can grow the state, so that a NOSPACE
// alarm refuses it: a put, a txn with a put anywhere in it, a lease grant.
func Grows(msg proto.Message) bool {
	switch r := msg.(type) {
	case *kvv1.PutRequest:
		return true
	case *kvv1.TxnRequest:
		for _, branch := range [][]*kvv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
			for _, op := range branch {
				if op.GetRequestPut() != nil {
					return true
				}
				if t := op.GetRequestTxn(); t != nil && Grows(t) {
					return true
				}
			}
		}
	}
	return false
}

// NoSpace reports whether a NOSPACE alarm is raised: growing writes are
// refused until it is cleared.
func (f *FSM) NoSpace() bool { return f.noSpace.Load() }

// Alarms returns the raised alarms, by member then type.
func (f *FSM) Alarms() ([]*kvv1.AlarmMember, error) {
	var out []*kvv1.AlarmMember
	err := f.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAlarms)
		return b.ForEach(func(k, _ []byte) error {
			if len(k) != 9 {
				return fmt.Errorf("fsm: malformed alarm key %x", k)
			}
			out = append(out, &kvv1.AlarmMember{MemberId: binary.BigEndian.Uint64(k), Alarm: kvv1.AlarmType(k[8])})
			return nil
		})
	})
	return out, err
}
