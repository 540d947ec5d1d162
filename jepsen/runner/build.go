package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildKvd builds a static kvd from the module in the working directory
// into dir and returns its path. With unsafe, it builds with -tags
// kvd_unsafe, the only build that accepts --unsafe-local-reads.
func BuildKvd(ctx context.Context, dir string, unsafe bool) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name, args := "kvd", []string{"build"}
	if unsafe {
		name, args = "kvd-unsafe", append(args, "-tags", "kvd_unsafe")
	}
	out, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	args = append(args, "-o", out, "github.com/kvd-io/kvd/cmd/kvd")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %v: %w\n%s", args, err, b)
	}
	return out, nil
}
