package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Watcher follows changes to keys. *Client implements it.
type Watcher interface {
	// Watch follows the key, or the range its options select, and returns
	// the channel on which the changes arrive. See Client.Watch.
	Watch(ctx context.Context, key string, opts ...OpOption) WatchChan

	// RequestProgress asks for a progress notification on every watch
	// channel. See Client.RequestProgress.
	RequestProgress(ctx context.Context) error
}

// WatchChan carries a watcher's responses, in order. It is closed when the
// watch ends: its context ended, the client was closed, or the last response
// said why (Canceled set, Err not nil).
type WatchChan <-chan WatchResponse

// Event is one change of one key: Type, the key-value pair after the change
// in Kv (for a delete, the key with ModRevision set to the deleting
// revision), and the pair before it in PrevKv when WithPrevKV asked for it
// and the key existed.
type Event = kvv1.Event

// EventType is the kind of an event.
type EventType = kvv1.EventType

// The kinds of events.
const (
	// EventTypePut: the key was created or changed.
	EventTypePut = kvv1.EventType_EVENT_TYPE_PUT
	// EventTypeDelete: the key was deleted.
	EventTypeDelete = kvv1.EventType_EVENT_TYPE_DELETE
)

// ErrCompacted is wrapped by the error of a watch that ended because the
// revision it needed next has been compacted (WatchResponse.CompactRevision
// is set): read the keys anew, then watch from the revision of that read
// plus one. It is an OutOfRange status, as a read below the compacted
// revision fails with.
var ErrCompacted = status.Error(codes.OutOfRange, "required revision has been compacted")

// WatchResponse is one message of a watch channel: a whole revision's events
// (or several revisions'), a progress notification, the watcher's creation
// (only with WithCreatedNotify), or the watcher's end.
type WatchResponse struct {
	// Header describes the member that sent the response. For events and
	// progress notifications, Header.Revision is a revision through which
	// the watcher has been sent every event.
	Header *ResponseHeader
	// Events are the changes, in revision order, those of one revision in
	// key order. A revision's events are never split over two responses.
	// Read them, do not change them (nor Header): the watchers of one key
	// on one client receive the same events and header, decoded once.
	Events []*Event
	// CompactRevision is set when the watch ended because the revision it
	// needed next has been compacted; the keys can be read at this revision
	// or later.
	CompactRevision int64
	// Canceled is set on the last response of a watch that ended for a
	// reason other than its context: compacted, refused by the member, or
	// a failure it could not recover from. Err says why.
	Canceled bool
	// Created is set on the response that reports the watcher's creation,
	// delivered only with WithCreatedNotify.
	Created bool
	// CancelReason is the member's explanation of a cancellation.
	CancelReason string

	err error // why the watch ended, when the member did not say
}

// Err returns why the watch ended, or nil for a response that does not end
// it. A compacted watch's error wraps ErrCompacted; a watcher the member
// refused or ended is a FailedPrecondition with the member's reason; a watch
// that could not go on (the client was closed, the member does not serve
// watches) has that error.
func (wr *WatchResponse) Err() error {
	switch {
	case wr.err != nil:
		return wr.err
	case wr.CompactRevision != 0:
		return fmt.Errorf("client: watch: %w (compact revision %d)", ErrCompacted, wr.CompactRevision)
	case wr.Canceled && wr.CancelReason != "":
		return status.Error(codes.FailedPrecondition, "watch canceled: "+wr.CancelReason)
	case wr.Canceled:
		return status.Error(codes.FailedPrecondition, "watch canceled by the member")
	}
	return nil
}

// IsProgressNotify reports whether the response is a progress notification:
// no events, not a creation or an end, and a header revision through which
// the watcher has been sent every event. It answers RequestProgress, or
// WithProgressNotify when the watcher has been idle.
func (wr *WatchResponse) IsProgressNotify() bool {
	return len(wr.Events) == 0 && !wr.Canceled && !wr.Created && wr.CompactRevision == 0 && wr.Header.GetRevision() != 0
}

// Watch follows key, or the range its options select, and returns the
// channel on which its changes arrive. It returns once a member has created
// the watcher, so that a write made after Watch returns is seen (while no
// member can be reached it keeps trying, until ctx ends, and then returns a
// closed channel); or, without waiting, a closed channel when ctx has
// already ended, or a channel holding one response with Err set when the
// options are invalid or the client is closed. Options: WithRange, WithPrefix, WithFromKey, WithRev, WithPrevKV,
// WithProgressNotify, WithFilterPut, WithFilterDelete, WithFragment,
// WithCreatedNotify.
//
// Every event of the range from the start revision on (WithRev; without it,
// the changes after the watcher's creation) is delivered exactly once, in
// revision order, a revision's events together in one response, until the
// watch ends. That holds across failures: all the watchers of a client share
// one stream per endpoint, opened so that a member that has lost its leader
// ends it; when the stream fails (the member died, shut down, or lost its
// leader), each watcher is created anew on another endpoint, retried as a
// read, from the revision after the last revision it received whole, or
// after the highest progress notification it received, whichever is higher,
// or from its start revision when it received nothing. Members send every
// event of a watcher once and in order from the start revision they are
// given, so nothing is missed and nothing is repeated. If that revision has
// been compacted meanwhile, the last response has CompactRevision and
// Canceled set, and the channel closes.
//
// The channel is closed when ctx ends (the watcher is then cancelled on the
// member, and undelivered responses are dropped), when the client is closed,
// and after a response with Canceled set. Cancel ctx when the watch is no
// longer needed: a watcher with context.Background lives as long as the
// client. Responses wait in memory until they are read, so read the channel
// promptly.
func (c *Client) Watch(ctx context.Context, key string, opts ...OpOption) WatchChan {
	op := newOp(tWatch, key, "", opts)
	if err := op.check(); err != nil {
		return endedWatch(err)
	}
	if c.closed.Load() {
		return endedWatch(ErrClosed)
	}
	if ctx.Err() != nil {
		ch := make(chan WatchResponse)
		close(ch)
		return ch
	}
	w := newWatcher(c.watches, ctx, op)
	if err := c.watches.add(w); err != nil {
		return endedWatch(err)
	}
	go w.run()
	go c.watches.connect(w, "")
	select {
	case <-w.created:
	case <-ctx.Done():
	}
	return w.out
}

// RequestProgress asks for a progress notification on every watch channel
// of the client: each watcher that does not end first receives a response
// without events (IsProgressNotify) whose header revision is one through
// which it has been sent every event, after those events. A watcher that is
// moving to another endpoint gets its notification from there. It returns
// an error only when the client is closed or ctx has ended; with no watcher
// it does nothing.
func (c *Client) RequestProgress(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return c.watches.requestProgress()
}

// endedWatch returns a closed channel that holds one response, the end of a
// watch that never started, with err.
func endedWatch(err error) WatchChan {
	ch := make(chan WatchResponse, 1)
	ch <- WatchResponse{Header: &ResponseHeader{}, Canceled: true, err: err}
	close(ch)
	return ch
}
