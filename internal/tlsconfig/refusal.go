package tlsconfig

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// refusalLogEvery is the least time between two log lines about refused
// handshakes of one listener; the ones in between are counted.
const refusalLogEvery = 10 * time.Second

// RefusalLog logs refused TLS handshakes of one listener, at most one line
// per refusalLogEvery, with a count of those it left out.
type RefusalLog struct {
	log      *slog.Logger
	listener string

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// NewRefusalLog returns a RefusalLog for the listener named listener.
func NewRefusalLog(log *slog.Logger, listener string) *RefusalLog {
	if log == nil {
		log = slog.Default()
	}
	return &RefusalLog{log: log, listener: listener}
}

// Refused logs (or counts) one refused handshake from remote.
func (r *RefusalLog) Refused(remote net.Addr, err error) {
	if errors.Is(err, io.EOF) {
		return // connected and hung up without a word: a TCP probe, not a refusal
	}
	r.mu.Lock()
	now := time.Now()
	if now.Before(r.next) {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	r.next = now.Add(refusalLogEvery)
	suppressed := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	attrs := []any{"listener", r.listener, "remote", remote.String(), "err", err}
	if suppressed > 0 {
		attrs = append(attrs, "refused_since_last_line", suppressed)
	}
	r.log.Warn("TLS handshake refused", attrs...)
}
