package fsm

import "fmt"

// Kind classifies a rejected command so front ends can map it to their own
// error codes in one place.
type Kind int

const (
	// Invalid means the command's arguments are malformed or out of range.
	Invalid Kind = iota + 1
	// NotFound means the command names a master or node that does not exist.
	NotFound
	// AlreadyExists means the command would create a duplicate.
	AlreadyExists
	// FailedPrecondition means the command is valid but the state forbids it
	// now (for example a stale expected epoch).
	FailedPrecondition
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not found"
	case AlreadyExists:
		return "already exists"
	case FailedPrecondition:
		return "failed precondition"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Reason names a refusal that a front end must tell apart from others of
// the same Kind (Sentinel answers -INPROG and -NOGOODSLAVE, not a generic
// error). It travels in gRPC status details, never in message text.
type Reason string

const (
	// ReasonFailoverInProgress: a failover of that master is already running.
	ReasonFailoverInProgress Reason = "FAILOVER_IN_PROGRESS"
	// ReasonNoGoodReplica: no replica passes the promotion rules.
	ReasonNoGoodReplica Reason = "NO_GOOD_REPLICA"
	// ReasonUnknownMaster: the command names a master that is not monitored.
	ReasonUnknownMaster Reason = "UNKNOWN_MASTER"
	// ReasonMaintenance: the master is in maintenance, and a manual
	// failover of it must be forced.
	ReasonMaintenance Reason = "MAINTENANCE"
)

// Error is a command the state machine (or the leader's decision before
// committing one) rejected. It is deterministic: every node rejects the
// same command with the same error.
type Error struct {
	Kind   Kind
	Reason Reason // empty when the Kind says enough
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// UnknownMaster is the rejection of a command, or a read, naming a master
// that is not monitored.
func UnknownMaster(name string) *Error {
	return &Error{Kind: NotFound, Reason: ReasonUnknownMaster, Msg: fmt.Sprintf("unknown master %q", name)}
}

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
