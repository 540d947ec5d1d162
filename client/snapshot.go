package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"google.golang.org/grpc"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Errors of a snapshot stream that does not check out. Read and Close return
// them wrapped, with the details.
var (
	// ErrSnapshotCorrupt: the bytes received do not match the SHA-256 or the
	// size the member sent.
	ErrSnapshotCorrupt = errors.New("client: snapshot is corrupt")
	// ErrSnapshotTruncated: the stream ended, or broke, before its last
	// message (the one that carries the SHA-256).
	ErrSnapshotTruncated = errors.New("client: snapshot stream ended early")
)

// SnapshotReader reads a member's state database as Maintenance.Snapshot
// streams it. Read returns the database bytes, then io.EOF only once every
// byte has arrived and their SHA-256 matches the one the member sent last;
// otherwise Read fails with an error that wraps ErrSnapshotCorrupt,
// ErrSnapshotTruncated, or the stream's own error. A caller must therefore
// discard what it read unless Read ended with io.EOF. A SnapshotReader is not
// safe for concurrent use.
type SnapshotReader interface {
	// Read reads the next bytes of the database; see SnapshotReader.
	Read(p []byte) (int, error)

	// Close ends the stream and releases it. It returns the error that made
	// Read fail, when the snapshot did not check out, and nil otherwise,
	// including when the caller stops reading early. Read after Close
	// returns an error, or io.EOF if the snapshot was read to its end.
	Close() error

	// Size is the size of the database in bytes, as the member announced it
	// in its first message.
	Size() int64

	// SHA256 is the SHA-256 of the database, as the member sent it and Read
	// checked it; nil until Read has returned io.EOF.
	SHA256() []byte

	// Header describes the member that serves the snapshot and the revision
	// it was at when the snapshot began.
	Header() *ResponseHeader
}

// Compile-time check that snapshotReader implements SnapshotReader and
// io.ReadCloser.
var (
	_ SnapshotReader = (*snapshotReader)(nil)
	_ io.ReadCloser  = SnapshotReader(nil)
)

// errSnapshotClosed is what Read returns after Close.
var errSnapshotClosed = errors.New("client: snapshot reader is closed")

// Snapshot streams the state database of the member at endpoint. See
// Maintenance.Snapshot.
func (c *Client) Snapshot(ctx context.Context, endpoint string) (SnapshotReader, error) {
	e, err := c.endpoint(endpoint)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	var r *snapshotReader
	err = c.try(sctx, e, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		stream, err := kvv1.NewMaintenanceServiceClient(cc).Snapshot(ctx, &kvv1.SnapshotRequest{})
		if err != nil {
			return err
		}
		// The first message carries the size, or the member's refusal.
		first, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s sent no data", ErrSnapshotTruncated, endpoint)
		}
		if err != nil {
			return err
		}
		r = &snapshotReader{
			endpoint: endpoint,
			stream:   stream,
			cancel:   cancel,
			header:   first.GetHeader(),
			size:     int64(first.GetTotalBytes()),
			sum:      sha256.New(),
		}
		r.accept(first)
		return nil
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return r, nil
}

// snapshotReader is the SnapshotReader of one Snapshot stream.
type snapshotReader struct {
	endpoint string
	stream   grpc.ServerStreamingClient[kvv1.SnapshotResponse]
	cancel   context.CancelFunc
	header   *kvv1.ResponseHeader
	size     int64

	sum      hash.Hash // of the bytes received so far
	received int64
	buf      []byte // received, not yet read
	last     bool   // the message with the SHA-256 was accepted
	checksum []byte // the member's SHA-256, once it matched
	err      error  // what Read returns once buf is empty; sticky
}

func (r *snapshotReader) Size() int64             { return r.size }
func (r *snapshotReader) Header() *ResponseHeader { return r.header }

func (r *snapshotReader) SHA256() []byte {
	if r.err != io.EOF {
		return nil
	}
	return bytes.Clone(r.checksum)
}

func (r *snapshotReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.last {
			r.err = io.EOF
			r.cancel()
			return 0, io.EOF
		}
		msg, err := r.stream.Recv()
		if err != nil {
			r.fail(ErrSnapshotTruncated, fmt.Errorf("the stream ended after %d of %d bytes without its checksum: %w",
				r.received, r.size, err))
			continue
		}
		r.accept(msg)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// accept takes one message of the stream: its bytes go to buf, and the last
// message's SHA-256 is checked against everything received.
func (r *snapshotReader) accept(msg *kvv1.SnapshotResponse) {
	blob := msg.GetBlob()
	r.received += int64(len(blob))
	r.sum.Write(blob)
	if r.received > r.size {
		r.fail(ErrSnapshotCorrupt, fmt.Errorf("received %d bytes, more than the %d announced", r.received, r.size))
		return
	}
	r.buf = blob
	want := msg.GetSha256()
	if len(want) == 0 {
		return
	}
	r.last = true
	switch got := r.sum.Sum(nil); {
	case r.received != r.size:
		r.fail(ErrSnapshotCorrupt, fmt.Errorf("the stream ended after %d of the %d bytes announced", r.received, r.size))
	case !bytes.Equal(got, want):
		r.fail(ErrSnapshotCorrupt, fmt.Errorf("the SHA-256 of the %d bytes received is %x, the member sent %x", r.received, got, want))
	default:
		r.checksum = bytes.Clone(want)
	}
}

// fail ends the stream with err, wrapping the sentinel kind; bytes not yet
// read are dropped, since they did not check out.
func (r *snapshotReader) fail(kind, err error) {
	r.buf = nil
	r.err = fmt.Errorf("%w (from %s): %w", kind, r.endpoint, err)
	r.cancel()
}

func (r *snapshotReader) Close() error {
	r.cancel()
	r.buf = nil
	switch {
	case r.err == nil:
		r.err = errSnapshotClosed
		return nil
	case r.err == io.EOF, r.err == errSnapshotClosed:
		return nil
	default:
		return r.err
	}
}
