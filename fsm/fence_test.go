package fsm

import (
	"strings"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func fenceSetCmd(addr string, n uint32, lag int64) *fsmv1.Command {
	return &fsmv1.Command{Kind: &fsmv1.Command_FenceSet{FenceSet: &fsmv1.FenceSet{Master: "m", Address: addr, MinReplicas: n, MaxLagS: lag, Reason: "r"}}}
}

func TestFenceSet(t *testing.T) {
	a := newApplier()
	if err := a.apply(t, monitor("m", "10.0.0.1:6379", 2)); err != nil {
		t.Fatal(err)
	}
	m, _, _ := a.f.Master("m")
	if !FenceOn(m.GetSettings()) || FenceLag(m.GetSettings()) != DefaultFenceLag || m.GetSettings().GetFenceLagS() != 2 {
		t.Fatalf("defaults: %v", m.GetSettings())
	}
	for _, tc := range []struct {
		name string
		cmd  *fsmv1.Command
		err  string
	}{
		{"another address", fenceSetCmd("10.0.0.2:6379", 1, 2), "is the master of"},
		{"lag 0", fenceSetCmd("10.0.0.1:6379", 1, 0), "want 1 to 60"},
		{"ok", fenceSetCmd("10.0.0.1:6379", 2, 2), ""},
	} {
		err := a.apply(t, tc.cmd)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Fatalf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
	m, _, _ = a.f.Master("m")
	if f := m.GetFence(); f.GetMinReplicas() != 2 || f.GetMaxLagS() != 2 || f.GetAddress() != "10.0.0.1:6379" {
		t.Fatalf("fence %v", f)
	}
	if e := m.GetEvents()[len(m.GetEvents())-1]; e.GetType() != EventFenceSet ||
		e.GetPayload() != "master m 10.0.0.1 6379 min-replicas-to-write 2 min-replicas-max-lag 2" {
		t.Fatalf("event %v", e)
	}
	if err := a.apply(t, set("m", "fence", "no")); err != nil {
		t.Fatal(err)
	}
	if err := a.apply(t, fenceSetCmd("10.0.0.1:6379", 1, 2)); err == nil || !strings.Contains(err.Error(), "fence no") {
		t.Fatalf("a fence with fence no: %v", err)
	}
	if err := a.apply(t, fenceSetCmd("10.0.0.1:6379", 0, 2)); err != nil {
		t.Fatal(err)
	}
}

func TestFenceWaitStarted(t *testing.T) {
	a := newApplier()
	for _, c := range []*fsmv1.Command{monitor("m", "10.0.0.1:6379", 2),
		{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: &fsmv1.UpdateReplicas{Master: "m", Replicas: []*fsmv1.Replica{{Address: "10.0.0.2:6379"}}}}},
	} {
		if err := a.apply(t, c); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(until int64) *fsmv1.Command {
		return &fsmv1.Command{ProposedAtUnixNanos: t0.UnixNano(), Kind: &fsmv1.Command_FenceWaitStarted{FenceWaitStarted: &fsmv1.FenceWaitStarted{
			Master: "m", UntilUnixNanos: until, Reason: "old master unreachable"}}}
	}
	if err := a.apply(t, wait(t0.UnixNano()+4e9)); err == nil {
		t.Fatal("a fence wait without a failover was accepted")
	}
	if err := a.apply(t, &fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: &fsmv1.BeginFailover{
		Master: "m", Reason: ReasonODown, Candidate: "10.0.0.2:6379"}}}); err != nil {
		t.Fatal(err)
	}
	if err := a.apply(t, wait(t0.UnixNano())); err == nil {
		t.Fatal("a wait ending now was accepted")
	}
	if err := a.apply(t, wait(t0.UnixNano()+4e9)); err != nil {
		t.Fatal(err)
	}
	if err := a.apply(t, wait(t0.UnixNano()+5e9)); err == nil {
		t.Fatal("a second wait was accepted")
	}
	m, _, _ := a.f.Master("m")
	if w := m.GetFailover().GetFenceWait(); w.GetUntilUnixNanos() != t0.UnixNano()+4e9 {
		t.Fatalf("wait %v", w)
	}
	if e := m.GetEvents()[len(m.GetEvents())-1]; e.GetType() != EventFenceWait || e.GetPayload() != "master m 10.0.0.1 6379 #wait-ms 4000 old master unreachable" {
		t.Fatalf("event %v", e)
	}
	if err := a.apply(t, &fsmv1.Command{Kind: &fsmv1.Command_Promoted{Promoted: &fsmv1.Promoted{Master: "m", Address: "10.0.0.2:6379"}}}); err != nil {
		t.Fatal(err)
	}
	m, _, _ = a.f.Master("m")
	if f := m.GetFence(); f.GetAddress() != "10.0.0.2:6379" || f.GetMinReplicas() != 0 {
		t.Fatalf("fence after promotion %v", f)
	}
}
