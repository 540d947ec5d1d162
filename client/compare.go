package client

import (
	"errors"
	"fmt"
	"math"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Cmp is one condition of a transaction. Build it with Compare around Value,
// Version, CreateRevision, ModRevision or LeaseValue:
//
//	client.Compare(client.Value("k"), "=", "v")
//	client.Compare(client.Version("k"), ">", 0)
//
// A Cmp built from bad input (an unknown operator, a value of the wrong type)
// carries an error, which Err reports and Txn.Commit returns; it never
// panics.
type Cmp struct {
	target kvv1.Compare_CompareTarget
	result kvv1.Compare_CompareResult
	key    []byte
	end    []byte
	value  []byte // for the value target
	num    int64  // for the other targets
	err    error
}

// Value starts a compare of key's value. Compare it with a string or a
// []byte. A key that does not exist fails every value compare.
func Value(key string) Cmp {
	return Cmp{target: kvv1.Compare_COMPARE_TARGET_VALUE, key: []byte(key)}
}

// Version starts a compare of key's version, the number of writes since it
// was created; an absent key has version 0. Compare it with an integer.
func Version(key string) Cmp {
	return Cmp{target: kvv1.Compare_COMPARE_TARGET_VERSION, key: []byte(key)}
}

// CreateRevision starts a compare of the revision that created key; an absent
// key has 0. Compare it with an integer.
func CreateRevision(key string) Cmp {
	return Cmp{target: kvv1.Compare_COMPARE_TARGET_CREATE, key: []byte(key)}
}

// ModRevision starts a compare of the revision that last modified key; an
// absent key has 0. Compare it with an integer.
func ModRevision(key string) Cmp {
	return Cmp{target: kvv1.Compare_COMPARE_TARGET_MOD, key: []byte(key)}
}

// LeaseValue starts a compare of the lease attached to key; 0 means none, as
// for an absent key. Compare it with an integer lease id.
func LeaseValue(key string) Cmp {
	return Cmp{target: kvv1.Compare_COMPARE_TARGET_LEASE, key: []byte(key)}
}

// Compare completes cmp with an operator, one of "=", "!=", "<" and ">" ("=="
// is accepted for "="), and the value to compare with: a string or []byte for
// Value, an integer for the other targets.
func Compare(cmp Cmp, op string, v any) Cmp {
	if cmp.err != nil {
		return cmp
	}
	switch op {
	case "=", "==":
		cmp.result = kvv1.Compare_COMPARE_RESULT_EQUAL
	case "!=":
		cmp.result = kvv1.Compare_COMPARE_RESULT_NOT_EQUAL
	case "<":
		cmp.result = kvv1.Compare_COMPARE_RESULT_LESS
	case ">":
		cmp.result = kvv1.Compare_COMPARE_RESULT_GREATER
	default:
		cmp.err = fmt.Errorf("client: compare of %q: invalid operator %q: want =, !=, < or >", cmp.key, op)
		return cmp
	}
	switch cmp.target {
	case kvv1.Compare_COMPARE_TARGET_VALUE:
		switch x := v.(type) {
		case string:
			cmp.value = []byte(x)
		case []byte:
			cmp.value = append([]byte{}, x...)
		default:
			cmp.err = fmt.Errorf("client: value compare of %q: want a string or []byte, got %T", cmp.key, v)
		}
	case kvv1.Compare_COMPARE_TARGET_VERSION, kvv1.Compare_COMPARE_TARGET_CREATE,
		kvv1.Compare_COMPARE_TARGET_MOD, kvv1.Compare_COMPARE_TARGET_LEASE:
		n, err := toInt64(v)
		if err != nil {
			cmp.err = fmt.Errorf("client: %s compare of %q: %w", targetName(cmp.target), cmp.key, err)
		}
		cmp.num = n
	default:
		cmp.err = errors.New("client: compare has no target: start it with Value, Version, CreateRevision, ModRevision or LeaseValue")
	}
	return cmp
}

// WithRange applies the compare to every key in [key, end); all must match.
func (cmp Cmp) WithRange(end string) Cmp {
	cmp.end = []byte(end)
	return cmp
}

// WithPrefix applies the compare to every key with the compare's key as a
// prefix; all must match.
func (cmp Cmp) WithPrefix() Cmp {
	if len(cmp.key) == 0 {
		cmp.key, cmp.end = []byte{0}, []byte{0}
		return cmp
	}
	cmp.end = []byte(PrefixEnd(string(cmp.key)))
	return cmp
}

// Err returns the problem found while building cmp, or nil.
func (cmp Cmp) Err() error {
	if cmp.err != nil {
		return cmp.err
	}
	if cmp.target == kvv1.Compare_COMPARE_TARGET_UNSPECIFIED {
		return errors.New("client: compare has no target: start it with Value, Version, CreateRevision, ModRevision or LeaseValue")
	}
	if cmp.result == kvv1.Compare_COMPARE_RESULT_UNSPECIFIED {
		return fmt.Errorf("client: compare of %q has no operator: complete it with Compare", cmp.key)
	}
	return nil
}

func (cmp Cmp) proto() (*kvv1.Compare, error) {
	if err := cmp.Err(); err != nil {
		return nil, err
	}
	pc := &kvv1.Compare{Result: cmp.result, Target: cmp.target, Key: cmp.key, RangeEnd: cmp.end}
	switch cmp.target {
	case kvv1.Compare_COMPARE_TARGET_VALUE:
		pc.TargetUnion = &kvv1.Compare_Value{Value: cmp.value}
	case kvv1.Compare_COMPARE_TARGET_VERSION:
		pc.TargetUnion = &kvv1.Compare_Version{Version: cmp.num}
	case kvv1.Compare_COMPARE_TARGET_CREATE:
		pc.TargetUnion = &kvv1.Compare_CreateRevision{CreateRevision: cmp.num}
	case kvv1.Compare_COMPARE_TARGET_MOD:
		pc.TargetUnion = &kvv1.Compare_ModRevision{ModRevision: cmp.num}
	case kvv1.Compare_COMPARE_TARGET_LEASE:
		pc.TargetUnion = &kvv1.Compare_Lease{Lease: cmp.num}
	}
	return pc, nil
}

func targetName(t kvv1.Compare_CompareTarget) string {
	switch t {
	case kvv1.Compare_COMPARE_TARGET_VERSION:
		return "version"
	case kvv1.Compare_COMPARE_TARGET_CREATE:
		return "create revision"
	case kvv1.Compare_COMPARE_TARGET_MOD:
		return "mod revision"
	case kvv1.Compare_COMPARE_TARGET_LEASE:
		return "lease"
	default:
		return "value"
	}
}

// toInt64 converts any Go integer to int64.
func toInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		return fromUint(uint64(x))
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		return fromUint(x)
	default:
		return 0, fmt.Errorf("want an integer, got %T", v)
	}
}

func fromUint(x uint64) (int64, error) {
	if x > math.MaxInt64 {
		return 0, fmt.Errorf("%d overflows int64", x)
	}
	return int64(x), nil
}
