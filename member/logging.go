package member

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// newRaftLogger routes hashicorp/raft's hclog output into slog: hclog writes
// JSON lines to a writer that re-logs each one with its level and fields.
func newRaftLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.Info,
		JSONFormat: true,
		Output:     &slogWriter{log: l},
	})
}

type slogWriter struct {
	mu  sync.Mutex
	log *slog.Logger
	buf []byte
}

var _ io.Writer = (*slogWriter)(nil)

func (w *slogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
}

func (w *slogWriter) emit(line []byte) {
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		w.log.Info(string(line), "component", "raft")
		return
	}
	level := slog.LevelInfo
	switch rec["@level"] {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	msg, _ := rec["@message"].(string)
	attrs := []any{"component", "raft"}
	for k, v := range rec {
		if strings.HasPrefix(k, "@") {
			continue
		}
		attrs = append(attrs, k, v)
	}
	w.log.Log(context.Background(), level, msg, attrs...)
}
