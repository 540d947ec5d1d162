package member

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

func TestBatchesWaitForEveryMemberToPublishTheFeature(t *testing.T) {
	cfg := raft.Configuration{Servers: []raft.Server{
		{ID: "new1", Suffrage: raft.Voter}, {ID: "new2", Suffrage: raft.Voter}, {ID: "other", Suffrage: raft.Nonvoter},
	}}
	withFeature := &fsmv1.MemberAttributes{Features: fsm.Features()}
	tests := []struct {
		name  string
		other *fsmv1.MemberAttributes
		want  bool
	}{
		{"every member has it", withFeature, true},
		{"a learner of an older version", &fsmv1.MemberAttributes{ClientAddr: "old:1"}, false},
		{"a member that has not published yet", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			members := map[string]*fsmv1.MemberAttributes{"new1": withFeature, "new2": withFeature}
			if tt.other != nil {
				members["other"] = tt.other
			}
			if got := allHaveFeature(cfg, members, fsm.FeatureBatchCommands); got != tt.want {
				t.Errorf("allHaveFeature = %v, want %v", got, tt.want)
			}
		})
	}
}
