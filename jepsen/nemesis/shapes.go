package nemesis

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
)

// Grudge maps each member to the members whose packets it drops.
type Grudge = map[string][]string

// Components returns a grudge that cuts the members into the given groups:
// each member drops packets from every member outside its group. Members in
// no group are cut from everyone.
func Components(nodes []string, groups ...[]string) Grudge {
	groupOf := map[string]int{}
	for i, g := range groups {
		for _, n := range g {
			groupOf[n] = i
		}
	}
	g := Grudge{}
	for _, a := range nodes {
		ga, okA := groupOf[a]
		for _, b := range nodes {
			if a == b {
				continue
			}
			if gb, okB := groupOf[b]; !okA || !okB || ga != gb {
				g[a] = append(g[a], b)
			}
		}
	}
	return g
}

// Halves shuffles the members and cuts them into a minority (the first
// n/2) and a majority.
func Halves(nodes []string, rng *rand.Rand) (Grudge, [][]string) {
	s := shuffled(nodes, rng)
	groups := [][]string{s[:len(s)/2], s[len(s)/2:]}
	return Components(nodes, groups...), groups
}

// Isolate cuts one member off from all others.
func Isolate(nodes []string, lone string) (Grudge, [][]string) {
	var rest []string
	for _, n := range nodes {
		if n != lone {
			rest = append(rest, n)
		}
	}
	groups := [][]string{{lone}, rest}
	return Components(nodes, groups...), groups
}

// MajoritiesRing arranges the shuffled members in a ring in which each
// member sees its k nearest neighbours on each side, with 2k+1 the smallest
// odd number that is a majority. Every member then sees a majority, and no
// two members see the same set. It needs at least four members (with three,
// a majority ring would have to be asymmetric; DROP rules cut both ways).
func MajoritiesRing(nodes []string, rng *rand.Rand) (Grudge, error) {
	n := len(nodes)
	if n < 4 {
		return nil, fmt.Errorf("a majorities ring needs at least 4 members, have %d", n)
	}
	majority := n/2 + 1
	k := majority / 2 // 2k+1 >= majority
	if 2*k+1 >= n {
		return nil, fmt.Errorf("a majorities ring of %d members would see everyone", n)
	}
	ring := shuffled(nodes, rng)
	g := Grudge{}
	for i, a := range ring {
		for j, b := range ring {
			d := (j - i + n) % n
			if d > k && d < n-k {
				g[a] = append(g[a], b)
			}
		}
	}
	return g, nil
}

// Bridge cuts the shuffled members into two halves joined by one member
// that sees both: each half plus the bridge is a majority.
func Bridge(nodes []string, rng *rand.Rand) (Grudge, string, error) {
	if len(nodes) < 3 {
		return nil, "", fmt.Errorf("a bridge needs at least 3 members, have %d", len(nodes))
	}
	s := shuffled(nodes, rng)
	bridge := s[0]
	rest := s[1:]
	a, b := rest[:len(rest)/2], rest[len(rest)/2:]
	g := Grudge{}
	for _, x := range a {
		g[x] = append([]string(nil), b...)
	}
	for _, x := range b {
		g[x] = append([]string(nil), a...)
	}
	return g, bridge, nil
}

// Visible returns, for each member, the sorted members it can talk to
// (itself included) under g, counting a cut in either direction as a cut.
func Visible(nodes []string, g Grudge) map[string][]string {
	cut := map[[2]string]bool{}
	for a, bs := range g {
		for _, b := range bs {
			cut[[2]string{a, b}] = true
			cut[[2]string{b, a}] = true
		}
	}
	out := map[string][]string{}
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b || !cut[[2]string{a, b}] {
				out[a] = append(out[a], b)
			}
		}
		sort.Strings(out[a])
	}
	return out
}

// Describe renders a grudge as "n1 sees [n1 n2 n3]; ...".
func Describe(nodes []string, g Grudge) string {
	vis := Visible(nodes, g)
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s sees %v", n, vis[n]))
	}
	return strings.Join(parts, "; ")
}

func shuffled(nodes []string, rng *rand.Rand) []string {
	s := append([]string(nil), nodes...)
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s
}
