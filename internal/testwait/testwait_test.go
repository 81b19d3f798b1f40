package testwait_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
)

// recorder is a testing.TB whose Fatalf only records the message.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestForReturnsOnceTheCheckPasses(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	testwait.For(r, 10*time.Second, "the third call", func() error {
		calls++
		if calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if r.failed != "" || calls != 3 {
		t.Fatalf("failed %q after %d calls; want success after 3", r.failed, calls)
	}
}

func TestForReportsTheLastErrorOnTimeout(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	start := time.Now()
	testwait.For(r, 100*time.Millisecond, "nothing", func() error {
		calls++
		return fmt.Errorf("still wrong after %d calls", calls)
	})
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", elapsed)
	}
	want := fmt.Sprintf("waiting for nothing: not within 100ms: still wrong after %d calls", calls)
	if r.failed != want {
		t.Fatalf("failure %q, want %q", r.failed, want)
	}
}

func TestUntilOnTimeout(t *testing.T) {
	r := &recorder{TB: t}
	testwait.Until(r, 20*time.Millisecond, "never", func() bool { return false })
	if !strings.HasPrefix(r.failed, "waiting for never: not within 20ms") {
		t.Fatalf("failure %q", r.failed)
	}
	r.failed = ""
	testwait.Until(r, 20*time.Millisecond, "now", func() bool { return true })
	if r.failed != "" {
		t.Fatalf("failure %q for a condition that holds", r.failed)
	}
}

func TestStopEndsPollingAtOnce(t *testing.T) {
	errExited := errors.New("exited")
	calls := 0
	err := testwait.Poll(10*time.Second, func() error {
		calls++
		return testwait.Stop(fmt.Errorf("node: %w", errExited))
	})
	if calls != 1 || !errors.Is(err, errExited) || err.Error() != "node: exited" {
		t.Fatalf("Poll = %v after %d calls; want node: exited after 1", err, calls)
	}
}

func TestPollChecksOnceMoreAtTheDeadline(t *testing.T) {
	start := time.Now()
	err := testwait.Poll(30*time.Millisecond, func() error {
		if time.Since(start) >= 30*time.Millisecond {
			return nil
		}
		return errors.New("too early")
	})
	if err != nil {
		t.Fatalf("Poll = %v; the check passes at the deadline", err)
	}
}
