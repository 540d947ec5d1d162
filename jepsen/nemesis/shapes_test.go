package nemesis

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func members(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("n%d", i))
	}
	return out
}

func majority(n int) int { return n/2 + 1 }

func TestMajoritiesRing(t *testing.T) {
	for n := 4; n <= 9; n++ {
		for seed := int64(0); seed < 5; seed++ {
			t.Run(fmt.Sprintf("n=%d/seed=%d", n, seed), func(t *testing.T) {
				nodes := members(n)
				g, err := MajoritiesRing(nodes, rand.New(rand.NewSource(seed)))
				if err != nil {
					t.Fatal(err)
				}
				vis := Visible(nodes, g)
				seen := map[string]string{}
				for _, a := range nodes {
					v := vis[a]
					if len(v) < majority(n) {
						t.Errorf("%s sees %v, not a majority of %d", a, v, n)
					}
					if len(v) == n {
						t.Errorf("%s sees everyone", a)
					}
					key := strings.Join(v, ",")
					if other, dup := seen[key]; dup {
						t.Errorf("%s and %s see the same members %v", a, other, v)
					}
					seen[key] = a
				}
				// The rules cut symmetrically: a drops b iff b drops a.
				for a, bs := range g {
					for _, b := range bs {
						if !contains(g[b], a) {
							t.Errorf("%s drops %s but not the reverse", a, b)
						}
					}
				}
			})
		}
	}
	if _, err := MajoritiesRing(members(3), rand.New(rand.NewSource(1))); err == nil {
		t.Error("a ring of 3 was accepted")
	}
}

func TestBridge(t *testing.T) {
	for n := 3; n <= 9; n++ {
		nodes := members(n)
		g, bridge, err := Bridge(nodes, rand.New(rand.NewSource(int64(n))))
		if err != nil {
			t.Fatal(err)
		}
		vis := Visible(nodes, g)
		if len(vis[bridge]) != n {
			t.Errorf("n=%d: bridge %s sees %v, want everyone", n, bridge, vis[bridge])
		}
		for _, a := range nodes {
			if a == bridge {
				continue
			}
			if !contains(vis[a], bridge) {
				t.Errorf("n=%d: %s does not see the bridge", n, a)
			}
			if len(vis[a]) == n {
				t.Errorf("n=%d: %s sees everyone", n, a)
			}
			// Each side plus the bridge: the larger side is a majority.
			for _, b := range vis[a] {
				if b != a && b != bridge && !contains(vis[b], a) {
					t.Errorf("n=%d: asymmetric %s/%s", n, a, b)
				}
			}
		}
		sides := map[string]bool{}
		for _, a := range nodes {
			if a != bridge {
				sides[strings.Join(vis[a], ",")] = true
			}
		}
		if len(sides) != 2 {
			t.Errorf("n=%d: want two sides, got %v", n, sides)
		}
	}
}

func TestHalvesAndIsolate(t *testing.T) {
	for n := 2; n <= 7; n++ {
		nodes := members(n)
		g, groups := Halves(nodes, rand.New(rand.NewSource(int64(n))))
		if len(groups[0]) != n/2 || len(groups[1]) != n-n/2 {
			t.Errorf("n=%d: groups %v", n, groups)
		}
		vis := Visible(nodes, g)
		for _, grp := range groups {
			for _, a := range grp {
				if strings.Join(vis[a], ",") != strings.Join(sortedCopy(grp), ",") {
					t.Errorf("n=%d: %s sees %v, want its group %v", n, a, vis[a], grp)
				}
			}
		}
		g, _ = Isolate(nodes, "n1")
		vis = Visible(nodes, g)
		if len(vis["n1"]) != 1 {
			t.Errorf("n=%d: isolated n1 sees %v", n, vis["n1"])
		}
		for _, a := range nodes[1:] {
			if len(vis[a]) != n-1 {
				t.Errorf("n=%d: %s sees %v", n, a, vis[a])
			}
		}
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
