package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/client"
)

// getRequest is a read as the get command and txn's get lines spell it.
type getRequest struct {
	key       string
	end       string
	prefix    bool
	fromKey   bool
	limit     int64
	rev       int64
	keysOnly  bool
	countOnly bool
}

func (r *getRequest) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&r.prefix, "prefix", false, "get the keys with KEY as a prefix")
	fs.BoolVar(&r.fromKey, "from-key", false, "get the keys greater than or equal to KEY")
	fs.Int64Var(&r.limit, "limit", 0, "maximum number of results (0: no limit)")
	fs.Int64Var(&r.rev, "rev", 0, "read the store at this revision (0: the current one)")
	fs.BoolVar(&r.keysOnly, "keys-only", false, "get only the keys")
	fs.BoolVar(&r.countOnly, "count-only", false, "get only the number of keys")
}

// setArgs takes KEY [END] and checks the flags against each other.
func (r *getRequest) setArgs(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("get needs a key and an optional range end, got %d arguments", len(args))
	}
	r.key = args[0]
	if len(args) == 2 {
		r.end = args[1]
	}
	return checkRange("get", r.key, r.end, len(args) == 2, r.prefix, r.fromKey)
}

func (r *getRequest) validate() error {
	switch {
	case r.keysOnly && r.countOnly:
		return errors.New("--keys-only and --count-only cannot be used together")
	case r.limit < 0:
		return fmt.Errorf("invalid --limit %d: must not be negative", r.limit)
	case r.rev < 0:
		return fmt.Errorf("invalid --rev %d: must not be negative", r.rev)
	}
	return nil
}

// checkRange validates the key and range flags shared by get and del.
func checkRange(cmd, key, end string, hasEnd, prefix, fromKey bool) error {
	switch {
	case prefix && fromKey:
		return errors.New("--prefix and --from-key cannot be used together")
	case hasEnd && prefix:
		return fmt.Errorf("%s: a range end cannot be used with --prefix", cmd)
	case hasEnd && fromKey:
		return fmt.Errorf("%s: a range end cannot be used with --from-key", cmd)
	case key == "" && !prefix && !fromKey:
		return fmt.Errorf("%s: key is empty (use --prefix or --from-key with \"\" for every key)", cmd)
	}
	return nil
}

func (r *getRequest) op(serializable bool) client.Op {
	var opts []client.OpOption
	switch {
	case r.prefix:
		opts = append(opts, client.WithPrefix())
	case r.fromKey:
		opts = append(opts, client.WithFromKey())
	case r.end != "":
		opts = append(opts, client.WithRange(r.end))
	}
	if r.limit > 0 {
		opts = append(opts, client.WithLimit(r.limit))
	}
	if r.rev > 0 {
		opts = append(opts, client.WithRev(r.rev))
	}
	if r.keysOnly {
		opts = append(opts, client.WithKeysOnly())
	}
	if r.countOnly {
		opts = append(opts, client.WithCountOnly())
	}
	if serializable {
		opts = append(opts, client.WithSerializable())
	}
	return client.OpGet(r.key, opts...)
}

type getOptions struct {
	g              *globalOptions
	req            getRequest
	printValueOnly bool
}

func newGetCmd(g *globalOptions) *cobra.Command {
	o := &getOptions{g: g}
	cmd := &cobra.Command{
		Use:   "get KEY [END]",
		Short: "Gets the key or a range of keys",
		Long: `Gets the key, or the keys in [KEY, END), or those that --prefix or
--from-key select.

The simple format prints, for each key, a line with the key then a line with
the value, like etcdctl (with --keys-only the value line is empty). The json
format prints the header, the kvs with base64 keys and values, count and more.
--consistency=s reads from the serving member's local state.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.req.bindFlags(cmd.Flags())
	cmd.Flags().BoolVar(&o.printValueOnly, "print-value-only", false, `print only values (simple format)`)
	return cmd
}

func (o *getOptions) complete(args []string) error {
	if err := o.req.setArgs(args); err != nil {
		return err
	}
	if err := o.req.validate(); err != nil {
		return err
	}
	if o.printValueOnly && (o.req.keysOnly || o.req.countOnly) {
		return errors.New("--print-value-only cannot be used with --keys-only or --count-only")
	}
	return nil
}

// Run reads and prints the result.
func (o *getOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.Do(ctx, o.req.op(o.g.serializable()))
	if err != nil {
		return err
	}
	return o.g.printer().Get(resp.Get(), getFormat{valueOnly: o.printValueOnly, countOnly: o.req.countOnly})
}
