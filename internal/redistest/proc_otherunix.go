//go:build unix && !linux

package redistest

import (
	"syscall"
	"time"
)

// Only Linux can kill a child when its parent dies; elsewhere the test's
// cleanup is the only guard.
func setParentDeathSignal(*syscall.SysProcAttr) {}

// Without /proc there is no portable way to see the stopped state; SIGSTOP
// to a local process takes effect almost at once.
func waitStopped(int, time.Duration) error { return nil }
