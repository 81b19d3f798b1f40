package server

import (
	"time"

	"github.com/raftinel/raftinel/probe"
)

// beat is a ticker for a node's periodic work whose ticks fall on the
// instants between the probe's bursts of contacts (probe.Watcher.
// BetweenBursts), so that the monitor's loop, the staleness watch and the
// peer probe wake the process together instead of each at a phase of its
// own: an idle Go process spends about 80 µs of CPU (scheduler, netpoll,
// another thread woken, mostly in the kernel) on each wake-up, more than
// the work these do. A time.Ticker cannot be started at a chosen instant,
// and starting one when a first timer fires puts its phase off by that
// goroutine's scheduling delay; beat arms a timer for each tick at an
// exact instant instead.
type beat struct {
	*time.Timer
	period time.Duration
	next   time.Time
}

// newBeat starts a beat of period (a divisor or a multiple of
// probe.MaxGrid keeps every tick on, or every MaxGrid on, the grid).
func newBeat(w *probe.Watcher, period time.Duration) *beat {
	next := w.BetweenBursts(time.Now())
	return &beat{Timer: time.NewTimer(time.Until(next)), period: period, next: next}
}

// rearm schedules the tick after the one just received, period later; the
// ticks a stalled receiver missed are dropped, as a time.Ticker drops them.
func (b *beat) rearm(now time.Time) {
	b.next = nextBeat(b.next, b.period, now)
	b.Reset(time.Until(b.next))
}

// nextBeat is the first instant after now, and after last, that lies a
// whole number of periods after last.
func nextBeat(last time.Time, period time.Duration, now time.Time) time.Time {
	if period <= 0 {
		return now
	}
	n := time.Duration(1)
	if behind := now.Sub(last); behind >= period {
		n = behind/period + 1
	}
	return last.Add(n * period)
}
