package main

import (
	"bytes"
	"encoding/json"
	"testing"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

var (
	testAuthStatus = &kvv1.AuthStatusResponse{Header: testHeader, Enabled: true, AuthRevision: 7}
	testUserGet    = &kvv1.UserGetResponse{Header: testHeader, Roles: []string{"app", "root"}}
	testUserList   = &kvv1.UserListResponse{Header: testHeader, Users: []string{"alice", "root"}}
	testRoleList   = &kvv1.RoleListResponse{Header: testHeader, Roles: []string{"app", "ops"}}
	testRoleGet    = &kvv1.RoleGetResponse{Header: testHeader, Perms: []*kvv1.Permission{
		{PermType: kvv1.PermissionType_PERMISSION_TYPE_READ, Key: []byte("app/"), RangeEnd: []byte("app0")},
		{PermType: kvv1.PermissionType_PERMISSION_TYPE_READWRITE, Key: []byte("cfg"), RangeEnd: []byte{0}},
		{PermType: kvv1.PermissionType_PERMISSION_TYPE_WRITE, Key: []byte("k\n")},
		{PermType: kvv1.PermissionType_PERMISSION_TYPE_WRITE, Key: []byte("a"), RangeEnd: []byte("c")},
	}}
)

func TestAuthPrinters(t *testing.T) {
	hdr := `{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2}`
	tests := []struct {
		name                string
		print               func(printer) error
		simple, json, table string
	}{
		{"auth status", func(p printer) error { return p.AuthStatus(testAuthStatus) },
			"Authentication Status: true\nAuthRevision: 7\n",
			hdr + `,"enabled":true,"auth_revision":7}` + "\n",
			"+---------+---------------+\n| ENABLED | AUTH REVISION |\n+---------+---------------+\n| true    | 7             |\n+---------+---------------+\n"},
		{"user get", func(p printer) error { return p.UserGet("alice", testUserGet) },
			"User: alice\nRoles: app root\n",
			hdr + `,"user":"alice","roles":["app","root"]}` + "\n",
			"+-------+------+\n| USER  | ROLE |\n+-------+------+\n| alice | app  |\n| alice | root |\n+-------+------+\n"},
		{"user get without roles", func(p printer) error { return p.UserGet("bob", &kvv1.UserGetResponse{Header: testHeader}) },
			"User: bob\nRoles:\n",
			hdr + `,"user":"bob","roles":[]}` + "\n",
			"+------+------+\n| USER | ROLE |\n+------+------+\n| bob  |      |\n+------+------+\n"},
		{"user list", func(p printer) error { return p.UserList(testUserList) },
			"alice\nroot\n",
			hdr + `,"users":["alice","root"]}` + "\n",
			"+-------+\n| USER  |\n+-------+\n| alice |\n| root  |\n+-------+\n"},
		{"user list empty", func(p printer) error { return p.UserList(&kvv1.UserListResponse{Header: testHeader}) },
			"",
			hdr + `,"users":[]}` + "\n",
			"+------+\n| USER |\n+------+\n+------+\n"},
		{"role get", func(p printer) error { return p.RoleGet("app", testRoleGet) },
			"Role app\nKV Read:\n\t[app/, app0) (prefix app/)\n\t[cfg, <open ended>\nKV Write:\n\t[cfg, <open ended>\n\tk\n\n\t[a, c)\n",
			hdr + `,"role":"app","perms":[{"perm_type":"READ","key":"YXBwLw==","range_end":"YXBwMA=="},{"perm_type":"READWRITE","key":"Y2Zn","range_end":"AA=="},` +
				`{"perm_type":"WRITE","key":"awo="},{"perm_type":"WRITE","key":"YQ==","range_end":"Yw=="}]}` + "\n",
			"+------+------------+-------+--------------------+\n" +
				"| ROLE | PERMISSION | KEY   | RANGE END          |\n" +
				"+------+------------+-------+--------------------+\n" +
				"| app  | READ       | app/  | app0 (prefix app/) |\n" +
				"| app  | READWRITE  | cfg   | <open ended>       |\n" +
				"| app  | WRITE      | \"k\\n\" |                    |\n" +
				"| app  | WRITE      | a     | c                  |\n" +
				"+------+------------+-------+--------------------+\n"},
		{"role list", func(p printer) error { return p.RoleList(testRoleList) },
			"app\nops\n",
			hdr + `,"roles":["app","ops"]}` + "\n",
			"+------+\n| ROLE |\n+------+\n| app  |\n| ops  |\n+------+\n"},
		{"a change", func(p printer) error { return p.AuthChange("Role app created", testHeader) },
			"Role app created\n",
			hdr + "}\n",
			"Role app created\n"},
	}
	for _, tt := range tests {
		for format, want := range map[string]string{formatSimple: tt.simple, formatJSON: tt.json, formatTable: tt.table} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				var out, errOut bytes.Buffer
				if err := tt.print(newTestPrinter(format, &out, &errOut)); err != nil {
					t.Fatal(err)
				}
				if out.String() != want || errOut.Len() != 0 {
					t.Fatalf("got\n%s\nwant\n%s\nstderr %q", out.String(), want, errOut.String())
				}
				if format == formatJSON && !json.Valid(out.Bytes()) {
					t.Fatalf("not JSON: %s", out.String())
				}
			})
		}
	}
}
