// Package memberid holds what kvd derives from a member's name without a
// cluster: the member id (FromName) and the rules a name must follow
// (CheckName). The server, kvctl and kvdutil all need the same answers, and
// the tools must not link the server to get them, so this package imports
// the standard library only.
package memberid

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
)

// FromName derives a member's id from its name: the FNV-64a hash of the
// name's bytes. Every member computes the same id for a name without
// coordination, and a tool can compute it offline.
func FromName(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// forbidden are the characters a name must not contain: the separators of
// --initial-cluster (name=raftaddr,name=raftaddr) and whitespace.
const forbidden = ",= \t\n"

// CheckName reports why name cannot be a member's name: it is empty, or it
// contains a comma, '=', a space, a tab or a newline. It returns nil for a
// valid name.
func CheckName(name string) error {
	if name == "" {
		return errors.New("name is required")
	}
	if strings.ContainsAny(name, forbidden) {
		return fmt.Errorf("name %q must not contain commas, '=' or spaces", name)
	}
	return nil
}
