package main

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestExitCodeForStatus(t *testing.T) {
	want := map[codes.Code]int{
		codes.OK:                 exitOK,
		codes.NotFound:           exitNotFound,
		codes.InvalidArgument:    exitInvalid,
		codes.AlreadyExists:      exitInvalid,
		codes.Unavailable:        exitFailure,
		codes.DeadlineExceeded:   exitFailure,
		codes.FailedPrecondition: exitFailure,
		codes.Internal:           exitFailure,
		codes.Unknown:            exitFailure,
		codes.Canceled:           exitFailure,
	}
	for c, code := range want {
		if got := exitCodeForStatus(c); got != code {
			t.Errorf("exitCodeForStatus(%v) = %d, want %d", c, got, code)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"cobra's own error is a usage error", errors.New(`unknown command "x"`), exitUsage},
		{"usage", usageErrorf("bad"), exitUsage},
		{"not found", fromCall(status.Error(codes.NotFound, `unknown master "x"`)), exitNotFound},
		{"invalid", fromCall(status.Error(codes.InvalidArgument, "quorum must be 1 or greater")), exitInvalid},
		{"exists", fromCall(status.Error(codes.AlreadyExists, "Duplicate master name")), exitInvalid},
		{"unavailable", fromCall(status.Error(codes.Unavailable, "no leader")), exitFailure},
		{"plain error from a command", fromCall(errors.New("write: broken pipe")), exitFailure},
		{"wrapped", fmt.Errorf("context: %w", fromCall(status.Error(codes.NotFound, "x"))), exitNotFound},
		{"fromCall keeps a chosen code", fromCall(usageErrorf("bad")), exitUsage},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
	if got, want := fromCall(status.Error(codes.NotFound, `unknown master "x"`)).Error(), `unknown master "x"`; got != want {
		t.Errorf("fromCall message = %q, want %q", got, want)
	}
	if fromCall(nil) != nil {
		t.Error("fromCall(nil) is not nil")
	}
}

func TestOneLine(t *testing.T) {
	in := "unknown command \"stauts\" for \"coordinatorctl\"\n\nDid you mean this?\n\tstatus\n"
	if got, want := oneLine(in), `unknown command "stauts" for "coordinatorctl" Did you mean this? status`; got != want {
		t.Errorf("oneLine = %q, want %q", got, want)
	}
}

func TestGRPCMessage(t *testing.T) {
	dial := status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`)
	if got, want := grpcMessage(dial), "dial tcp 127.0.0.1:1: connect: connection refused"; got != want {
		t.Errorf("grpcMessage(dial error) = %q, want %q", got, want)
	}
	if got, want := grpcMessage(status.Error(codes.NotFound, `unknown master "x"`)), `unknown master "x"`; got != want {
		t.Errorf("grpcMessage = %q, want %q", got, want)
	}
	if got, want := grpcMessage(status.Error(codes.Unavailable, "")), "unavailable"; got != want {
		t.Errorf("grpcMessage(empty) = %q, want %q", got, want)
	}
	if got, want := grpcMessage(errors.New("plain")), "plain"; got != want {
		t.Errorf("grpcMessage(plain) = %q, want %q", got, want)
	}
}
