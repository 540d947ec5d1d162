package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestCommandLineErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"unknown nemesis", []string{"--nemesis", "clock"}, "unknown nemesis"},
		{"bad expectation", []string{"--expect", "maybe"}, "--expect"},
		{"check needs a directory", []string{"check"}, "usage"},
		{"check of a missing run", []string{"check", t.TempDir()}, "config.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errOut)
			if code != exitError || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut.String(), exitError, tt.want)
			}
		})
	}
}
