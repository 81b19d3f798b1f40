package server

import (
	"maps"
	"testing"
	"time"

	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Every instance of a master is probed with the master's down-after and
// ping-period; a ping-period of 0 leaves the node's default (zero here).
func TestTargetsCarryTheMasterTiming(t *testing.T) {
	st := &fsmv1.State{Masters: map[string]*fsmv1.Master{
		"fast": {Name: "fast", Address: "10.0.0.1:6379", Settings: &fsmv1.MasterSettings{DownAfterMs: 1000, PingPeriodMs: 20},
			Replicas: []*fsmv1.Replica{{Address: "10.0.0.2:6379"}}},
		"auto": {Name: "auto", Address: "10.0.0.3:6379", Settings: &fsmv1.MasterSettings{DownAfterMs: 5000}},
	}}
	want := map[string]probe.Target{
		"10.0.0.1:6379": {Addr: "10.0.0.1:6379", DownAfter: time.Second, PingPeriod: 20 * time.Millisecond},
		"10.0.0.2:6379": {Addr: "10.0.0.2:6379", DownAfter: time.Second, PingPeriod: 20 * time.Millisecond},
		"10.0.0.3:6379": {Addr: "10.0.0.3:6379", DownAfter: 5 * time.Second},
	}
	got := targets(st, nil, false)
	if len(got) != len(want) {
		t.Fatalf("targets %+v", got)
	}
	for _, g := range got {
		if g != want[g.Addr] {
			t.Errorf("target %+v, want %+v", g, want[g.Addr])
		}
	}
}

// On the leader, and only there, the PINGs of a master whose fence it
// reads carry the INFO it needs; its replicas' PINGs, and a master with
// fence no and nothing set, do not.
func TestLeaderTargetsCarryTheFenceRead(t *testing.T) {
	st := &fsmv1.State{Masters: map[string]*fsmv1.Master{
		"fenced": {Name: "fenced", Address: "10.0.0.1:6379", Replicas: []*fsmv1.Replica{{Address: "10.0.0.2:6379"}}},
		"open":   {Name: "open", Address: "10.0.0.3:6379", Settings: &fsmv1.MasterSettings{FenceOff: true}},
		"lowering": {Name: "lowering", Address: "10.0.0.4:6379", Settings: &fsmv1.MasterSettings{FenceOff: true},
			Fence: &fsmv1.FenceState{Address: "10.0.0.4:6379", MinReplicas: 1}},
	}}
	for _, leading := range []bool{false, true} {
		carried := map[string]bool{}
		for _, g := range targets(st, nil, leading) {
			if g.ReplicationWithPing {
				carried[g.Addr] = true
			}
		}
		want := map[string]bool{}
		if leading {
			want = map[string]bool{"10.0.0.1:6379": true, "10.0.0.4:6379": true}
		}
		if !maps.Equal(carried, want) {
			t.Errorf("leading %v: PINGs carrying INFO to %v, want %v", leading, carried, want)
		}
	}
}

func TestIdlePeriod(t *testing.T) {
	for _, tc := range []struct {
		name      string
		moving    bool
		downAfter time.Duration
		want      time.Duration
	}{
		{"in motion", true, 30 * time.Second, loopPeriod},
		{"quiet, Sentinel's default down-after", false, 30 * time.Second, idleLoopPeriod},
		{"quiet, down-after 3 s: less TILT's trigger", false, 3 * time.Second, idleLoopPeriod},
		{"quiet, down-after 2.5 s", false, 2500 * time.Millisecond, 500 * time.Millisecond},
		{"quiet, off the grid: rounded down", false, 2350 * time.Millisecond, 300 * time.Millisecond},
		{"quiet, down-after 2.1 s", false, 2100 * time.Millisecond, loopPeriod},
		{"quiet, down-after 2 s: never below the loop's period", false, 2 * time.Second, loopPeriod},
		{"quiet, down-after 1 s", false, time.Second, loopPeriod},
		{"quiet, a short down-after", false, 150 * time.Millisecond, loopPeriod},
		{"no masters", false, 0, idleLoopPeriod},
	} {
		if got := idlePeriod(tc.moving, tc.downAfter); got != tc.want {
			t.Errorf("%s: idlePeriod = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The leader waits idlePeriod's beat unless its next deadline would be
// looked at sooner by the beat of loopPeriod.
func TestLeaderPeriod(t *testing.T) {
	w, err := probe.NewWatcher(probe.WatcherConfig{ClientName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Just past a tick of the 1 s beat: its next is a second on.
	now := w.BetweenBursts(time.Now(), time.Second).Add(time.Nanosecond)
	next := now.Add(time.Second - time.Nanosecond)
	for _, tc := range []struct {
		name string
		idle time.Duration
		due  time.Time
		want time.Duration
	}{
		{"no deadline", time.Second, time.Time{}, time.Second},
		{"due now", time.Second, now, loopPeriod},
		{"due at the fast beat's tick before the idle one", time.Second, next.Add(-loopPeriod), loopPeriod},
		{"due just after it: the idle tick is the fast beat's first after it", time.Second, next.Add(-loopPeriod + time.Nanosecond), time.Second},
		{"due at the idle tick", time.Second, next, time.Second},
		{"due after the idle tick", time.Second, next.Add(3 * time.Second), time.Second},
		{"in motion already", loopPeriod, next, loopPeriod},
		{"a shorter idle period, due before its tick", 500 * time.Millisecond, now.Add(200 * time.Millisecond), loopPeriod},
	} {
		if got := leaderPeriod(tc.idle, tc.due, now, w.BetweenBursts); got != tc.want {
			t.Errorf("%s: leaderPeriod = %v, want %v", tc.name, got, tc.want)
		}
	}
}
