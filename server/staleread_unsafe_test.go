//go:build kvd_unsafe

package server_test

import "testing"

// TestResumedLeaderStaleReadControl shows that staleReadAfterStall can
// catch the bug it guards against: with raft's VerifyLeader confirming reads,
// as kvd did before issue 21, the resumed leader answers the overwritten
// value. It needs a kvd_unsafe build (make test runs it).
func TestResumedLeaderStaleReadControl(t *testing.T) {
	t.Parallel()
	resp, err := staleReadAfterStall(t, true)
	if err != nil {
		t.Fatalf("the control's read failed (%v); it should have been served stale", err)
	}
	if got := string(resp.GetKvs()[0].GetValue()); got != "old" {
		t.Fatalf("the control's read answered k=%q; with VerifyLeader it should have been the stale \"old\"", got)
	}
}
