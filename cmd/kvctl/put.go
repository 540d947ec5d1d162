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
	key         string
	value       string
	prevKV      bool
	lease       leaseFlag
	ignoreValue bool
	ignoreLease bool
}

func (r *putRequest) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&r.prevKV, "prev-kv", false, "return the key-value pair before the put")
	fs.Var(&r.lease, "lease", "attach the key to this lease (hex id, as lease grant prints it)")
	fs.BoolVar(&r.ignoreValue, "ignore-value", false, "keep the key's current value (give no VALUE): change only its lease")
	fs.BoolVar(&r.ignoreLease, "ignore-lease", false, "keep the key's current lease: change only its value")
}

// setArgs takes KEY VALUE, or KEY alone with --ignore-value.
func (r *putRequest) setArgs(args []string) error {
	switch {
	case r.ignoreValue && len(args) != 1:
		return fmt.Errorf("put --ignore-value needs a key and no value, got %d arguments", len(args))
	case !r.ignoreValue && len(args) != 2:
		return fmt.Errorf("put needs a key and a value, got %d arguments", len(args))
	}
	r.key = args[0]
	if len(args) == 2 {
		r.value = args[1]
	}
	if r.key == "" {
		return errors.New("put: key is empty")
	}
	if r.ignoreLease && r.lease != 0 {
		return errors.New("put: --ignore-lease and --lease cannot be combined")
	}
	return nil
}

func (r *putRequest) op() client.Op {
	var opts []client.OpOption
	if r.prevKV {
		opts = append(opts, client.WithPrevKV())
	}
	if r.lease != 0 {
		opts = append(opts, client.WithLease(int64(r.lease)))
	}
	if r.ignoreValue {
		opts = append(opts, client.WithIgnoreValue())
	}
	if r.ignoreLease {
		opts = append(opts, client.WithIgnoreLease())
	}
	return client.OpPut(r.key, r.value, opts...)
}

// leaseFlag is a lease id flag, read in hex as kvctl prints lease ids.
type leaseFlag client.LeaseID

func (f *leaseFlag) String() string {
	if *f == 0 {
		return ""
	}
	return leaseID(client.LeaseID(*f))
}

func (f *leaseFlag) Set(s string) error {
	id, err := parseLeaseID(s)
	if err != nil {
		return err
	}
	*f = leaseFlag(id)
	return nil
}

func (f *leaseFlag) Type() string { return "lease-id" }

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

--lease ID attaches the key to a lease (kvctl lease grant): the key is deleted
when the lease expires or is revoked. A put without --lease detaches it;
--ignore-lease keeps the key's lease and --ignore-value its value (give no
VALUE then), as etcdctl's flags do.

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
