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

func TestOffsetsFinal(t *testing.T) {
	downAt := time.Unix(1000, 0)
	before, after := downAt.Add(-time.Millisecond), downAt.Add(time.Millisecond)
	up := func(infoAt time.Time) Candidate { return Candidate{Probe: Probe{LinkUp: true, InfoAt: infoAt}} }
	for _, tc := range []struct {
		name     string
		replicas []Candidate
		want     bool
	}{
		{"no replicas", nil, true},
		{"every replica read after the master went down", []Candidate{up(after), up(after)}, true},
		{"one replica read before it", []Candidate{up(after), up(before)}, false},
		{"read exactly at it is not after", []Candidate{up(downAt)}, false},
		{"never read", []Candidate{up(time.Time{})}, false},
		{"an SDOWN replica is not waited for", []Candidate{up(after), {SDown: true, Probe: Probe{LinkUp: true, InfoAt: before}}}, true},
		{"a disconnected replica is not waited for", []Candidate{up(after), {Probe: Probe{InfoAt: before}}}, true},
	} {
		if got := OffsetsFinal(downAt, tc.replicas); got != tc.want {
			t.Errorf("%s: OffsetsFinal = %v, want %v", tc.name, got, tc.want)
		}
	}
}
