package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// isTerminalWriter reports whether w is a terminal, where a progress bar
// may be drawn. Buffers, files and pipes are not.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar draws a transfer's progress on one terminal line, redrawn at
// most every progressEvery. It counts the bytes written to it.
type progressBar struct {
	w     io.Writer
	total int64
	done  int64
	drawn time.Time
}

const (
	progressEvery = 100 * time.Millisecond
	progressWidth = 30
)

func (p *progressBar) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if time.Since(p.drawn) >= progressEvery {
		p.draw()
	}
	return len(b), nil
}

// finish draws the final state and ends the line.
func (p *progressBar) finish() {
	p.draw()
	fmt.Fprintln(p.w)
}

func (p *progressBar) draw() {
	p.drawn = time.Now()
	frac := 1.0
	if p.total > 0 {
		frac = min(float64(p.done)/float64(p.total), 1)
	}
	filled := int(frac * progressWidth)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", progressWidth-filled)
	if filled > 0 && filled < progressWidth {
		bar = bar[:filled-1] + ">" + bar[filled:]
	}
	fmt.Fprintf(p.w, "\r[%s] %3.0f%% %s / %s  ", bar, frac*100, humanBytes(p.done), humanBytes(p.total))
}
