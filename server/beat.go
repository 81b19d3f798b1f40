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
// the work these do. Beats of one period tick at the same instants, also
// after one changed its period (setPeriod). A time.Ticker cannot be
// started at a chosen instant, and starting one when a first timer fires
// puts its phase off by that goroutine's scheduling delay; beat arms a
// timer for each tick at an exact instant instead.
type beat struct {
	*time.Timer
	w      *probe.Watcher
	period time.Duration
}

// newBeat starts a beat of period (a divisor or a multiple of
// probe.MaxGrid keeps every tick on, or every MaxGrid on, the instants
// between the probe's bursts).
func newBeat(w *probe.Watcher, period time.Duration) *beat {
	next := w.BetweenBursts(time.Now(), period)
	return &beat{Timer: time.NewTimer(time.Until(next)), w: w, period: period}
}

// rearm schedules the tick after the one received at now; the ticks a
// stalled receiver missed are dropped, as a time.Ticker drops them.
func (b *beat) rearm(now time.Time) {
	b.Reset(time.Until(b.w.BetweenBursts(now.Add(time.Nanosecond), b.period)))
}

// setPeriod makes the beat tick every period from now on, the next tick at
// the first of its instants at or after now.
func (b *beat) setPeriod(period time.Duration, now time.Time) {
	if period == b.period {
		return
	}
	b.period = period
	b.Reset(time.Until(b.w.BetweenBursts(now, period)))
}
