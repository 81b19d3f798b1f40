package failover

import "time"

// Tilt is Sentinel's TILT detector as a value: the server calls Tick from its
// periodic loop and keeps the returned value. A gap between two ticks that is
// negative (the clock went back) or larger than Trigger means this process
// was stalled or its clock jumped, so what it observed around the gap cannot
// be trusted; TILT then lasts Period from the latest trigger. Pass readings
// of time.Now that keep the monotonic clock: a stopped or starved process
// still shows the gap, and wall-clock steps then do not cause false triggers.
//
// The zero value is ready to use with Sentinel's defaults.
type Tilt struct {
	// Trigger is the largest tick gap that is still normal; 0 means
	// DefaultTiltTrigger (2 s).
	Trigger time.Duration
	// Period is how long TILT lasts after the latest trigger; 0 means
	// DefaultTiltPeriod (30 s).
	Period time.Duration
	// LastTick is the previous Tick; zero before the first one.
	LastTick time.Time
	// EnteredAt is the latest trigger, which is also the moment this node
	// resumed after the pause; zero if TILT never triggered. It changes on
	// every new trigger, which is how a caller notices "+tilt".
	EnteredAt time.Time
}

func (t Tilt) trigger() time.Duration {
	if t.Trigger > 0 {
		return t.Trigger
	}
	return DefaultTiltTrigger
}

func (t Tilt) period() time.Duration {
	if t.Period > 0 {
		return t.Period
	}
	return DefaultTiltPeriod
}

// Tick records a timer tick at now and returns the updated detector. The
// first tick only records the time, as Sentinel starts its reference at
// startup. idle is how much longer than its usual period the caller chose
// to wait for this tick (zero for a loop that keeps one period): it is
// taken off the gap, so that a loop that looks less often while nothing is
// in motion does not take its own sleep for a stall.
func (t Tilt) Tick(now time.Time, idle time.Duration) Tilt {
	if !t.LastTick.IsZero() {
		if gap := now.Sub(t.LastTick); gap < 0 || gap-max(idle, 0) > t.trigger() {
			t.EnteredAt = now
		}
	}
	t.LastTick = now
	return t
}

// Active reports whether TILT holds at now: less than Period has passed since
// the latest trigger (Sentinel leaves TILT once exactly tilt-period elapsed).
// A now before EnteredAt counts as active, since the clock evidently moved
// backwards.
func (t Tilt) Active(now time.Time) bool {
	if t.EnteredAt.IsZero() {
		return false
	}
	return now.Sub(t.EnteredAt) < t.period()
}

// Until is when TILT ends if no new trigger comes; zero if it never
// triggered.
func (t Tilt) Until() time.Time {
	if t.EnteredAt.IsZero() {
		return time.Time{}
	}
	return t.EnteredAt.Add(t.period())
}
