package fsm

import (
	"testing"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

func clientAddr(t *testing.T, f *FSM, name string) string {
	t.Helper()
	members, err := f.Members()
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	return members[name].GetClientAddr()
}

// Members is cached (a follower reads it for every write it forwards); the
// cache must follow every change of the bucket.
func TestMembersFollowsChanges(t *testing.T) {
	f, l := newFSM(t), newTestLog(t)
	l.applyOne(f, &fsmv1.MemberAttributes{Name: "m1", ClientAddr: "a:1"})
	if got := clientAddr(t, f, "m1"); got != "a:1" {
		t.Fatalf("m1 at %q, want a:1", got)
	}
	// A caller that changes its copy does not change the next answer.
	members, _ := f.Members()
	delete(members, "m1")

	l.applyOne(f, &fsmv1.MemberAttributes{Name: "m1", ClientAddr: "a:2"})
	if got := clientAddr(t, f, "m1"); got != "a:2" {
		t.Fatalf("after an update m1 at %q, want a:2", got)
	}
	l.applyOne(f, &fsmv1.LeaderStart{Term: 2, ClusterId: 9, Leader: &fsmv1.MemberAttributes{Name: "m2", ClientAddr: "b:1"}})
	if got := clientAddr(t, f, "m2"); got != "b:1" {
		t.Fatalf("after a leader start m2 at %q, want b:1", got)
	}

	// A restore replaces the members with the snapshot's.
	src, sl := newFSM(t), newTestLog(t)
	sl.applyOne(src, &fsmv1.MemberAttributes{Name: "m3", ClientAddr: "c:1"})
	mustRestore(t, f, snapshotBytes(t, src))
	if got := clientAddr(t, f, "m1"); got != "" {
		t.Errorf("after a restore m1 at %q, want gone", got)
	}
	if got := clientAddr(t, f, "m3"); got != "c:1" {
		t.Errorf("after a restore m3 at %q, want c:1", got)
	}
}
