package observe_test

import "sync"

// fakeSource is a Source whose answers the test sets. When catchUpAfter is
// positive, AppliedIndex reports commit from its catchUpAfter-th call on, so
// a test can make the member catch up while /readyz waits, without sleeping.
type fakeSource struct {
	mu           sync.Mutex
	state        string
	term         uint64
	commit       uint64
	applied      uint64
	last         uint64
	dbSize       int64
	revision     int64
	leader       bool
	learner      bool
	catchUpAfter int
	appliedCalls int
}

func (f *fakeSource) RaftState() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeSource) RaftTerm() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term
}

func (f *fakeSource) CommitIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.commit
}

func (f *fakeSource) AppliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appliedCalls++
	if f.catchUpAfter > 0 && f.appliedCalls >= f.catchUpAfter {
		f.applied = f.commit
	}
	return f.applied
}

func (f *fakeSource) LastLogIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeSource) DBSizeBytes() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dbSize
}

func (f *fakeSource) Revision() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revision
}

func (f *fakeSource) KnownLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeSource) IsLearner() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.learner
}

// leaderSource is a caught-up leader.
func leaderSource() *fakeSource {
	return &fakeSource{state: "Leader", term: 3, commit: 42, applied: 42, last: 43,
		dbSize: 32768, revision: 17, leader: true}
}
