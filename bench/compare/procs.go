package main

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"syscall"
	"time"
)

// procs is a group of processes the comparison started and must stop: etcd
// members for the security rows, the gRPC floor's servers.
type procs struct {
	what   string // names them in errors: "etcd", "the gRPC floor"
	cmds   []*exec.Cmd
	exited []chan struct{} // closed when cmds[i] has exited
}

// start starts cmd as one of the group; out, if not nil, is closed once
// the process has exited.
func (g *procs) start(cmd *exec.Cmd, out io.Closer) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		if out != nil {
			out.Close()
		}
		close(done)
	}()
	g.cmds, g.exited = append(g.cmds, cmd), append(g.exited, done)
	return nil
}

// stop sends each process SIGTERM and kills those still running after
// grace; the group is empty afterwards.
func (g *procs) stop(grace time.Duration) error {
	var errs []error
	for i, cmd := range g.cmds {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited[i]:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-g.exited[i]
			errs = append(errs, fmt.Errorf("%s pid %d did not stop within %v of SIGTERM; killed", g.what, cmd.Process.Pid, grace))
		}
	}
	g.cmds, g.exited = nil, nil
	return errors.Join(errs...)
}

// cpu returns the CPU time the group's processes have used so far.
func (g *procs) cpu() time.Duration {
	var t time.Duration
	for _, cmd := range g.cmds {
		t += procCPU(cmd.Process.Pid)
	}
	return t
}
