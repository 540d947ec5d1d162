package member

import (
	"testing"
	"time"
)

func TestParseCompaction(t *testing.T) {
	tests := []struct {
		mode, retention string
		ok              bool
		wantErr         bool
		want            compactionPolicy
	}{
		{"", "", false, false, compactionPolicy{}},
		{"periodic", "0", false, false, compactionPolicy{}},
		{"", "1", true, false, compactionPolicy{mode: CompactionPeriodic, retention: time.Hour, interval: 6 * time.Minute}},
		{"periodic", "72h", true, false, compactionPolicy{mode: CompactionPeriodic, retention: 72 * time.Hour, interval: 432 * time.Minute}},
		{"periodic", "5s", true, false, compactionPolicy{mode: CompactionPeriodic, retention: 5 * time.Second, interval: time.Second}},
		{"periodic", "0.5", true, false, compactionPolicy{mode: CompactionPeriodic, retention: 30 * time.Minute, interval: 3 * time.Minute}},
		{"revision", "1000", true, false, compactionPolicy{mode: CompactionRevision, keep: 1000, interval: time.Minute}},
		{"periodic", "soon", false, true, compactionPolicy{}},
		{"periodic", "-1h", false, true, compactionPolicy{}},
		{"revision", "1h", false, true, compactionPolicy{}},
		{"revision", "-5", false, true, compactionPolicy{}},
		{"hourly", "1", false, true, compactionPolicy{}},
	}
	for _, tt := range tests {
		got, ok, err := parseCompaction(tt.mode, tt.retention, time.Minute)
		if (err != nil) != tt.wantErr || ok != tt.ok || got != tt.want {
			t.Errorf("parseCompaction(%q, %q) = %+v, %v, %v; want %+v, %v, error %v", tt.mode, tt.retention, got, ok, err, tt.want, tt.ok, tt.wantErr)
		}
	}
}
