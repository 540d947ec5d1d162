package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/client"
)

// delRequest is a delete as the del command and txn's del lines spell it.
type delRequest struct {
	key     string
	end     string
	prefix  bool
	fromKey bool
	prevKV  bool
}

func (r *delRequest) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&r.prefix, "prefix", false, "delete the keys with KEY as a prefix")
	fs.BoolVar(&r.fromKey, "from-key", false, "delete the keys greater than or equal to KEY")
	fs.BoolVar(&r.prevKV, "prev-kv", false, "return the deleted key-value pairs")
}

// setArgs takes KEY [END] and checks the flags against each other.
func (r *delRequest) setArgs(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("del needs a key and an optional range end, got %d arguments", len(args))
	}
	r.key = args[0]
	if len(args) == 2 {
		r.end = args[1]
	}
	return checkRange("del", r.key, r.end, len(args) == 2, r.prefix, r.fromKey)
}

func (r *delRequest) op() client.Op {
	var opts []client.OpOption
	switch {
	case r.prefix:
		opts = append(opts, client.WithPrefix())
	case r.fromKey:
		opts = append(opts, client.WithFromKey())
	case r.end != "":
		opts = append(opts, client.WithRange(r.end))
	}
	if r.prevKV {
		opts = append(opts, client.WithPrevKV())
	}
	return client.OpDelete(r.key, opts...)
}

type delOptions struct {
	g   *globalOptions
	req delRequest
}

func newDelCmd(g *globalOptions) *cobra.Command {
	o := &delOptions{g: g}
	cmd := &cobra.Command{
		Use:   "del KEY [END]",
		Short: "Removes the key or a range of keys",
		Long: `Removes the key, or the keys in [KEY, END), or those that --prefix or
--from-key select, and prints the number of keys deleted. With --prev-kv, each
deleted pair follows as a key line and a value line.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.req.setArgs(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.req.bindFlags(cmd.Flags())
	return cmd
}

// Run deletes and prints the result.
func (o *delOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.Do(ctx, o.req.op())
	if err != nil {
		return err
	}
	return o.g.printer().Del(resp.Del())
}
