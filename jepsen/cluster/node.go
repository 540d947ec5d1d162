package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// node is one kvd process in its namespace.
type node struct {
	index      int
	name       string
	ns         string
	ip         string
	clientAddr string
	raftAddr   string
	dataDir    string
	logPath    string
	args       []string
	bin        string
	// tlsArgs are the member's TLS flags (Config.TLS), part of every start.
	tlsArgs []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	exit   *exitStatus   // cmd's, set before done is closed
	paused bool
}

// exitStatus is how one incarnation of a member ended.
type exitStatus struct {
	code int // the exit status; -1 when a signal ended the process
}

// running reports whether the process is alive (possibly paused).
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.runningLocked()
}

func (n *node) runningLocked() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// start launches kvd in the node's namespace, appending to its log. It
// does nothing when the process is already running.
func (n *node) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runningLocked() {
		return nil
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", n.name, err)
	}
	fmt.Fprintf(logf, "=== jepsen: starting %s at %s: kvd %s\n", n.name, time.Now().Format(time.RFC3339Nano), strings.Join(n.args, " "))
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.ns, n.bin}, n.args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // a Ctrl-C on the terminal is for the harness, which tears down
		Pdeathsig: syscall.SIGKILL, // and a harness that dies takes its members with it
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cluster: start %s: %w", n.name, err)
	}
	done, exit := make(chan struct{}), &exitStatus{}
	go func() {
		err := cmd.Wait()
		exit.code = cmd.ProcessState.ExitCode()
		fmt.Fprintf(logf, "=== jepsen: %s exited at %s: %v\n", n.name, time.Now().Format(time.RFC3339Nano), err)
		logf.Close()
		close(done)
	}()
	n.cmd, n.done, n.exit, n.paused = cmd, done, exit, false
	return nil
}

// waitExit waits up to timeout for the process to exit on its own and
// returns its exit status. exited is false when it still runs; a member
// that was never started returns (0, true) at once.
func (n *node) waitExit(timeout time.Duration) (code int, exited bool) {
	n.mu.Lock()
	done, exit := n.done, n.exit
	n.mu.Unlock()
	if done == nil {
		return 0, true
	}
	select {
	case <-done:
		return exit.code, true
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return exit.code, true
	case <-t.C:
		return 0, false
	}
}

// setArgs replaces the flags of the member's next start.
func (n *node) setArgs(args []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.args = args
}

// wipe empties the data directory of a member that is not running.
func (n *node) wipe() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.runningLocked() {
		return fmt.Errorf("cluster: cannot wipe %s: it is running", n.name)
	}
	if err := os.RemoveAll(n.dataDir); err != nil {
		return fmt.Errorf("cluster: wipe %s: %w", n.name, err)
	}
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		return fmt.Errorf("cluster: wipe %s: %w", n.name, err)
	}
	return nil
}

// kill sends SIGKILL and waits for the process to exit. It does nothing
// when the process is not running.
func (n *node) kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return nil
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("cluster: %s (pid %d) did not exit after SIGKILL", n.name, n.cmd.Process.Pid)
	}
	n.paused = false
	return nil
}

// pause sends SIGSTOP.
func (n *node) pause() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.runningLocked() {
		return fmt.Errorf("cluster: cannot pause %s: not running", n.name)
	}
	if err := n.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("cluster: pause %s: %w", n.name, err)
	}
	n.paused = true
	return nil
}

// resume sends SIGCONT to a paused process; otherwise it does nothing.
func (n *node) resume() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.paused || !n.runningLocked() {
		n.paused = false
		return nil
	}
	if err := n.cmd.Process.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cluster: resume %s: %w", n.name, err)
	}
	n.paused = false
	return nil
}

// ownArgs are the flags that make the member itself: its name, data
// directory and addresses.
func (n *node) ownArgs() []string {
	return []string{
		"--name", n.name, "--data-dir", n.dataDir,
		"--client-addr", n.clientAddr, "--raft-addr", n.raftAddr,
	}
}
