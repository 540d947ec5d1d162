package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envPrefix prefixes the environment variable of each global flag:
// --write-out is KVDUTIL_WRITE_OUT. A flag given on the command line wins
// over its variable.
const envPrefix = "KVDUTIL_"

// Output formats of -w/--write-out.
const (
	formatSimple = "simple"
	formatJSON   = "json"
	formatTable  = "table"
)

// globalOptions holds the global flags and the process's streams. One value
// is built per command tree and shared by its commands; nothing lives in
// package variables.
type globalOptions struct {
	out       io.Writer
	errOut    io.Writer
	lookupEnv func(string) (string, bool)

	writeOut string
}

// newRootCmd builds kvdutil's command tree around the given streams, reading
// defaults for unset global flags from the process environment.
func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return newRootCmdWithEnv(stdin, stdout, stderr, os.LookupEnv)
}

// newRootCmdWithEnv is newRootCmd with the environment given as a lookup
// function, for tests.
func newRootCmdWithEnv(stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) *cobra.Command {
	g := &globalOptions{out: stdout, errOut: stderr, lookupEnv: lookupEnv}
	root := &cobra.Command{
		Use:   "kvdutil",
		Short: "Offline tools for kvd's snapshot files, data dirs and test certificates",
		Long: `kvdutil holds kvd's offline tools: they read and write snapshot files and
data dirs on this machine and need no cluster, as etcdutl does for etcd.
Everything that talks to a cluster is in kvctl.

The global flag -w can also be set with KVDUTIL_WRITE_OUT; the flag on the
command line wins over the variable.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.complete(cmd.Root().PersistentFlags())
		},
	}
	root.SetVersionTemplate("kvdutil {{.Version}}\n")
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.bindFlags(root.PersistentFlags())

	// Each command lives in its own file; adding one is a file and a line.
	root.AddCommand(
		newSnapshotCmd(g),
		newMemberCmd(g),
		newVersionCmd(g),
		newCertsCmd(g),
	)
	return root
}

func (g *globalOptions) bindFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&g.writeOut, "write-out", "w", formatSimple, "output format: simple, json or table")
}

// complete applies environment variables to the global flags that were not
// given, then validates them.
func (g *globalOptions) complete(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := g.lookupEnv(name)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("invalid %s %q: %w", name, v, serr)
		}
	})
	if err != nil {
		return err
	}
	return g.validate()
}

func (g *globalOptions) validate() error {
	switch g.writeOut {
	case formatSimple, formatJSON, formatTable:
		return nil
	default:
		return fmt.Errorf("invalid --write-out %q: want simple, json or table", g.writeOut)
	}
}

// printer returns the printer of --write-out.
func (g *globalOptions) printer() printer {
	return newPrinter(g.writeOut, g.out)
}

// groupCmd returns a command that only groups subcommands, such as snapshot
// or member. Run without a subcommand it prints its help; with an unknown one
// it fails.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use + " <subcommand>",
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}
