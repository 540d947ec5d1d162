package client_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
)

// freezer is a TCP proxy that can stop forwarding without closing its
// connections: what a client sees of a member that is paused (SIGSTOP) or
// cut off, as opposed to one that died.
type freezer struct {
	ln     net.Listener
	target string
	gate   sync.RWMutex // held for writing while frozen
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *freezer) addr() string { return f.ln.Addr().String() }

func (f *freezer) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { f.pipe(up, c); done <- struct{}{} }()
	go func() { f.pipe(c, up); done <- struct{}{} }()
	<-done
}

// pipe copies src to dst, holding every chunk while frozen.
func (f *freezer) pipe(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.gate.RLock()
			_, werr := dst.Write(buf[:n])
			f.gate.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) freeze() { f.gate.Lock() }
func (f *freezer) thaw()   { f.gate.Unlock() }

// A member that stops answering without closing the stream (paused, or
// cut off) must not cost the client its leases: the keep-alive moves to
// another endpoint before the leases run out.
func TestKeepAliveMovesOffAStalledMember(t *testing.T) {
	t.Parallel()
	c, direct := clusterClient(t, 3)
	names := c.Names()
	f := newFreezer(t, c.Member(names[0]).Server.ClientAddr())
	eps := []string{f.addr()} // first: the stream starts there
	for _, name := range names[1:] {
		eps = append(eps, c.Member(name).Server.ClientAddr())
	}
	cli, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := testCtx(t, 60*time.Second)
	// 4 s, not the minimum: on a loaded machine the first renewal of a
	// minimum-TTL lease can miss its deadline before anything is frozen.
	g, err := direct.Grant(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Put(ctx, "kept", "v", client.WithLease(g.GetId())); err != nil {
		t.Fatal(err)
	}
	ch, err := cli.KeepAlive(ctx, g.GetId())
	if err != nil {
		t.Fatal(err)
	}
	renewals := func(n int, within time.Duration) {
		t.Helper()
		timeout := time.After(within)
		for i := 0; i < n; i++ {
			select {
			case _, ok := <-ch:
				if !ok {
					t.Fatalf("keep-alive channel closed after %d renewals: the lease was given up", i)
				}
			case <-timeout:
				t.Fatalf("%d renewals of %d within %s", i, n, within)
			}
		}
	}
	renewals(2, 10*time.Second)
	f.freeze()
	defer f.thaw()
	// Over two TTLs (a renewal every third of one): without the move, the
	// channel closes after one.
	renewals(8, 40*time.Second)
	get, err := direct.Get(ctx, "kept")
	if err != nil || len(get.GetKvs()) != 1 {
		t.Fatalf("the kept-alive lease's key: %v, %v", get, err)
	}
}
