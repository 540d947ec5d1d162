package bench

import (
	"strings"
	"testing"
	"time"
)

func TestProgressLine(t *testing.T) {
	tests := []struct {
		name string
		p    Progress
		want []string
	}{
		{"by count", Progress{Done: 250, Total: 1000, Elapsed: 2 * time.Second}, []string{"put [=======", "25%", "250/1000", "125 req/s", "2s"}},
		{"by time", Progress{Done: 10, Limit: 10 * time.Second, Elapsed: 5 * time.Second}, []string{"50%", " 10 ", "2 req/s", "5s"}},
		{"unbounded", Progress{Done: 7}, []string{"put 7", "0 req/s"}},
		{"overshoot", Progress{Done: 12, Total: 10, Elapsed: time.Second}, []string{"100%", "12/10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ProgressLine("put", tt.p)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("ProgressLine = %q, lacks %q", got, w)
				}
			}
			if strings.ContainsAny(got, "\r\n") {
				t.Errorf("ProgressLine = %q, has a line end", got)
			}
		})
	}
}
