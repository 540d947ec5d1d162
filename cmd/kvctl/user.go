package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func newUserCmd(g *globalOptions) *cobra.Command {
	var interactive, noPassword bool
	add := &cobra.Command{
		Use:   "add <name>[:<password>]",
		Short: "Adds a user (asks for its password unless given or --no-password)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, pw, hasPW := strings.Cut(args[0], ":")
			if !hasPW && !noPassword {
				var err error
				if pw, err = g.readPassword("Password of "+name, interactive, true); err != nil {
					return err
				}
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				var (
					resp *kvv1.UserAddResponse
					err  error
				)
				if noPassword {
					resp, err = c.UserAddNoPassword(ctx, name)
				} else {
					resp, err = c.UserAdd(ctx, name, pw)
				}
				if err != nil {
					return err
				}
				return g.printer().AuthChange(fmt.Sprintf("User %s created", name), resp.GetHeader())
			})
		},
	}
	add.Flags().BoolVar(&interactive, "interactive", true, "ask for the password on the terminal; false reads it from stdin")
	add.Flags().BoolVar(&noPassword, "no-password", false, "a user without a password, which only a client certificate with its name identifies")

	var pwInteractive bool
	passwd := &cobra.Command{
		Use:   "passwd <name>",
		Short: "Changes a user's password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := g.readPassword("Password of "+args[0], pwInteractive, true)
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				resp, err := c.UserChangePassword(ctx, args[0], pw)
				if err != nil {
					return err
				}
				return g.printer().AuthChange("Password updated", resp.GetHeader())
			})
		},
	}
	passwd.Flags().BoolVar(&pwInteractive, "interactive", true, "ask for the password on the terminal; false reads it from stdin")

	return groupCmd("user", "Adds, deletes, lists users and grants them roles",
		add, passwd,
		authCmd(g, "delete <name>", "Deletes a user", 1, func(ctx context.Context, c *client.Client, p printer, a []string) error {
			resp, err := c.UserDelete(ctx, a[0])
			return authChanged(p, resp, err, "User %s deleted", a[0])
		}),
		authCmd(g, "get <name>", "Shows a user's roles", 1, func(ctx context.Context, c *client.Client, p printer, a []string) error {
			resp, err := c.UserGet(ctx, a[0])
			if err != nil {
				return err
			}
			return p.UserGet(a[0], resp)
		}),
		authCmd(g, "list", "Lists the users", 0, func(ctx context.Context, c *client.Client, p printer, _ []string) error {
			resp, err := c.UserList(ctx)
			if err != nil {
				return err
			}
			return p.UserList(resp)
		}),
		authCmd(g, "grant-role <user> <role>", "Gives a user a role", 2, func(ctx context.Context, c *client.Client, p printer, a []string) error {
			resp, err := c.UserGrantRole(ctx, a[0], a[1])
			return authChanged(p, resp, err, "Role %s is granted to user %s", a[1], a[0])
		}),
		authCmd(g, "revoke-role <user> <role>", "Takes a role from a user", 2, func(ctx context.Context, c *client.Client, p printer, a []string) error {
			resp, err := c.UserRevokeRole(ctx, a[0], a[1])
			return authChanged(p, resp, err, "Role %s is revoked from user %s", a[1], a[0])
		}),
	)
}

// authCmd is a user, role or auth command of nargs arguments that runs fn
// with a client and the printer of -w.
func authCmd(g *globalOptions, use, short string, nargs int, fn func(ctx context.Context, c *client.Client, p printer, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				return fn(ctx, c, g.printer(), args)
			})
		},
	}
}

// authChanged prints the result of a change that answered resp and err.
func authChanged(p printer, resp interface{ GetHeader() *kvv1.ResponseHeader }, err error, format string, args ...any) error {
	if err != nil {
		return err
	}
	return p.AuthChange(fmt.Sprintf(format, args...), resp.GetHeader())
}

func lines(items []string) string {
	var b strings.Builder
	for _, s := range items {
		b.WriteString(s + "\n")
	}
	return b.String()
}
