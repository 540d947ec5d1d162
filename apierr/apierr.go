// Package apierr marks kvd's API errors whose outcome is certain.
//
// gRPC's Unavailable is ambiguous: a server answers it when it refused a
// request before doing anything, but the gRPC library also answers it when a
// connection broke after the request was sent, and then a write may or may not
// have been applied. kvd's server attaches an ErrorInfo detail to the errors it
// raises before a request reached the raft log, so a client can tell the two
// apart and retry only what is safe to retry.
package apierr

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Domain is the ErrorInfo domain of kvd's errors.
const Domain = "kvd.io"

// Reasons carried in ErrorInfo.Reason.
const (
	// ReasonNotApplied: the request was refused before it reached the log
	// (no leader, leadership moving, queue full). Retrying is safe.
	ReasonNotApplied = "NOT_APPLIED"
)

// NotApplied returns a status error with code c and message msg, marked as
// certainly not applied.
func NotApplied(c codes.Code, msg string) error {
	st := status.New(c, msg)
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Domain: Domain, Reason: ReasonNotApplied}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// IsNotApplied reports whether err is a kvd error marked as certainly not
// applied.
func IsNotApplied(err error) bool {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return false
	}
	for _, d := range se.GRPCStatus().Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain && info.GetReason() == ReasonNotApplied {
			return true
		}
	}
	return false
}

// MarkUnsent is a gRPC unary client interceptor that marks a call which
// failed before gRPC gave it a transport stream: nothing reached the server,
// so the call certainly was not applied and may be retried elsewhere, even
// when it is a write.
//
// It closes the gap between a caller seeing a READY connection and its call
// being picked onto it: a member that shuts down in between makes the call
// fail fast with Unavailable ("error while dialing"), which would otherwise
// look as ambiguous as a connection that broke mid-request. gRPC records the
// peer only for calls that got a stream, so an empty peer means the request
// was never written.
func MarkUnsent(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var p peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if err != nil && p.Addr == nil && status.Code(err) == codes.Unavailable && !IsNotApplied(err) {
		return NotApplied(codes.Unavailable, fmt.Sprintf("request not sent to %s: %s", cc.Target(), status.Convert(err).Message()))
	}
	return err
}

// ToStream returns err, a gRPC status error, as a stream result carries it
// (kv.v1.StreamError): its code, its message, and whether it is marked not
// applied.
func ToStream(err error) *kvv1.StreamError {
	st := status.Convert(err)
	return &kvv1.StreamError{Code: int32(st.Code()), Message: st.Message(), NotApplied: IsNotApplied(err)}
}

// FromStream is the inverse of ToStream: the status error that e carries. A
// zero code, which no error has, reads as Unknown.
func FromStream(e *kvv1.StreamError) error {
	code := codes.Code(e.GetCode())
	if code == codes.OK {
		code = codes.Unknown
	}
	if e.GetNotApplied() {
		return NotApplied(code, e.GetMessage())
	}
	return status.Error(code, e.GetMessage())
}
