package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// ProgressLine renders p as one line of a progress bar, without a line end:
// requests against Total, or time against Limit when only that is set.
func ProgressLine(label string, p Progress) string {
	const width = 30
	frac := -1.0
	switch {
	case p.Total > 0:
		frac = float64(p.Done) / float64(p.Total)
	case p.Limit > 0:
		frac = float64(p.Elapsed) / float64(p.Limit)
	}
	rate := 0.0
	if p.Elapsed > 0 {
		rate = float64(p.Done) / p.Elapsed.Seconds()
	}
	count := fmt.Sprintf("%d", p.Done)
	if p.Total > 0 {
		count = fmt.Sprintf("%d/%d", p.Done, p.Total)
	}
	if frac < 0 {
		return fmt.Sprintf("%s %s  %.0f req/s  %s", label, count, rate, p.Elapsed.Truncate(time.Second))
	}
	frac = min(max(frac, 0), 1)
	filled := int(frac * width)
	return fmt.Sprintf("%s [%s%s] %3.0f%%  %s  %.0f req/s  %s", label,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), frac*100,
		count, rate, p.Elapsed.Truncate(time.Second))
}

// ShowProgress redraws the progress bar of source on w every interval until
// ctx ends, then draws it a last time and ends the line. Use it only on a
// terminal: it rewrites its line with carriage returns.
func ShowProgress(ctx context.Context, w io.Writer, label string, interval time.Duration, source func() Progress) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(w, "\r%s\x1b[K\n", ProgressLine(label, source()))
			return
		case <-t.C:
			fmt.Fprintf(w, "\r%s\x1b[K", ProgressLine(label, source()))
		}
	}
}
