package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/client"
)

// watchRequest is a watch as the watch command and its interactive lines
// spell it.
type watchRequest struct {
	key            string
	end            string
	prefix         bool
	rev            int64
	prevKV         bool
	progressNotify bool
}

func (r *watchRequest) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&r.prefix, "prefix", false, "watch the keys with KEY as a prefix")
	fs.Int64Var(&r.rev, "rev", 0, "revision to start watching from (0: changes from now on)")
	fs.BoolVar(&r.prevKV, "prev-kv", false, "print each key's previous key-value pair before the event")
	fs.BoolVar(&r.progressNotify, "progress-notify", false, "get periodic progress notifications from the member")
}

// setArgs takes KEY [RANGE_END] and checks the flags.
func (r *watchRequest) setArgs(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("watch needs a key and an optional range end, got %d arguments", len(args))
	}
	r.key = args[0]
	if len(args) == 2 {
		r.end = args[1]
	}
	if r.rev < 0 {
		return fmt.Errorf("invalid --rev %d: must not be negative", r.rev)
	}
	return checkRange("watch", r.key, r.end, len(args) == 2, r.prefix, false)
}

func (r *watchRequest) opts() []client.OpOption {
	var opts []client.OpOption
	switch {
	case r.prefix:
		opts = append(opts, client.WithPrefix())
	case r.end != "":
		opts = append(opts, client.WithRange(r.end))
	}
	if r.rev > 0 {
		opts = append(opts, client.WithRev(r.rev))
	}
	if r.prevKV {
		opts = append(opts, client.WithPrevKV())
	}
	if r.progressNotify {
		opts = append(opts, client.WithProgressNotify())
	}
	return opts
}

// execArgs splits args at "--" (at index dash, -1 for none): what comes
// before is the watch's, what comes after is the command to run on each
// event.
func execArgs(args []string, dash int) (watch, command []string, err error) {
	if dash < 0 {
		return args, nil, nil
	}
	if dash == len(args) {
		return nil, nil, errors.New("watch: found \"--\" but no command after it")
	}
	return args[:dash], args[dash:], nil
}

type watchOptions struct {
	g           *globalOptions
	req         watchRequest
	command     []string
	interactive bool

	mu sync.Mutex // one watch prints or runs its command at a time
}

