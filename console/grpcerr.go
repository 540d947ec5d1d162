package console

import (
	"errors"

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
