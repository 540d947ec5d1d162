//go:build kvd_unsafe

package server_test

import "testing"

// TestResumedLeaderStaleReadControl shows that staleReadAfterStall can
// catch the bug it guards against: with raft's VerifyLeader confirming reads,
// as kvd did before issue 21, the resumed leader answers the overwritten
// value. It needs a kvd_unsafe build (make test runs it).
func TestResumedLeaderStaleReadControl(t *testing.T) {
	// Not in parallel: the stall schedule needs m1's heartbeats to reach
	// its followers on time, and under the load of the parallel cluster
	// tests they did not, so m1 was deposed before the stall.
	resp, err := staleReadAfterStall(t, true)
	if err != nil {
		t.Fatalf("the control's read failed (%v); it should have been served stale", err)
	}
	if got := string(resp.GetKvs()[0].GetValue()); got != "old" {
		t.Fatalf("the control's read answered k=%q; with VerifyLeader it should have been the stale \"old\"", got)
	}
}

// TestResumedLeaderRenewsRevokedLeaseControl shows that renewAfterStall can
// catch what it guards against: with raft's VerifyLeader confirming
// leadership, the resumed leader renews the revoked lease.
func TestResumedLeaderRenewsRevokedLeaseControl(t *testing.T) {
	// Not in parallel: the stall schedule needs m1's heartbeats to reach
	// its followers on time, and under the load of the parallel cluster
	// tests they did not, so m1 was deposed before the stall.
	resp, err := renewAfterStall(t, true)
	if err != nil {
		t.Fatalf("the control's keep-alive failed (%v); it should have renewed the revoked lease", err)
	}
	if resp.GetTtl() <= 0 {
		t.Fatalf("the control's keep-alive answered ttl %d; with VerifyLeader it should have renewed the revoked lease", resp.GetTtl())
	}
}
