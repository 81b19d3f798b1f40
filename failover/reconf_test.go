package failover

import (
	"reflect"
	"testing"
	"time"
)

func TestNextReconfBatch(t *testing.T) {
	now := at(time.Hour)
	pending := func(addr string) ReconfState { return ReconfState{Addr: addr} }
	sent := func(addr string, ago time.Duration) ReconfState {
		return ReconfState{Addr: addr, Phase: ReconfSent, SentAt: now.Add(-ago)}
	}
	phase := func(addr string, p ReconfPhase) ReconfState { return ReconfState{Addr: addr, Phase: p} }
	tests := []struct {
		name     string
		states   []ReconfState
		parallel int
		want     ReconfPlan
	}{
		{"nothing to do", nil, 1, ReconfPlan{Finished: true}},
		{"first batch in address order", []ReconfState{pending("c"), pending("a"), pending("b")}, 2,
			ReconfPlan{Send: []string{"a", "b"}}},
		{"slot taken by sent", []ReconfState{sent("a", time.Second), pending("b")}, 1, ReconfPlan{}},
		{"slot taken by in-progress", []ReconfState{phase("a", ReconfInProgress), pending("b")}, 1, ReconfPlan{}},
		{"sent exactly 10s ago still in flight", []ReconfState{sent("a", 10*time.Second), pending("b")}, 1, ReconfPlan{}},
		{"sent over 10s ago times out and frees its slot", []ReconfState{sent("a", 10*time.Second+ms), pending("b")}, 1,
			ReconfPlan{TimedOut: []string{"a"}, Send: []string{"b"}}},
		{"done frees its slot", []ReconfState{phase("a", ReconfDone), pending("b"), pending("c")}, 1,
			ReconfPlan{Send: []string{"b"}}},
		{"disconnected is skipped", []ReconfState{{Addr: "a", Disconnected: true}, pending("b")}, 1,
			ReconfPlan{Send: []string{"b"}}},
		{"all done", []ReconfState{phase("a", ReconfDone), phase("b", ReconfDone)}, 1, ReconfPlan{Finished: true}},
		{"timeout finishes", []ReconfState{phase("a", ReconfDone), sent("b", time.Minute)}, 1,
			ReconfPlan{TimedOut: []string{"b"}, Finished: true}},
		{"sdown replica does not hold up the end", []ReconfState{phase("a", ReconfDone), {Addr: "b", SDown: true, Disconnected: true}}, 1,
			ReconfPlan{Finished: true}},
		{"disconnected but not sdown holds up the end", []ReconfState{phase("a", ReconfDone), {Addr: "b", Disconnected: true}}, 1,
			ReconfPlan{}},
		{"parallel-syncs below 1 acts as 1", []ReconfState{pending("a"), pending("b")}, 0, ReconfPlan{Send: []string{"a"}}},
		{"duplicate address counted once, most advanced", []ReconfState{pending("a"), sent("a", time.Second), pending("b")}, 1, ReconfPlan{}},
		{"duplicate pending address sent once", []ReconfState{pending("a"), pending("a")}, 5, ReconfPlan{Send: []string{"a"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NextReconfBatch(tc.states, tc.parallel, now)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	for p, want := range map[ReconfPhase]string{ReconfPending: "pending", ReconfSent: "sent", ReconfInProgress: "in-progress", ReconfDone: "done", 9: "unknown"} {
		if p.String() != want {
			t.Errorf("%d.String() = %q", int(p), p.String())
		}
	}
}
