package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func newRoleCmd(g *globalOptions) *cobra.Command {
	var grantPrefix, grantFromKey bool
	grant := &cobra.Command{
		Use:   "grant-permission <role> <read|write|readwrite> <key> [<end>]",
		Short: "Lets a role read, write or both a key, a range [key, end), a prefix (--prefix) or every key from key on (--from-key)",
		Args:  cobra.RangeArgs(3, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			perm, err := permType(args[1])
			if err != nil {
				return err
			}
			end, err := permRange(args[2], args[3:], grantPrefix, grantFromKey)
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				resp, err := c.RoleGrantPermission(ctx, args[0], args[2], end, perm)
				return authChanged(g.printer(), resp, err, "Role %s updated", args[0])
			})
		},
	}
	grant.Flags().BoolVar(&grantPrefix, "prefix", false, "the permission covers every key with the prefix <key>")
	grant.Flags().BoolVar(&grantFromKey, "from-key", false, "the permission covers every key from <key> on")
	var revokePrefix, revokeFromKey bool
	revoke := &cobra.Command{
		Use:   "revoke-permission <role> <key> [<end>]",
		Short: "Removes a role's permission on exactly a key, range, prefix (--prefix) or keys from a key (--from-key)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			end, err := permRange(args[1], args[2:], revokePrefix, revokeFromKey)
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				resp, err := c.RoleRevokePermission(ctx, args[0], args[1], end)
				return authChanged(g.printer(), resp, err, "Permission of key %s is revoked from role %s", args[1], args[0])
			})
		},
	}
	revoke.Flags().BoolVar(&revokePrefix, "prefix", false, "the permission on the prefix <key>")
	revoke.Flags().BoolVar(&revokeFromKey, "from-key", false, "the permission on every key from <key> on")
	return groupCmd("role", "Adds, deletes, lists roles and grants them permissions",
		authCmd(g, "add <name>", "Adds a role", 1, func(ctx context.Context, c *client.Client, p printer, a []string) error {
			resp, err := c.RoleAdd(ctx, a[0])
			return authChanged(p, resp, err, "Role %s created", a[0])
		}),
		authCmd(g, "delete <name>", "Deletes a role (and takes it from every user)", 1, func(ctx context.Context, c *client.Client, p printer, a []string) error {
			resp, err := c.RoleDelete(ctx, a[0])
			return authChanged(p, resp, err, "Role %s deleted", a[0])
		}),
		authCmd(g, "get <name>", "Shows a role's permissions", 1, func(ctx context.Context, c *client.Client, p printer, a []string) error {
			resp, err := c.RoleGet(ctx, a[0])
			if err != nil {
				return err
			}
			return p.RoleGet(a[0], resp)
		}),
		authCmd(g, "list", "Lists the roles", 0, func(ctx context.Context, c *client.Client, p printer, _ []string) error {
			resp, err := c.RoleList(ctx)
			if err != nil {
				return err
			}
			return p.RoleList(resp)
		}),
		grant, revoke,
	)
}

func permType(s string) (client.PermissionType, error) {
	switch strings.ToLower(s) {
	case "read":
		return client.PermRead, nil
	case "write":
		return client.PermWrite, nil
	case "readwrite":
		return client.PermReadWrite, nil
	}
	return 0, fmt.Errorf("permission type %q: want read, write or readwrite", s)
}

// permRange is the range end of a permission's arguments.
func permRange(key string, end []string, prefix, fromKey bool) (string, error) {
	switch {
	case key == "":
		return "", fmt.Errorf("empty key")
	case prefix && fromKey:
		return "", fmt.Errorf("--prefix and --from-key exclude each other")
	case (prefix || fromKey) && len(end) > 0:
		return "", fmt.Errorf("an end key %q with --prefix or --from-key", end[0])
	case prefix:
		return client.PrefixEnd(key), nil
	case fromKey:
		return "\x00", nil
	case len(end) > 0:
		return end[0], nil
	}
	return "", nil
}

// formatRole prints a role's permissions as etcdctl does.
func formatRole(name string, perms []*kvv1.Permission) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Role %s\n", name)
	for _, want := range []struct {
		label string
		read  bool
	}{{"KV Read:", true}, {"KV Write:", false}} {
		b.WriteString(want.label + "\n")
		for _, p := range perms {
			t := p.GetPermType()
			if t != kvv1.PermissionType_PERMISSION_TYPE_READWRITE && (t == kvv1.PermissionType_PERMISSION_TYPE_READ) != want.read {
				continue
			}
			key, end := string(p.GetKey()), string(p.GetRangeEnd())
			switch {
			case end == "":
				fmt.Fprintf(&b, "\t%s\n", key)
			case end == "\x00":
				fmt.Fprintf(&b, "\t[%s, <open ended>\n", key)
			case end == client.PrefixEnd(key):
				fmt.Fprintf(&b, "\t[%s, %s) (prefix %s)\n", key, end, key)
			default:
				fmt.Fprintf(&b, "\t[%s, %s)\n", key, end)
			}
		}
	}
	return b.String()
}
