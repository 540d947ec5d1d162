package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/client"
)

// putRequest is a put as the put command and txn's put lines spell it.
type putRequest struct {
	key    string
	value  string
	prevKV bool
}

func (r *putRequest) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&r.prevKV, "prev-kv", false, "return the key-value pair before the put")
}

// setArgs takes KEY VALUE.
func (r *putRequest) setArgs(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("put needs a key and a value, got %d arguments", len(args))
	}
	r.key, r.value = args[0], args[1]
	if r.key == "" {
		return errors.New("put: key is empty")
	}
	return nil
}

func (r *putRequest) op() client.Op {
	var opts []client.OpOption
	if r.prevKV {
		opts = append(opts, client.WithPrevKV())
	}
	return client.OpPut(r.key, r.value, opts...)
}

type putOptions struct {
	g   *globalOptions
	req putRequest
}

func newPutCmd(g *globalOptions) *cobra.Command {
	o := &putOptions{g: g}
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Puts the given key into the store",
		Long: `Puts the given key into the store and prints OK.

With --prev-kv, the key-value pair before the put follows, as a key line and a
value line. A value that starts with '-' must follow "--":
  kvctl put -- key -value`,
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

// Run sends the put and prints its result.
func (o *putOptions) Run(ctx context.Context) error {
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
	return o.g.printer().Put(resp.Put())
}
