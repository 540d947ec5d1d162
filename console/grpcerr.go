package console

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcMessage is an API error's message without the client's wrapping.
func grpcMessage(err error) string {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code().String() + ": " + se.GRPCStatus().Message()
	}
	return err.Error()
}

// isCode reports whether err is (or wraps) a gRPC status with the code
// code.
func isCode(err error, code codes.Code) bool {
	if err == nil {
		return false
	}
	var se interface{ GRPCStatus() *status.Status }
	return errors.As(err, &se) && se.GRPCStatus().Code() == code
}
