package client

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestSnapshotReturnsTheExactBytes(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		chunk int
	}{
		{"many chunks", 600_000, 64 * 1024},
		{"one message", 1000, 64 * 1024},
		{"exact chunks", 4096, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := randomBytes(tt.size)
			f := newFake("a", 1)
			f.snapshot = snapshotStream(data, tt.chunk)
			addr, _ := serve(t, f)
			c := newTestClient(t, deadAddr(t), addr)

			sr, err := c.Snapshot(testContext(t, 10*time.Second), addr)
			if err != nil {
				t.Fatal(err)
			}
			if sr.Size() != int64(len(data)) {
				t.Errorf("Size() = %d, want %d", sr.Size(), len(data))
			}
			if sr.Header().GetRevision() != 7 {
				t.Errorf("Header() = %v", sr.Header())
			}
			if sr.SHA256() != nil {
				t.Error("SHA256() is set before the end of the stream")
			}
			got, err := io.ReadAll(sr)
			if err != nil {
				t.Fatalf("ReadAll: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("read %d bytes, not the %d sent", len(got), len(data))
			}
			if want := sha256.Sum256(data); !bytes.Equal(sr.SHA256(), want[:]) {
				t.Errorf("SHA256() = %x, want %x", sr.SHA256(), want)
			}
			if err := sr.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestSnapshotDetectsBadStreams(t *testing.T) {
	data := randomBytes(300_000)
	tests := []struct {
		name   string
		tamper func([]*kvv1.SnapshotResponse) ([]*kvv1.SnapshotResponse, error)
		want   error
	}{
		{"checksum mismatch", func(m []*kvv1.SnapshotResponse) ([]*kvv1.SnapshotResponse, error) {
			m[len(m)-1].Sha256[0] ^= 1
			return m, nil
		}, ErrSnapshotCorrupt},
		{"flipped byte", func(m []*kvv1.SnapshotResponse) ([]*kvv1.SnapshotResponse, error) {
			m[1].Blob = bytes.Clone(m[1].Blob)
			m[1].Blob[10] ^= 0x80
			return m, nil
		}, ErrSnapshotCorrupt},
		{"missing middle chunk", func(m []*kvv1.SnapshotResponse) ([]*kvv1.SnapshotResponse, error) {
			return append(m[:1], m[2:]...), nil
		}, ErrSnapshotCorrupt},
		{"more bytes than announced", func(m []*kvv1.SnapshotResponse) ([]*kvv1.SnapshotResponse, error) {
			m[0].TotalBytes = 1000
			return m, nil
		}, ErrSnapshotCorrupt},
		{"stream ends early", func(m []*kvv1.SnapshotResponse) ([]*kvv1.SnapshotResponse, error) {
			return m[:len(m)-1], nil
		}, ErrSnapshotTruncated},
		{"stream breaks", func(m []*kvv1.SnapshotResponse) ([]*kvv1.SnapshotResponse, error) {
			return m[:2], status.Error(codes.Unavailable, "member is stopping")
		}, ErrSnapshotTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := snapshotStream(data, 64*1024)
			for i, m := range msgs {
				msgs[i] = proto.Clone(m).(*kvv1.SnapshotResponse)
			}
			f := newFake("a", 1)
			f.snapshot, f.snapshotErr = tt.tamper(msgs)
			addr, _ := serve(t, f)
			c := newTestClient(t, addr)

			sr, err := c.Snapshot(testContext(t, 10*time.Second), addr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.ReadAll(sr)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadAll error = %v, want %v", err, tt.want)
			}
			if sr.SHA256() != nil {
				t.Error("SHA256() is set for a bad stream")
			}
			if _, err := sr.Read(make([]byte, 10)); !errors.Is(err, tt.want) {
				t.Errorf("Read after the failure = %v, want %v again", err, tt.want)
			}
			if err := sr.Close(); !errors.Is(err, tt.want) {
				t.Errorf("Close = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSnapshotErrorsBeforeTheFirstByte(t *testing.T) {
	refusing := newFake("a", 1)
	refusing.hook = failWith(status.Error(codes.Unavailable, "member is stopping"))
	addrRefusing, _ := serve(t, refusing)
	empty := newFake("b", 2) // sends nothing at all
	addrEmpty, _ := serve(t, empty)
	healthy := newFake("c", 3)
	healthy.snapshot = snapshotStream([]byte("db"), 1024)
	addrHealthy, _ := serve(t, healthy)
	dead := deadAddr(t)
	c := newTestClient(t, addrRefusing, addrEmpty, dead, addrHealthy)
	ctx := testContext(t, 10*time.Second)

	if _, err := c.Snapshot(ctx, addrRefusing); status.Code(err) != codes.Unavailable {
		t.Errorf("refused snapshot: error %v, want Unavailable", err)
	}
	if _, err := c.Snapshot(ctx, addrEmpty); !errors.Is(err, ErrSnapshotTruncated) {
		t.Errorf("empty stream: error %v, want ErrSnapshotTruncated", err)
	}
	if _, err := c.Snapshot(ctx, dead); err == nil {
		t.Error("snapshot of a down endpoint succeeded")
	}
	if _, err := c.Snapshot(ctx, "127.0.0.1:1"); err == nil {
		t.Error("snapshot of an unknown endpoint succeeded")
	}
	if healthy.count("Snapshot") != 0 {
		t.Errorf("a failed snapshot moved to another endpoint: %d calls", healthy.count("Snapshot"))
	}
}

func TestSnapshotClosedEarly(t *testing.T) {
	f := newFake("a", 1)
	f.snapshot = snapshotStream(randomBytes(300_000), 64*1024)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)

	sr, err := c.Snapshot(testContext(t, 10*time.Second), addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(sr, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := sr.Close(); err != nil {
		t.Errorf("Close after a partial read = %v, want nil", err)
	}
	if _, err := sr.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Errorf("Read after Close = %v, want an error", err)
	}
}
