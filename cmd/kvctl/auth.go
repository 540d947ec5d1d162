package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
)

// Users, roles and authentication, with etcdctl's commands and habits: a
// password missing from --user or a command is asked for on the terminal,
// or read from the first line of stdin with --interactive=false.

func newAuthCmd(g *globalOptions) *cobra.Command {
	run := func(fn func(ctx context.Context, c *client.Client) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error { return g.withClient(cmd.Context(), fn) }
	}
	return groupCmd("auth", "Enables, disables and reports authentication",
		&cobra.Command{
			Use:   "enable",
			Short: "Turns authentication on (needs a user root; gives it the role root)",
			Args:  cobra.NoArgs,
			RunE: run(func(ctx context.Context, c *client.Client) error {
				resp, err := c.AuthEnable(ctx)
				if err != nil {
					if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "root user does not have root role") {
						return err
					}
					// As etcdctl: the role root exists implicitly; grant it.
					if _, err := c.UserGrantRole(ctx, "root", "root"); err != nil {
						return err
					}
					if resp, err = c.AuthEnable(ctx); err != nil {
						return err
					}
				}
				return g.printer().AuthChange("Authentication Enabled", resp.GetHeader())
			}),
		},
		&cobra.Command{
			Use:   "disable",
			Short: "Turns authentication off",
			Args:  cobra.NoArgs,
			RunE: run(func(ctx context.Context, c *client.Client) error {
				resp, err := c.AuthDisable(ctx)
				return authChanged(g.printer(), resp, err, "Authentication Disabled")
			}),
		},
		&cobra.Command{
			Use:   "status",
			Short: "Reports whether authentication is on, and the auth revision",
			Args:  cobra.NoArgs,
			RunE: run(func(ctx context.Context, c *client.Client) error {
				resp, err := c.AuthStatus(ctx)
				if err != nil {
					return err
				}
				return g.printer().AuthStatus(resp)
			}),
		},
	)
}

// readPassword asks for a password: on the terminal (twice with confirm)
// when stdin is one and interactive, else the first line of stdin.
func (g *globalOptions) readPassword(prompt string, interactive, confirm bool) (string, error) {
	f, isFile := g.in.(*os.File)
	if interactive && isFile && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(g.errOut, prompt+": ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.errOut)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if confirm {
			fmt.Fprint(g.errOut, "Type it again for confirmation: ")
			again, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(g.errOut)
			if err != nil {
				return "", fmt.Errorf("read password: %w", err)
			}
			if string(again) != string(pw) {
				return "", errors.New("the passwords do not match")
			}
		}
		return string(pw), nil
	}
	if interactive && isFile {
		return "", fmt.Errorf("%s: stdin is not a terminal; pass the password on stdin with --interactive=false", prompt)
	}
	line, err := bufio.NewReader(g.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("%s: no password on stdin", prompt)
	}
	return line, nil
}
