package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
)

// defaultSessionTTL is the TTL of the lease lock and elect hold, as
// etcdctl's.
const defaultSessionTTL = 60

type lockOptions struct {
	g       *globalOptions
	name    string
	ttl     int64
	command []string
}

func newLockCmd(g *globalOptions) *cobra.Command {
	o := &lockOptions{g: g}
	cmd := &cobra.Command{
		Use:   "lock [flags] NAME [-- COMMAND [ARGS...]]",
		Short: "Acquires a named lock",
		Long: `Acquires the lock NAME through the cluster's lock service, with a lease of
--ttl seconds kept alive meanwhile, waiting for those ahead in its queue.

Without a command, it prints the lock's key (NAME/ and the lease id) and holds
the lock until interrupted (Ctrl-C); then it releases it. If the lease is lost
meanwhile (the cluster was unreachable for longer than the TTL), it fails.

With a command after "--", it runs the command while holding the lock, then
releases it, and exits with the command's status. The command finds the lock's
key in KVD_LOCK_KEY and its fencing token in KVD_LOCK_REV (also as
ETCD_LOCK_KEY and ETCD_LOCK_REV): the token, the key's create revision, grows
with each acquisition. A lock alone does not keep two holders apart when one
is paused past its lease; have what the lock protects refuse a token smaller
than the largest it has seen:
  kvctl lock backup -- sh -c 'run-backup --fencing-token "$KVD_LOCK_REV"'`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var command []string
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash == len(args) {
					return errors.New("lock: found \"--\" but no command after it")
				}
				args, command = args[:dash], args[dash:]
			}
			if len(args) != 1 {
				return fmt.Errorf("lock needs a lock name, got %d arguments", len(args))
			}
			if args[0] == "" {
				return errors.New("lock: name is empty")
			}
			if o.ttl <= 0 {
				return fmt.Errorf("invalid --ttl %d: must be positive", o.ttl)
			}
			o.name, o.command = args[0], command
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().Int64Var(&o.ttl, "ttl", defaultSessionTTL, "TTL in seconds of the lease the lock is held with")
	return cmd
}

// Run takes the lock, holds it (or runs the command), and releases it.
func (o *lockOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := startSession(ctx, o.g, c, o.ttl)
	if err != nil {
		return err
	}
	defer s.close()
	lock, err := c.Lock(s.ctx, o.name, s.id)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting
		}
		if s.lost(ctx) {
			return fmt.Errorf("lock %q: %w", o.name, errSessionLost)
		}
		return fmt.Errorf("lock %q: %w", o.name, err)
	}
	defer o.unlock(c, lock)
	if len(o.command) == 0 {
		if err := o.g.printer().Lock(lock); err != nil {
			return err
		}
		return s.hold(ctx)
	}
	return o.runCommand(ctx, s, lock)
}

// unlock releases the lock, within --command-timeout of its own.
func (o *lockOptions) unlock(c *client.Client, lock *client.LockResponse) {
	ctx, cancel := context.WithTimeout(context.Background(), o.g.commandTimeout)
	defer cancel()
	if _, err := c.Unlock(ctx, string(lock.GetKey())); err != nil {
		fmt.Fprintf(o.g.errOut, "kvctl: release lock %s: %v (revoking its lease releases it)\n", lock.GetKey(), err)
	}
}

// runCommand runs the command while holding the lock and returns its exit
// status as an exitError. Interrupted, the command gets an interrupt.
func (o *lockOptions) runCommand(ctx context.Context, s *session, lock *client.LockResponse) error {
	cmd := exec.CommandContext(ctx, o.command[0], o.command[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	key, rev := string(lock.GetKey()), fmt.Sprint(lock.GetCreateRevision())
	cmd.Env = append(os.Environ(), "KVD_LOCK_KEY="+key, "KVD_LOCK_REV="+rev, "ETCD_LOCK_KEY="+key, "ETCD_LOCK_REV="+rev)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.g.in, o.g.out, o.g.errOut
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lock: run %q: %w", o.command, err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-s.done:
			if ctx.Err() == nil {
				fmt.Fprintf(o.g.errOut, "kvctl: lock %s lost while the command runs: its lease expired\n", key)
			}
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return &exitError{code: exit.ExitCode(), err: fmt.Errorf("command %q: %w", o.command, err)}
	case err != nil:
		return fmt.Errorf("lock: run %q: %w", o.command, err)
	case s.lost(ctx):
		return fmt.Errorf("lock %q: %w while the command ran", o.name, errSessionLost)
	}
	return nil
}

// exitError makes kvctl exit with code, without printing err (a command
// kvctl ran printed its own).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// errSessionLost: the lease of lock or elect expired.
var errSessionLost = errors.New("the lease expired or was revoked: the cluster was not reached within its TTL")

// session is a lease kept alive for lock and elect.
type session struct {
	c      *client.Client
	g      *globalOptions
	id     client.LeaseID
	ctx    context.Context // ends when the lease is lost or the session closed
	cancel context.CancelFunc
	done   chan struct{} // closed when the keep-alive ends
}

// startSession grants a lease of ttl seconds and keeps it alive.
func startSession(ctx context.Context, g *globalOptions, c *client.Client, ttl int64) (*session, error) {
	gctx, cancel := g.commandContext(ctx)
	resp, err := c.Grant(gctx, ttl)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("grant the lease: %w", err)
	}
	sctx, scancel := context.WithCancel(ctx)
	ch, err := c.KeepAlive(sctx, resp.GetId())
	if err != nil {
		scancel()
		return nil, fmt.Errorf("keep the lease alive: %w", err)
	}
	s := &session{c: c, g: g, id: resp.GetId(), ctx: sctx, cancel: scancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer scancel()
		for range ch {
		}
	}()
	return s, nil
}

// lost reports whether the lease was lost: the keep-alive ended while ctx
// (the command's) had not.
func (s *session) lost(ctx context.Context) bool {
	select {
	case <-s.done:
		return ctx.Err() == nil
	default:
		return false
	}
}

// hold waits until ctx ends (nil) or the lease is lost.
func (s *session) hold(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.done:
		if ctx.Err() != nil {
			return nil
		}
		return errSessionLost
	}
}

// close stops the keep-alive and revokes the lease, releasing what it held.
func (s *session) close() {
	s.cancel()
	<-s.done
	ctx, cancel := context.WithTimeout(context.Background(), s.g.commandTimeout)
	defer cancel()
	if _, err := s.c.Revoke(ctx, s.id); err != nil && !errors.Is(err, client.ErrLeaseNotFound) {
		fmt.Fprintf(s.g.errOut, "kvctl: revoke lease %s: %v (it expires on its own)\n", leaseID(s.id), err)
	}
}
