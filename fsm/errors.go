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

// Error is a command the state machine rejected. It is deterministic: every
// node rejects the same command with the same error.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}
