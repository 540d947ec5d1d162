package main

import (
	"fmt"
	"strings"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The auth, user and role results in each format. The simple format is
// etcdctl's; JSON has the header and the response's fields (keys and range
// ends base64, as every []byte); tables have a row per user, role or
// permission.

// permName is a permission type as etcdctl names it: READ, WRITE, READWRITE.
func permName(t kvv1.PermissionType) string {
	return strings.TrimPrefix(t.String(), "PERMISSION_TYPE_")
}

// permRangeEnd describes a permission's range end for a table cell: empty
// for one key, "<open ended>" for every key from the key on, and the end
// with the prefix it makes otherwise.
func permRangeEnd(p *kvv1.Permission) string {
	key, end := string(p.GetKey()), string(p.GetRangeEnd())
	switch {
	case end == "":
		return ""
	case end == "\x00":
		return "<open ended>"
	case end == client.PrefixEnd(key):
		return printableCell(end) + " (prefix " + printableCell(key) + ")"
	}
	return printableCell(end)
}

// AuthChange writes the line of a change (etcdctl's "User alice created").
func (p *simplePrinter) AuthChange(line string, _ *kvv1.ResponseHeader) error {
	_, err := fmt.Fprintln(p.out, line)
	return err
}

// AuthStatus writes etcdctl's two lines.
func (p *simplePrinter) AuthStatus(resp *kvv1.AuthStatusResponse) error {
	_, err := fmt.Fprintf(p.out, "Authentication Status: %v\nAuthRevision: %d\n", resp.GetEnabled(), resp.GetAuthRevision())
	return err
}

// UserGet writes etcdctl's "User: NAME" and "Roles: R1 R2".
func (p *simplePrinter) UserGet(name string, resp *kvv1.UserGetResponse) error {
	var roles strings.Builder
	for _, r := range resp.GetRoles() {
		roles.WriteString(" " + r)
	}
	_, err := fmt.Fprintf(p.out, "User: %s\nRoles:%s\n", name, roles.String())
	return err
}

// UserList writes a user per line.
func (p *simplePrinter) UserList(resp *kvv1.UserListResponse) error {
	_, err := fmt.Fprint(p.out, lines(resp.GetUsers()))
	return err
}

// RoleGet writes etcdctl's "Role NAME", then the keys it reads and writes.
func (p *simplePrinter) RoleGet(name string, resp *kvv1.RoleGetResponse) error {
	_, err := fmt.Fprint(p.out, formatRole(name, resp.GetPerms()))
	return err
}

// RoleList writes a role per line.
func (p *simplePrinter) RoleList(resp *kvv1.RoleListResponse) error {
	_, err := fmt.Fprint(p.out, lines(resp.GetRoles()))
	return err
}

func (p *tablePrinter) AuthStatus(resp *kvv1.AuthStatusResponse) error {
	return writeTable(p.out, []string{"ENABLED", "AUTH REVISION"}, [][]string{{fmt.Sprint(resp.GetEnabled()), fmt.Sprint(resp.GetAuthRevision())}})
}

// UserGet draws a row per role of the user (one row without roles).
func (p *tablePrinter) UserGet(name string, resp *kvv1.UserGetResponse) error {
	rows := [][]string{}
	for _, r := range resp.GetRoles() {
		rows = append(rows, []string{printableCell(name), printableCell(r)})
	}
	if len(rows) == 0 {
		rows = append(rows, []string{printableCell(name), ""})
	}
	return writeTable(p.out, []string{"USER", "ROLE"}, rows)
}

func (p *tablePrinter) UserList(resp *kvv1.UserListResponse) error {
	return writeTable(p.out, []string{"USER"}, oneColumn(resp.GetUsers()))
}

// RoleGet draws a row per permission: its type, key and range end.
func (p *tablePrinter) RoleGet(name string, resp *kvv1.RoleGetResponse) error {
	rows := [][]string{}
	for _, perm := range resp.GetPerms() {
		rows = append(rows, []string{printableCell(name), permName(perm.GetPermType()), printableCell(string(perm.GetKey())), permRangeEnd(perm)})
	}
	return writeTable(p.out, []string{"ROLE", "PERMISSION", "KEY", "RANGE END"}, rows)
}

func (p *tablePrinter) RoleList(resp *kvv1.RoleListResponse) error {
	return writeTable(p.out, []string{"ROLE"}, oneColumn(resp.GetRoles()))
}

func oneColumn(items []string) [][]string {
	rows := make([][]string, 0, len(items))
	for _, s := range items {
		rows = append(rows, []string{printableCell(s)})
	}
	return rows
}

type jsonPermission struct {
	PermType string `json:"perm_type"`
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"` // absent: the key alone
}

// AuthChange writes the response's header, as etcdctl's JSON of a change.
func (p *jsonPrinter) AuthChange(_ string, hdr *kvv1.ResponseHeader) error {
	return p.write(struct {
		Header jsonHeader `json:"header"`
	}{toJSONHeader(hdr)})
}

func (p *jsonPrinter) AuthStatus(resp *kvv1.AuthStatusResponse) error {
	return p.write(struct {
		Header       jsonHeader `json:"header"`
		Enabled      bool       `json:"enabled"`
		AuthRevision uint64     `json:"auth_revision"`
	}{toJSONHeader(resp.GetHeader()), resp.GetEnabled(), resp.GetAuthRevision()})
}

func (p *jsonPrinter) UserGet(name string, resp *kvv1.UserGetResponse) error {
	return p.write(struct {
		Header jsonHeader `json:"header"`
		User   string     `json:"user"`
		Roles  []string   `json:"roles"`
	}{toJSONHeader(resp.GetHeader()), name, nonNil(resp.GetRoles())})
}

func (p *jsonPrinter) UserList(resp *kvv1.UserListResponse) error {
	return p.write(struct {
		Header jsonHeader `json:"header"`
		Users  []string   `json:"users"`
	}{toJSONHeader(resp.GetHeader()), nonNil(resp.GetUsers())})
}

func (p *jsonPrinter) RoleGet(name string, resp *kvv1.RoleGetResponse) error {
	perms := []jsonPermission{}
	for _, perm := range resp.GetPerms() {
		perms = append(perms, jsonPermission{PermType: permName(perm.GetPermType()), Key: perm.GetKey(), RangeEnd: perm.GetRangeEnd()})
	}
	return p.write(struct {
		Header jsonHeader       `json:"header"`
		Role   string           `json:"role"`
		Perms  []jsonPermission `json:"perms"`
	}{toJSONHeader(resp.GetHeader()), name, perms})
}

func (p *jsonPrinter) RoleList(resp *kvv1.RoleListResponse) error {
	return p.write(struct {
		Header jsonHeader `json:"header"`
		Roles  []string   `json:"roles"`
	}{toJSONHeader(resp.GetHeader()), nonNil(resp.GetRoles())})
}

// nonNil makes an empty list print as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
