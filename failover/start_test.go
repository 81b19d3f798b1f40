package failover

import (
	"math"
	"testing"
	"time"
)

func TestMayStartFailover(t *testing.T) {
	const ft = 3 * time.Minute
	tests := []struct {
		name string
		last time.Time
		ft   time.Duration
		now  time.Time
		ok   bool
		wait time.Duration
	}{
		{"never attempted", time.Time{}, ft, t0, true, 0},
		{"just attempted", t0, ft, t0, false, 6 * time.Minute},
		{"1ms short", t0, ft, at(6*time.Minute - ms), false, ms},
		{"exactly 2x failover-timeout", t0, ft, at(6 * time.Minute), true, 0},
		{"long after", t0, ft, at(time.Hour), true, 0},
		{"attempt stamped in the future", at(time.Minute), ft, t0, false, 7 * time.Minute},
		{"huge timeout does not wrap", t0, math.MaxInt64, at(time.Hour), false, math.MaxInt64 - time.Hour},
		{"zero timeout", t0, 0, t0, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, wait := MayStartFailover(tc.last, tc.ft, tc.now)
			if ok != tc.ok || wait != tc.wait {
				t.Fatalf("got (%v, %v), want (%v, %v)", ok, wait, tc.ok, tc.wait)
			}
		})
	}
}

func TestStepTimedOut(t *testing.T) {
	const ft = 3 * time.Minute
	if StepTimedOut(t0, ft, at(ft)) {
		t.Fatal("timed out at exactly failover-timeout")
	}
	if !StepTimedOut(t0, ft, at(ft+ms)) {
		t.Fatal("not timed out after failover-timeout")
	}
}
