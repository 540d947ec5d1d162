package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// permsFrom reads permissions from data: each is a type byte, then a key
// and a range end, each a length byte (mod 4) and that many bytes (so that
// keys collide and ranges touch often).
func permsFrom(data []byte) []*kvv1.Permission {
	var out []*kvv1.Permission
	next := func() []byte {
		if len(data) == 0 {
			return nil
		}
		n := min(int(data[0]%4), len(data)-1)
		b := data[1 : 1+n]
		data = data[1+n:]
		return b
	}
	for len(data) > 0 && len(out) < 8 {
		t := kvv1.PermissionType(data[0]%3 + 1)
		data = data[1:]
		out = append(out, &kvv1.Permission{PermType: t, Key: next(), RangeEnd: next()})
	}
	return out
}

// coveredByPoints is the reference for covers: want is covered unless some
// point where coverage can change (the start or end of an interval) that
// lies in want is in no interval of have.
func coveredByPoints(have []interval, want interval) bool {
	if !want.inf && bytes.Compare(want.start, want.end) >= 0 {
		return true
	}
	in := func(iv interval, p []byte) bool {
		return bytes.Compare(p, iv.start) >= 0 && (iv.inf || bytes.Compare(p, iv.end) < 0)
	}
	points := [][]byte{want.start}
	for _, h := range have {
		points = append(points, h.start)
		if !h.inf {
			points = append(points, h.end)
		}
	}
	for _, p := range points {
		if !in(want, p) {
			continue
		}
		ok := false
		for _, h := range have {
			if in(h, p) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// FuzzCheck: a user's permissions, several roles and ranges together,
// allow a read or a write of a key or a range exactly when the intervals
// they grant cover it, as a point-by-point reference finds; invalid
// permissions (the state machine refuses them) are left out.
func FuzzCheck(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 1, 'm', 2, 1, 'm', 1, 0}, []byte("b"), []byte{}, false)
	f.Add([]byte{2, 2, 'a', '/', 2, 'a', '0'}, []byte("a/x"), []byte("a0"), true)
	f.Add([]byte{1, 1, 'a', 0}, []byte("a"), []byte{0}, true)
	f.Fuzz(func(t *testing.T, data, key, end []byte, write bool) {
		s := &State{Enabled: true, Users: map[string]*fsmv1.AuthUser{"u": {Name: "u", Roles: []string{"r1", "r2"}}},
			Roles: map[string]*fsmv1.AuthRole{"r1": {Name: "r1"}, "r2": {Name: "r2"}}}
		var have []interval
		for i, p := range permsFrom(data) {
			if ValidatePermission(p) != nil {
				continue
			}
			role := s.Roles[[]string{"r1", "r2"}[i%2]]
			role.Perms = append(role.Perms, p)
			if allows(p.GetPermType(), write) {
				have = append(have, toInterval(p.GetKey(), p.GetRangeEnd()))
			}
		}
		want := coveredByPoints(have, toInterval(key, end))
		err := s.Check("u", []Requirement{{Write: write, Key: key, RangeEnd: end}})
		if (err == nil) != want {
			t.Fatalf("permissions %v, %s write=%v: Check says %v, the reference says allowed=%v",
				append(s.Roles["r1"].GetPerms(), s.Roles["r2"].GetPerms()...), Requirement{Key: key, RangeEnd: end}.describe(), write, err, want)
		}
		if err != nil && !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("a refusal that is not a permission denial: %v", err)
		}
	})
}

// FuzzVerify: whatever a client sends as its token, verifying it answers
// claims or an invalid-token or expired error, without panicking; a token
// signed with the key verifies to the claims it was signed with (unless it
// names no user or has expired), and not with another key.
func FuzzVerify(f *testing.F) {
	key := bytes.Repeat([]byte{7}, 32)
	tok, err := Sign(key, Claims{User: "alice", Revision: 3, IssuedAt: 100, Expiry: 200})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok, "alice", uint64(3), int64(200))
	f.Add("a.b.c", "", uint64(0), int64(0))
	f.Add(jwtHeader+".e30.", "x", uint64(1), int64(-1))
	now := time.Unix(150, 0)
	f.Fuzz(func(t *testing.T, token, user string, rev uint64, exp int64) {
		if c, err := Verify(key, token, now); err == nil {
			if c.Expiry <= now.Unix() {
				t.Fatalf("an expired token verified: %+v", c)
			}
		} else if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("Verify(%q): %v, want an invalid or expired token", token, err)
		}
		if !utf8.ValidString(user) || strings.ContainsRune(user, utf8.RuneError) {
			return // JSON would not keep such a name as it is
		}
		claims := Claims{User: user, Revision: rev, IssuedAt: now.Unix(), Expiry: exp}
		signed, err := Sign(key, claims)
		if err != nil {
			t.Fatalf("sign %+v: %v", claims, err)
		}
		got, err := Verify(key, signed, now)
		switch {
		case user == "" || exp <= now.Unix():
			if err == nil {
				t.Fatalf("a token without a user or that expired at %d verified at %d", exp, now.Unix())
			}
		case err != nil || got != claims:
			t.Fatalf("signed %+v, verified %+v, %v", claims, got, err)
		}
		if _, err := Verify(bytes.Repeat([]byte{8}, 32), signed, now); err == nil {
			t.Fatal("a token verified with another key")
		}
	})
}
