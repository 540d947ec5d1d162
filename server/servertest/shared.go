package servertest

import (
	"fmt"
	"sync"
)

// Shared is an in-process cluster of N members that the examples of a test
// package share: started on first use, closed by the package's TestMain.
// Its zero value with N set is ready to use.
type Shared struct {
	N int

	once sync.Once
	c    *Cluster
}

// Endpoints returns the members' client addresses, starting the cluster
// first if need be. Examples have no *testing.T to fail, so it panics when
// the cluster cannot start.
func (s *Shared) Endpoints() []string {
	s.once.Do(func() {
		c, err := Start(s.N)
		if err != nil {
			panic(fmt.Sprintf("servertest: start the shared cluster: %v", err))
		}
		s.c = c
	})
	return s.c.Endpoints()
}

// Close stops the cluster if it was started.
func (s *Shared) Close() {
	if s.c != nil {
		s.c.Close()
	}
}
