package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// forwardComment tags the one rule Setup adds to the host's FORWARD chain.
const forwardComment = "kvd-jepsen"

// command runs name with args, bounded by ctx and a 20s ceiling, and
// returns its combined output in the error.
func command(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func (c Config) forwardRule(op string) []string {
	return []string{"-w", op, "FORWARD", "-i", c.Bridge, "-o", c.Bridge, "-m", "comment", "--comment", forwardComment, "-j", "ACCEPT"}
}

// setupNetwork creates the bridge, one namespace per member with a veth
// into the bridge, and the FORWARD rule.
func (c Config) setupNetwork(ctx context.Context) error {
	steps := [][]string{
		{"ip", "link", "add", c.Bridge, "type", "bridge"},
		{"ip", "addr", "add", c.bridgeIP() + "/24", "dev", c.Bridge},
		{"ip", "link", "set", c.Bridge, "up"},
	}
	for i := 1; i <= c.Nodes; i++ {
		ns, veth := c.Namespace(i), c.veth(i)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "link", "set", veth, "master", c.Bridge, "up"},
			[]string{"ip", "-n", ns, "addr", "add", c.IP(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
		)
	}
	steps = append(steps, append([]string{c.Iptables}, c.forwardRule("-I")...))
	for _, s := range steps {
		if _, err := command(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("cluster: network setup: %w", err)
		}
	}
	return nil
}

// Cleanup removes everything a run with this config creates: processes in
// its namespaces (SIGKILL), the namespaces, veths and bridge, and the
// FORWARD rule. It touches nothing else, and is safe to run when nothing is
// left.
func Cleanup(ctx context.Context, c Config) error {
	var errs []error
	out, err := command(ctx, "ip", "netns", "list")
	if err != nil {
		return fmt.Errorf("cluster: cleanup: %w", err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], c.Prefix+"-n") {
			continue
		}
		ns := f[0]
		if err := killNamespace(ctx, ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := command(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		} else {
			c.logf("cleanup: removed namespace %s", ns)
		}
	}
	// Deleting a namespace deletes its veth end, which takes the peer with
	// it, but asynchronously; remove what is still there.
	if out, err := command(ctx, "ip", "-o", "link", "show"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if name == c.Bridge || (strings.HasPrefix(name, c.Prefix+"v") && isDigits(name[len(c.Prefix)+1:])) {
				if _, err := command(ctx, "ip", "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
					errs = append(errs, err)
				} else if err == nil {
					c.logf("cleanup: removed link %s", name)
				}
			}
		}
	}
	if _, err := exec.LookPath(c.Iptables); err == nil {
		for i := 0; i < 100; i++ { // one per crashed run at most; bounded anyway
			if _, err := command(ctx, c.Iptables, c.forwardRule("-D")...); err != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	_, err := strconv.Atoi(s)
	return err == nil
}

// killNamespace SIGKILLs every process in namespace ns (a crashed run's
// kvd members) and waits until they are gone.
func killNamespace(ctx context.Context, ns string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := command(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			return err
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: processes %v in %s did not exit", pids, ns)
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGCONT)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// iptablesIn runs iptables inside member i's namespace.
func (c Config) iptablesIn(ctx context.Context, i int, args ...string) error {
	_, err := command(ctx, "ip", append([]string{"netns", "exec", c.Namespace(i), c.Iptables, "-w"}, args...)...)
	return err
}
