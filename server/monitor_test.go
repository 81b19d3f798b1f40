package server

import (
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
	got := targets(st, nil)
	if len(got) != len(want) {
		t.Fatalf("targets %+v", got)
	}
	for _, g := range got {
		if g != want[g.Addr] {
			t.Errorf("target %+v, want %+v", g, want[g.Addr])
		}
	}
}
