package failover

import (
	"strings"
	"testing"
	"time"
)

func TestDecideFence(t *testing.T) {
	good := FenceReplica{Addr: "r", Online: true, Lag: 1}
	late := FenceReplica{Addr: "l", Online: true, Lag: 3}
	syncing := FenceReplica{Addr: "s", Online: false}
	for _, tc := range []struct {
		name   string
		in     FenceInput
		change bool
		count  uint32
	}{
		{"first decision counts every good replica", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, good}}, true, 2},
		{"unchanged", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, good}, Decided: true, MinReplicas: 2, MaxLagS: 2}, false, 2},
		{"a replica beyond fence-lag is counted out", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, late}, Decided: true, MinReplicas: 2, MaxLagS: 2}, true, 1},
		{"lag at fence-lag is still good, as Redis counts it", FenceInput{On: true, LagS: 3, Replicas: []FenceReplica{good, late}, Decided: true, MinReplicas: 2, MaxLagS: 3}, false, 2},
		{"a syncing replica does not count", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, syncing}}, true, 1},
		{"back again: raised", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, good}, Decided: true, MinReplicas: 1, MaxLagS: 2}, true, 2},
		{"no replica: no fence", FenceInput{On: true, LagS: 2, Decided: true, MinReplicas: 1, MaxLagS: 2}, true, 0},
		{"fence-lag changed", FenceInput{On: true, LagS: 5, Replicas: []FenceReplica{good}, Decided: true, MinReplicas: 1, MaxLagS: 2}, true, 1},
		{"unsteady master: not lowered", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, late}, Decided: true, MinReplicas: 2, MaxLagS: 2, Unsteady: true}, false, 2},
		{"unsteady master: still raised", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, good}, Decided: true, MinReplicas: 1, MaxLagS: 2, Unsteady: true}, true, 2},
		{"unsteady master, first decision: counted", FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{good, late}, Unsteady: true}, true, 1},
		{"fence no, never set: untouched", FenceInput{On: false, LagS: 2, Replicas: []FenceReplica{good}}, false, 0},
		{"fence no after a fence: back to 0", FenceInput{On: false, LagS: 2, Replicas: []FenceReplica{good}, Decided: true, MinReplicas: 1, MaxLagS: 2}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideFence(tc.in)
			if d.Change != tc.change || d.MinReplicas != tc.count {
				t.Fatalf("got change %v count %d (%s), want %v %d", d.Change, d.MinReplicas, d.Reason, tc.change, tc.count)
			}
		})
	}
}

func TestNextFenceRead(t *testing.T) {
	lag := func(l int64) FenceReplica { return FenceReplica{Addr: "r", Online: true, Lag: l} }
	syncing := FenceReplica{Addr: "s", Online: false, Lag: 9}
	for _, tc := range []struct {
		name     string
		lagS     int64
		replicas []FenceReplica
		want     time.Duration
	}{
		{"lags 0: nothing can be counted out for fence-lag; capped", 2, []FenceReplica{lag(0), lag(0)}, FenceReadMax},
		{"lag 1 of fence-lag 2: a second", 2, []FenceReplica{lag(0), lag(1)}, time.Second},
		{"lag at fence-lag: counted out within the next second", 2, []FenceReplica{lag(2), lag(0)}, FenceReadMin},
		{"fence-lag 1, lag 1", 1, []FenceReplica{lag(1), lag(1)}, FenceReadMin},
		{"fence-lag 1, lag 0", 1, []FenceReplica{lag(0)}, time.Second},
		{"a replica already counted out does not shorten it", 2, []FenceReplica{lag(0), lag(0), lag(5), syncing}, FenceReadMax},
		{"a large fence-lag is still capped", 10, []FenceReplica{lag(1)}, FenceReadMax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := FenceInput{On: true, LagS: tc.lagS, Replicas: tc.replicas}
			d := DecideFence(in)
			// As in force: the decision applied.
			in.Decided, in.MinReplicas, in.MaxLagS = true, d.MinReplicas, d.MaxLagS
			d = DecideFence(in)
			if d.Change {
				t.Fatalf("decision %+v still changes", d)
			}
			if got := NextFenceRead(in, d); got != tc.want {
				t.Fatalf("next read in %v, want %v", got, tc.want)
			}
		})
	}
	pending := DecideFence(FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{lag(0)}})
	if got := NextFenceRead(FenceInput{On: true, LagS: 2, Replicas: []FenceReplica{lag(0)}}, pending); got != FenceReadMin {
		t.Fatalf("a decision still to apply: next read in %v, want %v", got, FenceReadMin)
	}
	none := DecideFence(FenceInput{On: true, LagS: 2, Decided: true, MaxLagS: 2})
	if got := NextFenceRead(FenceInput{On: true, LagS: 2, Decided: true, MaxLagS: 2}, none); got != FenceReadMax {
		t.Fatalf("no replica, no fence: next read in %v, want %v", got, FenceReadMax)
	}
}

