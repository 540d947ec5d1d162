package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
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
				var err error
				if noPassword {
					_, err = c.UserAddNoPassword(ctx, name)
				} else {
					_, err = c.UserAdd(ctx, name, pw)
				}
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(g.out, "User %s created\n", name)
				return err
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
				if _, err := c.UserChangePassword(ctx, args[0], pw); err != nil {
					return err
				}
				_, err := fmt.Fprintln(g.out, "Password updated")
				return err
			})
		},
	}
	passwd.Flags().BoolVar(&pwInteractive, "interactive", true, "ask for the password on the terminal; false reads it from stdin")

	simple := func(use, short string, nargs int, fn func(ctx context.Context, c *client.Client, args []string) (string, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(nargs),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
					out, err := fn(ctx, c, args)
					if err != nil {
						return err
					}
					_, err = fmt.Fprint(g.out, out)
					return err
				})
			},
		}
	}
	return groupCmd("user", "Adds, deletes, lists users and grants them roles",
		add, passwd,
		simple("delete <name>", "Deletes a user", 1, func(ctx context.Context, c *client.Client, a []string) (string, error) {
			_, err := c.UserDelete(ctx, a[0])
			return fmt.Sprintf("User %s deleted\n", a[0]), err
		}),
		simple("get <name>", "Shows a user's roles", 1, func(ctx context.Context, c *client.Client, a []string) (string, error) {
			resp, err := c.UserGet(ctx, a[0])
			return fmt.Sprintf("User: %s\nRoles: %s\n", a[0], strings.Join(resp.GetRoles(), " ")), err
		}),
		simple("list", "Lists the users", 0, func(ctx context.Context, c *client.Client, _ []string) (string, error) {
			resp, err := c.UserList(ctx)
			return lines(resp.GetUsers()), err
		}),
		simple("grant-role <user> <role>", "Gives a user a role", 2, func(ctx context.Context, c *client.Client, a []string) (string, error) {
			_, err := c.UserGrantRole(ctx, a[0], a[1])
			return fmt.Sprintf("Role %s is granted to user %s\n", a[1], a[0]), err
		}),
		simple("revoke-role <user> <role>", "Takes a role from a user", 2, func(ctx context.Context, c *client.Client, a []string) (string, error) {
			_, err := c.UserRevokeRole(ctx, a[0], a[1])
			return fmt.Sprintf("Role %s is revoked from user %s\n", a[1], a[0]), err
		}),
	)
}

func lines(items []string) string {
	var b strings.Builder
	for _, s := range items {
		b.WriteString(s + "\n")
	}
	return b.String()
}
