package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes. Scripts branch on them, so they never change meaning.
const (
	exitOK       = 0
	exitFailure  = 1 // anything else, including no reachable node or no quorum
	exitUsage    = 2 // bad flags or arguments, caught before any call
	exitNotFound = 3 // the master or node named does not exist
	exitInvalid  = 4 // the server rejected a value, or the thing already exists
	exitAborted  = 5 // a failover ended without a promotion (its outcome is printed)
	exitDenied   = 6 // the node refused the caller: no token, a bad one, or too weak a role
)

// exitError carries the exit code chosen for a failure. Everything a
// command's RunE returns is one; an error of any other type can only come
// from cobra's own parsing, which is why it counts as a usage error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// exitCodeForStatus is the single place where gRPC status codes become exit
// codes.
func exitCodeForStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return exitOK
	case codes.NotFound:
		return exitNotFound
	case codes.InvalidArgument, codes.AlreadyExists:
		return exitInvalid
	case codes.Unauthenticated, codes.PermissionDenied:
		return exitDenied
	}
	return exitFailure
}

// fromCall gives an error from a call to the cluster its exit code, and
// keeps only the readable part of a gRPC status for the message.
func fromCall(err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitCodeForStatus(status.Code(err)), err: errors.New(grpcMessage(err))}
}

// exitCode decides the process's exit code for what Execute returned.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitUsage
}

// oneLine squeezes a message onto one line: the contract is exactly one
// line on stderr, and cobra's suggestions or a server's message may hold
// newlines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// grpcMessage is the readable part of a gRPC error: the server's own
// message, without grpc-go's "rpc error: code = ... desc =" wrapping, and
// for a failed dial just the dial error.
func grpcMessage(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := st.Message()
	if _, after, found := strings.Cut(msg, "Error while dialing: "); found {
		msg = strings.TrimRight(after, `"`)
	}
	if msg == "" {
		msg = strings.ToLower(st.Code().String())
	}
	return msg
}
