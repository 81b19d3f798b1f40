// Package testwait is the tests' one way to wait for something that
// happens in the background: poll a check until it passes or a deadline
// passes, and on timeout fail with the check's last error, so the failure
// says what was still wrong rather than only that time ran out.
//
// Nothing here sleeps a fixed time and hopes. The pause between two checks
// starts at FirstInterval and doubles up to MaxInterval: a condition that
// holds soon is seen soon, and a check that is expensive (one that starts
// a process, say) is not run in a tight loop while a slow one is awaited.
//
// For and Until fail the test with tb.Fatal, so, like tb.Fatal, they must
// be called from the goroutine running the test. Poll only returns an
// error and may be called from anywhere.
//
// testwait imports nothing of the project's, so any package's tests can
// use it (internal/redistest included), and only tests may import it.
package testwait

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// The pause between two checks starts at FirstInterval and doubles up to
// MaxInterval.
const (
	FirstInterval = 5 * time.Millisecond
	MaxInterval   = 50 * time.Millisecond
)

// For polls check until it returns nil. When timeout passes first, it
// fails the test with what (the thing waited for, such as "a leader") and
// check's last error. A check that returns Stop(err) fails the test with
// err at once.
func For(tb testing.TB, timeout time.Duration, what string, check func() error) {
	tb.Helper()
	if err := Poll(timeout, check); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}

// Until is For with a condition that has no error to tell.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	For(tb, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("the condition still does not hold")
	})
}

// Poll is For without the test: it returns nil once check does, or, when
// timeout passes first, an error that wraps check's last one. A check that
// returns Stop(err) ends the polling at once, and Poll returns err.
// check runs at least once, and once more at or after the deadline.
func Poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	pause := FirstInterval
	for {
		err := check()
		if err == nil {
			return nil
		}
		var stop stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(min(pause, left))
		pause = min(2*pause, MaxInterval)
	}
}

// Stop wraps an error that no further check can cure (a process that has
// exited, say), for a check to return: polling ends at once with err.
func Stop(err error) error {
	if err == nil {
		err = errors.New("testwait.Stop(nil)")
	}
	return stopError{err}
}

type stopError struct{ err error }

func (s stopError) Error() string { return s.err.Error() }
func (s stopError) Unwrap() error { return s.err }