func newWatchCmd(g *globalOptions) *cobra.Command {
	o := &watchOptions{g: g}
	cmd := &cobra.Command{
		Use:   "watch [flags] KEY [RANGE_END] [-- COMMAND [ARGS...]]",
		Short: "Watches the changes of a key or a range of keys",
		Long: `Watches the key, or the keys in [KEY, RANGE_END), or those with KEY as a
prefix (--prefix), and prints every change until interrupted (Ctrl-C) or the
watch ends. Each event prints as etcdctl prints it: PUT or DELETE on a line,
then, with --prev-kv and when the key existed, the previous key and value
lines, then the key and value lines (the value is empty for a delete).
--progress-notify adds "progress notify: REV" lines when the range is idle.
The json format prints one document per response. --command-timeout bounds
the wait for a member to create the watch, not the watch.

--rev N starts from revision N: the changes since then are printed first. If
the history at N has been compacted, or is compacted while the watch moves
between members, the watch ends with an error: read the keys again and watch
from a newer revision. A member that fails or loses its leader does not end
the watch: it goes on on another endpoint, without missing or repeating a
change.

After "--", a command runs on each event, with its output passed through,
and with the event in etcdctl's environment variables ETCD_WATCH_REVISION,
ETCD_WATCH_EVENT_TYPE, ETCD_WATCH_KEY and ETCD_WATCH_VALUE (the last three
quoted, as etcdctl sets them: ETCD_WATCH_KEY="foo"):
  kvctl watch /config --prefix -- sh -c 'echo $ETCD_WATCH_KEY changed'

With -i, watches are read from stdin, one per line, as "watch [flags] KEY
[RANGE_END] [-- COMMAND...]", and "progress" asks every watch for a
progress notification; the command runs until interrupted, or until stdin
ends and every watch has ended.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.interactive {
				if len(args) > 0 {
					return fmt.Errorf("watch -i reads its watches from stdin and takes no arguments, got %q", args)
				}
				return o.runInteractive(cmd.Context())
			}
			args, command, err := execArgs(args, cmd.ArgsLenAtDash())
			if err != nil {
				return err
			}
			if err := o.req.setArgs(args); err != nil {
				return err
			}
			o.command = command
			return o.Run(cmd.Context())
		},
	}
	o.req.bindFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&o.interactive, "interactive", "i", false, "read watch and progress commands from stdin")
	return cmd
}

// Run watches until ctx ends (nil) or the watch does (an error).
func (o *watchOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	wch, err := o.start(ctx, c, o.req)
	if err != nil {
		return err
	}
	return o.follow(ctx, wch, o.command)
}

// start creates the watch, waiting at most --command-timeout for a member
// to create it; the watch itself lasts until ctx ends.
func (o *watchOptions) start(ctx context.Context, c *client.Client, req watchRequest) (client.WatchChan, error) {
	wctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(o.g.commandTimeout, cancel)
	wch := c.Watch(wctx, req.key, req.opts()...)
	if !timer.Stop() && ctx.Err() == nil {
		return nil, fmt.Errorf("no member created the watch within --command-timeout %v: %w", o.g.commandTimeout, context.DeadlineExceeded)
	}
	return wch, nil // wctx ends with ctx
}

// follow prints the responses of wch, and runs command on each event, until
// the channel closes: when ctx ends (nil) or the watch ends (an error that
// says why).
func (o *watchOptions) follow(ctx context.Context, wch client.WatchChan, command []string) error {
	p := o.g.printer()
	for resp := range wch {
		if resp.Canceled {
			if o.g.writeOut == formatJSON {
				o.mu.Lock()
				err := p.Watch(resp)
				o.mu.Unlock()
				if err != nil {
					return err
				}
			}
			return watchEnded(resp)
		}
		if err := o.print(ctx, p, resp, command); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	return errors.New("the watch ended")
}

// print prints resp and runs command on each of its events.
func (o *watchOptions) print(ctx context.Context, p printer, resp client.WatchResponse, command []string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := p.Watch(resp); err != nil {
		return err
	}
	for _, ev := range resp.Events {
		if len(command) == 0 {
			break
		}
		cmd := exec.CommandContext(ctx, command[0], command[1:]...)
		cmd.Env = append(os.Environ(),
			fmt.Sprintf("ETCD_WATCH_REVISION=%d", resp.Header.GetRevision()),
			fmt.Sprintf("ETCD_WATCH_EVENT_TYPE=%q", eventType(ev.GetType())),
			fmt.Sprintf("ETCD_WATCH_KEY=%q", ev.GetKv().GetKey()),
			fmt.Sprintf("ETCD_WATCH_VALUE=%q", ev.GetKv().GetValue()),
		)
		cmd.Stdout, cmd.Stderr = o.g.out, o.g.errOut
		if err := cmd.Run(); err != nil {
			if ctx.Err() != nil {
				return nil // interrupted while it ran
			}
			return fmt.Errorf("command %q failed: %w", command, err)
		}
	}
	return nil
}

// watchEnded is the error of a watch that ended with resp.
func watchEnded(resp client.WatchResponse) error {
	if resp.CompactRevision != 0 {
		return fmt.Errorf("the watch was canceled: the history it needs has been compacted (compact revision %d): "+
			"read the keys again, then watch from the revision of that read plus one: %w", resp.CompactRevision, resp.Err())
	}
	return fmt.Errorf("the watch was canceled: %w", resp.Err())
}

// runInteractive reads watch and progress lines from stdin and runs them,
// until ctx ends, or stdin ends and every watch has ended.
func (o *watchOptions) runInteractive(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()

	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(o.g.in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
		close(lines)
	}()

	var (
		wg     sync.WaitGroup
		failMu sync.Mutex
		failed int
	)
	defer wg.Wait()
	for {
		var line string
		select {
		case <-ctx.Done():
			return nil
		case l, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					return fmt.Errorf("read watch commands: %w", err)
				}
				wg.Wait()
				if failed > 0 {
					return fmt.Errorf("%d watches ended with an error", failed)
				}
				return nil
			}
			line = l
		}
		args, err := splitArgs(line)
		if err != nil || len(args) == 0 {
			if strings.TrimSpace(line) != "" {
				o.invalid(line, err)
			}
			continue
		}
		switch args[0] {
		case "watch":
			req, command, err := parseWatchLine(args[1:])
			if err != nil {
				o.invalid(line, err)
				continue
			}
			wch, err := o.start(ctx, c, req)
			if err != nil {
				o.invalid(line, err)
				continue
			}
			wg.Go(func() {
				if err := o.follow(ctx, wch, command); err != nil {
					o.mu.Lock()
					fmt.Fprintf(o.g.errOut, "%s: %v\n", line, err)
					o.mu.Unlock()
					failMu.Lock()
					failed++
					failMu.Unlock()
				}
			})
		case "progress":
			pctx, cancel := o.g.commandContext(ctx)
			err := c.RequestProgress(pctx)
			cancel()
			if err != nil {
				o.invalid(line, err)
			}
		default:
			o.invalid(line, errors.New("only watch and progress are supported"))
		}
	}
}

// invalid reports a line that could not be run.
func (o *watchOptions) invalid(line string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.g.errOut, "Invalid command %q (%v)\n", line, err)
}

// parseWatchLine parses the words after "watch" on an interactive line.
func parseWatchLine(words []string) (watchRequest, []string, error) {
	var req watchRequest
	fs := pflag.NewFlagSet("watch", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	req.bindFlags(fs)
	if err := fs.Parse(words); err != nil {
		return req, nil, err
	}
	args, command, err := execArgs(fs.Args(), fs.ArgsLenAtDash())
	if err != nil {
		return req, nil, err
	}
	if err := req.setArgs(args); err != nil {
		return req, nil, err
	}
	return req, command, nil
}
