package member

import (
	"testing"
	"time"
)

// The minimum lease TTL is one and a half times the longer of raft's
// heartbeat and election timeouts, rounded up to a whole second, so that a
// lease cannot expire during the election that follows a leader's failure.
func TestMinLeaseTTL(t *testing.T) {
	for _, tc := range []struct {
		name                string
		heartbeat, election time.Duration
		want                int64
	}{
		{name: "daemon defaults", heartbeat: time.Second, election: time.Second, want: 2},
		{name: "fast test timers", heartbeat: 500 * time.Millisecond, election: 500 * time.Millisecond, want: 1},
		{name: "shorter", heartbeat: 250 * time.Millisecond, election: 250 * time.Millisecond, want: 1},
		{name: "exact seconds", heartbeat: time.Second, election: 2 * time.Second, want: 3},
		{name: "heartbeat longer", heartbeat: 3 * time.Second, election: time.Second, want: 5},
		{name: "just over", heartbeat: 1334 * time.Millisecond, election: time.Second, want: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Member{cfg: Config{HeartbeatTimeout: tc.heartbeat, ElectionTimeout: tc.election}}
			if got := m.MinLeaseTTL(); got != tc.want {
				t.Fatalf("MinLeaseTTL with heartbeat %s, election %s = %d, want %d", tc.heartbeat, tc.election, got, tc.want)
			}
		})
	}
}
