package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func perm(t kvv1.PermissionType, key, end string) *kvv1.Permission {
	return &kvv1.Permission{PermType: t, Key: []byte(key), RangeEnd: []byte(end)}
}

const (
	read  = kvv1.PermissionType_PERMISSION_TYPE_READ
	write = kvv1.PermissionType_PERMISSION_TYPE_WRITE
	rw    = kvv1.PermissionType_PERMISSION_TYPE_READWRITE
)

func TestCheck(t *testing.T) {
	s := &State{
		Enabled: true,
		Users: map[string]*fsmv1.AuthUser{
			"root":  {Name: "root", Roles: []string{"root"}},
			"alice": {Name: "alice", Roles: []string{"a", "b"}},
		},
		Roles: map[string]*fsmv1.AuthRole{
			"a": {Name: "a", Perms: []*kvv1.Permission{perm(read, "app/", "app0"), perm(write, "app/w", "")}},
			"b": {Name: "b", Perms: []*kvv1.Permission{perm(rw, "m", "p"), perm(read, "p", "q"), perm(read, "x", "\x00")}},
		},
	}
	r := func(key, end string) Requirement { return Requirement{Key: []byte(key), RangeEnd: []byte(end)} }
	w := func(key, end string) Requirement {
		return Requirement{Write: true, Key: []byte(key), RangeEnd: []byte(end)}
	}
	cases := []struct {
		name string
		user string
		req  Requirement
		ok   bool
	}{
		{"key in prefix", "alice", r("app/x", ""), true},
		{"the prefix", "alice", r("app/", "app0"), true},
		{"wider than the prefix", "alice", r("app", "app0"), false},
		{"write on a read prefix", "alice", w("app/x", ""), false},
		{"write on the one key", "alice", w("app/w", ""), true},
		{"read the write-only key's neighbour", "alice", r("app/w\x00", ""), true},
		{"two adjacent ranges together", "alice", r("n", "pz"), true},
		{"past them", "alice", r("n", "q\x00"), false},
		{"write over both needs both", "alice", w("n", "pz"), false},
		{"from key", "alice", r("y", "\x00"), true},
		{"from key, starting before", "alice", r("w", "\x00"), false},
		{"root does everything", "root", w("\x00", "\x00"), true},
		{"unknown user", "mallory", r("app/x", ""), false},
		{"nobody", "", r("app/x", ""), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Check(c.user, []Requirement{c.req})
			if (err == nil) != c.ok {
				t.Fatalf("Check(%q, %v) = %v, want ok %v", c.user, c.req, err, c.ok)
			}
		})
	}
	off := &State{Users: s.Users, Roles: s.Roles}
	if err := off.Check("", []Requirement{w("any", "")}); err != nil {
		t.Fatalf("with auth disabled: %v", err)
	}
}

func TestRequirementsOfTxn(t *testing.T) {
	txn := &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{{Key: []byte("c")}},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("p")}}}},
		Failure: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestTxn{RequestTxn: &kvv1.TxnRequest{
			Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestDeleteRange{RequestDeleteRange: &kvv1.DeleteRangeRequest{Key: []byte("d"), RangeEnd: []byte("e"), PrevKv: true}}}},
		}}}},
	}
	var got []string
	for _, r := range Requirements(txn) {
		got = append(got, r.verb()+" "+r.describe())
	}
	want := `read key "c"|write key "p"|write range ["d", "e")|read range ["d", "e")`
	if strings.Join(got, "|") != want {
		t.Fatalf("Requirements = %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestToken(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := time.Unix(1_000_000, 0)
	tok, err := Sign(key, Claims{User: "alice", Revision: 4, IssuedAt: now.Unix(), Expiry: now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Verify(key, tok, now.Add(30*time.Second))
	if err != nil || c.User != "alice" || c.Revision != 4 {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	if _, err := Verify(key, tok, now.Add(time.Minute)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := Verify([]byte(strings.Repeat("x", 32)), tok, now); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("other key: %v", err)
	}
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]
	if _, err := Verify(key, forged, now); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("changed claims: %v", err)
	}
	if !CheckMemberToken(key, MemberToken(key)) || CheckMemberToken(key, "x") || CheckMemberToken(nil, MemberToken(nil)) {
		t.Fatal("member token check is wrong")
	}
}

// The lock and election services need what their recipe needs through the
// KV API: the queue under NAME/ and the caller's own key.
func TestRequirementsOfLocksAndElections(t *testing.T) {
	leader := &kvv1.LeaderKey{Name: []byte("e"), Key: []byte("e/2a")}
	cases := []struct {
		msg  any
		want string
	}{
		{&kvv1.LockRequest{Name: []byte("jobs"), Lease: 1}, `read range ["jobs/", "jobs0")|write range ["jobs/", "jobs0")`},
		{&kvv1.UnlockRequest{Key: []byte("jobs/2a")}, `write key "jobs/2a"`},
		{&kvv1.CampaignRequest{Name: []byte("e"), Lease: 1}, `read range ["e/", "e0")|write range ["e/", "e0")`},
		{&kvv1.ProclaimRequest{Leader: leader}, `read range ["e/", "e0")|write key "e/2a"`},
		{&kvv1.ResignRequest{Leader: leader}, `write key "e/2a"`},
		{&kvv1.LeaderRequest{Name: []byte("e")}, `read range ["e/", "e0")`},
		{&kvv1.ObserveRequest{Name: []byte("e")}, `read range ["e/", "e0")`},
	}
	for _, c := range cases {
		var got []string
		for _, r := range Requirements(c.msg) {
			got = append(got, r.verb()+" "+r.describe())
		}
		if strings.Join(got, "|") != c.want {
			t.Errorf("Requirements(%T) = %q, want %q", c.msg, strings.Join(got, "|"), c.want)
		}
	}
	// A reader of the queue may observe it but not take a place in it.
	s := &State{
		Enabled: true,
		Users:   map[string]*fsmv1.AuthUser{"obs": {Name: "obs", Roles: []string{"r"}}},
		Roles:   map[string]*fsmv1.AuthRole{"r": {Name: "r", Perms: []*kvv1.Permission{perm(read, "e/", "e0")}}},
	}
	if err := s.Check("obs", Requirements(&kvv1.ObserveRequest{Name: []byte("e")})); err != nil {
		t.Fatalf("observe with read on the queue: %v", err)
	}
	if err := s.Check("obs", Requirements(&kvv1.CampaignRequest{Name: []byte("e"), Lease: 1})); !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("campaign with read only: %v, want permission denied", err)
	}
}
