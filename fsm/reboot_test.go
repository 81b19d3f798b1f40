package fsm

import (
	"strings"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// TestMasterReboot: a new run id reported for the same master address is
// Sentinel's +reboot with the master's "%@"; the first run id, a repeat, an
// update without one and the promoted replica's own run id are not.
func TestMasterReboot(t *testing.T) {
	a := seeded(t)
	update := func(runID string) {
		t.Helper()
		must(t, a, cmdOf(&fsmv1.UpdateReplicas{Master: "mymaster", ExpectedEpoch: epochOf(a), MasterRunId: runID, MasterOffset: 5}))
	}
	update("run-1") // first seen: not a reboot
	update("run-1")
	update("") // no INFO of the master this time
	update("run-2")
	must(t, a, cmdOf(&fsmv1.UpdateReplicas{Master: "mymaster", Replicas: []*fsmv1.Replica{{Address: r1Addr, RunId: "run-r1", Role: "slave", Offset: 20}},
		MasterRunId: "run-2", MasterOffset: 5}))
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown", Candidate: r1Addr}))
	must(t, a, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}))
	m, _, _ := a.f.Master("mymaster")
	if m.MasterRunId != "run-r1" || m.MasterOffset != 20 {
		t.Fatalf("after promotion the master's run id and offset are %q %d, want the promoted replica's", m.MasterRunId, m.MasterOffset)
	}
	update("run-r1") // the promoted replica reporting as master: no reboot

	m, _, _ = a.f.Master("mymaster")
	var reboots []string
	for _, l := range eventLines(m) {
		if strings.HasPrefix(l, "+reboot") {
			reboots = append(reboots, l)
		}
	}
	if want := []string{"+reboot master mymaster 127.0.0.1 6379"}; strings.Join(reboots, "\n") != strings.Join(want, "\n") {
		t.Fatalf("reboot events %q, want %q", reboots, want)
	}
}

func epochOf(a *applier) uint64 {
	m, _, _ := a.f.Master("mymaster")
	return m.GetEpoch()
}

func emptyRestartBegin(candidate string) *fsmv1.BeginFailover {
	return &fsmv1.BeginFailover{Master: "mymaster", Reason: ReasonEmptyRestart, Candidate: candidate,
		EmptyRestart: &fsmv1.EmptyRestart{RunId: "new-run", MasterOffset: 14, ReplicaOffset: 20, ReplicaKeys: 1000}}
}

// TestEmptyRestartFailover: the new reason is accepted with its evidence,
// publishes +empty-restart before Sentinel's failover events, keeps the old
// master (alive, empty) in the list of instances to re-point, and is
// recorded as the outcome's reason.
func TestEmptyRestartFailover(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(emptyRestartBegin(r1Addr)))
	m, _, _ := a.f.Master("mymaster")
	if m.Failover.GetReason() != ReasonEmptyRestart || m.Failover.GetCandidate() != r1Addr || m.LastFailoverAtUnixNanos == 0 {
		t.Fatalf("journal %v", m.Failover)
	}
	got := eventLines(m)[3:]
	want := []string{
		"+empty-restart master mymaster 127.0.0.1 6379 #run_id new-run #offset 14/20 #keys 0/1000",
		"+try-failover master mymaster 127.0.0.1 6379",
		"+elected-leader master mymaster 127.0.0.1 6379",
		"+failover-state-select-slave master mymaster 127.0.0.1 6379",
		"+selected-slave slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+failover-state-send-slaveof-noone slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+failover-state-wait-promotion slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	must(t, a, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}))
	m, _, _ = a.f.Master("mymaster")
	var reconf []string
	for _, rc := range m.Failover.GetReconf() {
		reconf = append(reconf, rc.GetAddress())
	}
	if strings.Join(reconf, " ") != mAddr+" "+r2Addr {
		t.Fatalf("re-pointed after an empty restart: %v, want the old master and the other replica", reconf)
	}
	for _, addr := range []string{mAddr, r2Addr} {
		must(t, a, cmdOf(&fsmv1.ReplicaReconfigured{Master: "mymaster", ExpectedEpoch: 1, Address: addr, Phase: fsmv1.ReconfPhase_RECONF_PHASE_DONE}))
	}
	must(t, a, cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: 1}))
	m, _, _ = a.f.Master("mymaster")
	if o := m.GetLastFailover(); o.GetReason() != ReasonEmptyRestart || o.GetResult() != ResultPromoted || o.GetNewMaster() != r1Addr {
		t.Fatalf("outcome %v", o)
	}
}

// TestEmptyRestartValidation: the reason needs its evidence and a
// candidate, the evidence belongs to that reason only, and an empty restart
// is never coordinated. A refusal leaves the state as it was.
func TestEmptyRestartValidation(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*fsmv1.BeginFailover)
		error string
	}{
		{"no evidence", func(b *fsmv1.BeginFailover) { b.EmptyRestart = nil }, "needs its evidence"},
		{"no run id", func(b *fsmv1.BeginFailover) { b.EmptyRestart.RunId = "" }, "needs the master's new run id"},
		{"candidate without keys", func(b *fsmv1.BeginFailover) { b.EmptyRestart.ReplicaKeys = 0 }, "needs a candidate holding keys"},
		{"no candidate", func(b *fsmv1.BeginFailover) { b.Candidate = "" }, "needs a candidate"},
		{"evidence with odown", func(b *fsmv1.BeginFailover) { b.Reason = ReasonODown }, `evidence given for a failover with reason "odown"`},
		{"evidence with manual", func(b *fsmv1.BeginFailover) { b.Reason = ReasonManual }, `reason "manual"`},
		{"coordinated", func(b *fsmv1.BeginFailover) { b.Coordinated, b.HandoverTimeoutMs = true, 1000 }, "only a manual failover can be coordinated"},
		{"unknown reason", func(b *fsmv1.BeginFailover) { b.Reason = "reboot" }, "want odown, manual or empty-restart"},
		{"unknown candidate", func(b *fsmv1.BeginFailover) { b.Candidate = "127.0.0.1:1" }, "not a known replica"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := seeded(t)
			before := a.f.State()
			b := emptyRestartBegin(r1Addr)
			tc.edit(b)
			err := a.apply(t, cmdOf(b))
			if kindOf(err) != Invalid || !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("err = %v, want Invalid containing %q", err, tc.error)
			}
			after := a.f.State()
			after.AppliedIndex = before.AppliedIndex
			if !proto.Equal(before, after) {
				t.Fatal("a refused BeginFailover changed the state")
			}
		})
	}
}
