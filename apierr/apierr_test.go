package apierr

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStreamErrorsKeepCodeMessageAndMark(t *testing.T) {
	for _, err := range []error{
		NotApplied(codes.Unavailable, "no leader"),
		status.Error(codes.InvalidArgument, "empty key"),
		status.Error(codes.Unknown, "outcome unknown"),
	} {
		got := FromStream(ToStream(err))
		if status.Code(got) != status.Code(err) || status.Convert(got).Message() != status.Convert(err).Message() {
			t.Errorf("%v came back as %v", err, got)
		}
		if IsNotApplied(got) != IsNotApplied(err) {
			t.Errorf("%v: not-applied mark %v, want %v", err, IsNotApplied(got), IsNotApplied(err))
		}
	}
	// A plain Go error is Unknown, as gRPC would send it.
	if got := FromStream(ToStream(errors.New("boom"))); status.Code(got) != codes.Unknown {
		t.Errorf("plain error came back as %v", got)
	}
	if got := FromStream(nil); status.Code(got) != codes.Unknown {
		t.Errorf("an empty stream error reads as %v, want Unknown", got)
	}
}
