package etcdapi

import (
	"fmt"
	"testing"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// TestMemberURLs: a port that serves TLS is an https:// URL; a member
// that has not published its client address has no client URL.
func TestMemberURLs(t *testing.T) {
	m := &kvv1.Member{Id: 7, Name: "n1", RaftAddr: "10.0.0.1:7380", ClientAddr: "10.0.0.1:7379"}
	cases := []struct {
		cfg    Config
		member *kvv1.Member
		want   string
	}{
		{Config{}, m, "[http://10.0.0.1:7380] [http://10.0.0.1:7379]"},
		{Config{ClientTLS: true, PeerTLS: true}, m, "[https://10.0.0.1:7380] [https://10.0.0.1:7379]"},
		{Config{ClientTLS: true}, m, "[http://10.0.0.1:7380] [https://10.0.0.1:7379]"},
		{Config{}, &kvv1.Member{Id: 8, Name: "n2", RaftAddr: "10.0.0.2:7380", IsLearner: true}, "[http://10.0.0.2:7380] []"},
	}
	for _, c := range cases {
		got := (&clusterServer{cfg: c.cfg}).member(c.member)
		if s := fmt.Sprint(got.PeerURLs, " ", got.ClientURLs); s != c.want || got.ID != c.member.GetId() || got.Name != c.member.GetName() || got.IsLearner != c.member.GetIsLearner() {
			t.Errorf("%+v with %+v: %v, want URLs %s", c.member, c.cfg, got, c.want)
		}
	}
}
