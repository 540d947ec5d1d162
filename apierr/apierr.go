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
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

