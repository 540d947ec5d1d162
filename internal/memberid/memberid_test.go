package memberid

import (
	"strings"
	"testing"
)

// TestFromNamePinned pins ids to the values kvd's server derived for these
// names when this package was split out of it (server.MemberID): a member's
// id is stored in every cluster's configuration, so it must never change.
func TestFromNamePinned(t *testing.T) {
	tests := []struct {
		name string
		want uint64
	}{
		{"n1", 0x8b37b07b558d4c0},
		{"n2", 0x8b37e07b558d9d9},
		{"n3", 0x8b37d07b558d826},
		{"kvd-0", 0x1ca85f5e23fb3bf5},
		{"infra1", 0x6f48ece5f3a79504},
		{"", 0xcbf29ce484222325}, // FNV-64a's offset basis
	}
	for _, tt := range tests {
		if got := FromName(tt.name); got != tt.want {
			t.Errorf("FromName(%q) = %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

func TestFromNameDistinguishesNames(t *testing.T) {
	seen := map[uint64]string{}
	for _, name := range []string{"n1", "n2", "n10", "N1", "n1 ", "kvd-0", "kvd-1", "kvd-2"} {
		id := FromName(name)
		if other, ok := seen[id]; ok {
			t.Errorf("%q and %q share id %#x", name, other, id)
		}
		seen[id] = name
	}
}

func TestCheckName(t *testing.T) {
	// The server's rules exactly: only space, tab and newline count as
	// whitespace, so "a\rb" passes, as it does for server.Config.Validate.
	for _, name := range []string{"n1", "kvd-0", "a.b_c", "é", "a:b", "a/b", "UPPER", "a\rb"} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", name, err)
		}
	}
	tests := []struct {
		name, want string
	}{
		{"", "name is required"},
		{"a,b", `name "a,b" must not contain commas, '=' or spaces`},
		{"a=b", `name "a=b" must not contain commas, '=' or spaces`},
		{"a b", `name "a b" must not contain`},
		{"a\tb", `name "a\tb" must not contain`},
		{"a\nb", `name "a\nb" must not contain`},
		{" ", `name " " must not contain`},
		{"n1=127.0.0.1:7380", `must not contain commas, '=' or spaces`},
	}
	for _, tt := range tests {
		err := CheckName(tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckName(%q) = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