func TestDecideFenceWait(t *testing.T) {
	at := time.Unix(1000, 0)
	for _, tc := range []struct {
		name   string
		in     FenceWaitInput
		wait   bool
		proven bool
		until  time.Duration
		reason string
	}{
		{"partition: wait lag + slack from the detachment", FenceWaitInput{On: true, MinReplicas: 2, LagS: 2, Others: 1, DetachedAt: at}, true, true, 4250 * time.Millisecond, "unreachable"},
		{"refused: the process is gone", FenceWaitInput{On: true, MinReplicas: 2, LagS: 2, Others: 1, Reach: OldMasterRefused, DetachedAt: at}, false, true, 0, "refused"},
		{"demoted", FenceWaitInput{On: true, MinReplicas: 2, LagS: 2, Others: 1, Reach: OldMasterDemoted, DetachedAt: at}, false, true, 0, "demoted"},
		{"fence no", FenceWaitInput{On: false, MinReplicas: 2, LagS: 2, DetachedAt: at}, false, false, 0, "fence no"},
		{"no fence was set", FenceWaitInput{On: true, MinReplicas: 0, LagS: 2, DetachedAt: at}, false, false, 0, "no fence"},
		{"lowered fence: unproven, still waits", FenceWaitInput{On: true, MinReplicas: 1, LagS: 2, Others: 1, DetachedAt: at}, true, false, 4250 * time.Millisecond, "unproven"},
		{"longer lag", FenceWaitInput{On: true, MinReplicas: 3, LagS: 10, Others: 2, DetachedAt: at}, true, true, 12250 * time.Millisecond, "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideFenceWait(tc.in)
			if d.Wait != tc.wait || d.Proven != tc.proven || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("got %+v, want wait %v proven %v reason with %q", d, tc.wait, tc.proven, tc.reason)
			}
			if tc.wait && !d.Until.Equal(at.Add(tc.until)) {
				t.Fatalf("until %v, want %v", d.Until.Sub(at), tc.until)
			}
		})
	}
}

func TestIsFormerMaster(t *testing.T) {
	current := Probe{Role: RoleMaster, ReplID: "new", ReplID2: "old"}
	zero := "0000000000000000000000000000000000000000"
	for _, tc := range []struct {
		name string
		addr string
		inst Probe
		want bool
	}{
		{"the failover's old master at its address", "m:1", Probe{Role: RoleMaster, ReplID: "fresh"}, true},
		{"the old history at another address", "x:1", Probe{Role: RoleMaster, ReplID: "old"}, true},
		{"another master", "x:1", Probe{Role: RoleMaster, ReplID: "other"}, false},
		{"a replica", "m:1", Probe{Role: RoleReplica, ReplID: "old"}, false},
		{"no history", "x:1", Probe{Role: RoleMaster, ReplID: zero}, false},
	} {
		cur := current
		if tc.name == "no history" {
			cur.ReplID2 = zero
		}
		if got := IsFormerMaster(tc.addr, "m:1", tc.inst, cur); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
