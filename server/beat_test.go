package server

import (
	"testing"
	"time"
)

func TestNextBeat(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	for _, tc := range []struct {
		name   string
		period time.Duration
		now    time.Duration // after t0
		want   time.Duration // after t0
	}{
		{"on time", 100 * ms, 0, 100 * ms},
		{"a little late", 100 * ms, 30 * ms, 100 * ms},
		{"late by one period", 100 * ms, 100 * ms, 200 * ms},
		{"late by several", 100 * ms, 350 * ms, 400 * ms},
		{"early wake", 100 * ms, -5 * ms, 100 * ms},
		{"short period", 25 * ms, 60 * ms, 75 * ms},
	} {
		if got := nextBeat(t0, tc.period, t0.Add(tc.now)); !got.Equal(t0.Add(tc.want)) {
			t.Errorf("%s: nextBeat = t0%+v, want t0+%v", tc.name, got.Sub(t0), tc.want)
		}
	}
}
