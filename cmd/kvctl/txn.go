package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
)

type txnOptions struct {
	g *globalOptions
}

func newTxnCmd(g *globalOptions) *cobra.Command {
	o := &txnOptions{g: g}
	return &cobra.Command{
		Use:   "txn",
		Short: "Txn processes all the requests in one transaction",
		Long: `Txn reads a transaction from standard input, as etcdctl txn does:

  compares, one per line
  <empty line>
  success requests, one per line
  <empty line>
  failure requests, one per line (up to the end of input or an empty line)

A compare is <target>("<key>") <op> <value>, with the targets val (value),
ver (version), create (c), mod (m) and lease, and the operators = != < >.
Values of val are quoted strings; the others are integers, quoted or not.
A request is put KEY VALUE [--prev-kv], get KEY [END] [get flags] or
del KEY [END] [del flags]. Arguments may be double-quoted Go strings (with
escapes such as \n) or single-quoted literal text.

Example:
  printf '%s\n' 'mod("k") > "0"' '' 'put k "new value"' '' 'get k' | kvctl txn

The simple format prints SUCCESS or FAILURE, then, after a blank line each,
the responses as put, get and del print them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
}

// Run reads the transaction from stdin, commits it and prints the result.
func (o *txnOptions) Run(ctx context.Context) error {
	spec, err := parseTxn(o.g.in)
	if err != nil {
		return err
	}
	cmps := make([]client.Cmp, 0, len(spec.compares))
	for _, c := range spec.compares {
		cmps = append(cmps, c.cmp())
	}
	ops := func(reqs []requestSpec) []client.Op {
		out := make([]client.Op, 0, len(reqs))
		for _, r := range reqs {
			out = append(out, r.op())
		}
		return out
	}

	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.Txn(ctx).If(cmps...).Then(ops(spec.success)...).Else(ops(spec.failure)...).Commit()
	if err != nil {
		return err
	}
	ran := spec.failure
	if resp.Succeeded {
		ran = spec.success
	}
	formats := make([]getFormat, 0, len(ran))
	for _, r := range ran {
		formats = append(formats, r.format())
	}
	return o.g.printer().Txn(resp, formats)
}
