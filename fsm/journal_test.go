package fsm

import (
	"strings"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func cmdOf(k any) *fsmv1.Command {
	c := &fsmv1.Command{}
	switch v := k.(type) {
	case *fsmv1.ReportVote:
		c.Kind = &fsmv1.Command_ReportVote{ReportVote: v}
	case *fsmv1.UpdateReplicas:
		c.Kind = &fsmv1.Command_UpdateReplicas{UpdateReplicas: v}
	case *fsmv1.SetObjectiveDown:
		c.Kind = &fsmv1.Command_SetObjectiveDown{SetObjectiveDown: v}
	case *fsmv1.BeginFailover:
		c.Kind = &fsmv1.Command_BeginFailover{BeginFailover: v}
	case *fsmv1.AbortFailover:
		c.Kind = &fsmv1.Command_AbortFailover{AbortFailover: v}
	case *fsmv1.Promoted:
		c.Kind = &fsmv1.Command_Promoted{Promoted: v}
	case *fsmv1.ReplicaReconfigured:
		c.Kind = &fsmv1.Command_ReplicaReconfigured{ReplicaReconfigured: v}
	case *fsmv1.FinishFailover:
		c.Kind = &fsmv1.Command_FinishFailover{FinishFailover: v}
	case *fsmv1.RecordRepair:
		c.Kind = &fsmv1.Command_RecordRepair{RecordRepair: v}
	case *fsmv1.HandoverPaused:
		c.Kind = &fsmv1.Command_HandoverPaused{HandoverPaused: v}
	case *fsmv1.ResetMaster:
		c.Kind = &fsmv1.Command_ResetMaster{ResetMaster: v}
	case *fsmv1.HookProgress:
		c.Kind = &fsmv1.Command_HookProgress{HookProgress: v}
	case *fsmv1.FormatProbe:
		c.Kind = &fsmv1.Command_FormatProbe{FormatProbe: v}
	default:
		panic("cmdOf: unknown kind")
	}
	return c
}

const (
	mAddr  = "127.0.0.1:6379"
	r1Addr = "127.0.0.1:6380"
	r2Addr = "127.0.0.1:6381"
)

func seeded(t *testing.T) *applier {
	t.Helper()
	a := newApplier()
	must(t, a, monitor("mymaster", mAddr, 2))
	must(t, a, cmdOf(&fsmv1.UpdateReplicas{Master: "mymaster", Replicas: []*fsmv1.Replica{
		{Address: r2Addr, Role: "slave", Priority: 100, Offset: 10},
		{Address: r1Addr, Role: "slave", Priority: 100, Offset: 20},
	}, MasterOffset: 30}))
	return a
}

func must(t testing.TB, a *applier, c *fsmv1.Command) {
	t.Helper()
	if err := a.apply(t, c); err != nil {
		t.Fatalf("%v: %v", c, err)
	}
}

func eventLines(m *fsmv1.Master) []string {
	var out []string
	for _, e := range m.Events {
		out = append(out, e.Type+" "+e.Payload)
	}
	return out
}

func TestFailoverJournalHappyPath(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(&fsmv1.ReportVote{Master: "mymaster", NodeId: "n1", Address: mAddr, Down: true}))
	must(t, a, cmdOf(&fsmv1.ReportVote{Master: "mymaster", NodeId: "n1", Address: mAddr, Down: true})) // re-assertion
	must(t, a, cmdOf(&fsmv1.ReportVote{Master: "mymaster", NodeId: "n2", Address: mAddr, Down: true}))
	must(t, a, cmdOf(&fsmv1.SetObjectiveDown{Master: "mymaster", Down: true, Votes: 2}))
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown", Candidate: r1Addr}))
	// A second begin while one runs is refused.
	if err := a.apply(t, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r2Addr})); kindOf(err) != FailedPrecondition || reasonOf(err) != ReasonFailoverInProgress ||
		err.Error() != `Failover already in progress for "mymaster"` {
		t.Fatalf("second begin: %v", err)
	}
	// A promotion decided on a stale epoch never commits.
	if err := a.apply(t, cmdOf(&fsmv1.Promoted{Master: "mymaster", ExpectedEpoch: 7, Address: r1Addr})); kindOf(err) != FailedPrecondition {
		t.Fatalf("stale promote: %v", err)
	}
	must(t, a, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}))
	m, _, _ := a.f.Master("mymaster")
	if m.Epoch != 1 || m.Address != r1Addr || m.Odown || len(m.Votes) != 0 {
		t.Fatalf("after promotion: epoch %d address %s odown %v votes %v", m.Epoch, m.Address, m.Odown, m.Votes)
	}
	if len(m.Replicas) != 2 || m.Replicas[0].Address != mAddr || m.Replicas[1].Address != r2Addr {
		t.Fatalf("replicas after promotion: %v", m.Replicas)
	}
	if got := m.Failover.Reconf; len(got) != 1 || got[0].Address != r2Addr {
		t.Fatalf("reconf list %v", got)
	}
	// After promotion there is no way back.
	if err := a.apply(t, cmdOf(&fsmv1.AbortFailover{Master: "mymaster", ExpectedEpoch: 1, Event: "-failover-abort-slave-timeout"})); kindOf(err) != FailedPrecondition {
		t.Fatalf("abort after promotion: %v", err)
	}
	// Votes about the old address are refused.
	if err := a.apply(t, cmdOf(&fsmv1.ReportVote{Master: "mymaster", NodeId: "n3", Address: mAddr, Down: true})); kindOf(err) != FailedPrecondition {
		t.Fatalf("vote about old master: %v", err)
	}
	must(t, a, cmdOf(&fsmv1.ReplicaReconfigured{Master: "mymaster", ExpectedEpoch: 1, Address: r2Addr, Phase: fsmv1.ReconfPhase_RECONF_PHASE_SENT}))
	must(t, a, cmdOf(&fsmv1.ReplicaReconfigured{Master: "mymaster", ExpectedEpoch: 1, Address: r2Addr, Phase: fsmv1.ReconfPhase_RECONF_PHASE_SENT}))
	must(t, a, cmdOf(&fsmv1.ReplicaReconfigured{Master: "mymaster", ExpectedEpoch: 1, Address: r2Addr, Phase: fsmv1.ReconfPhase_RECONF_PHASE_DONE}))
	must(t, a, cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: 1}))
	must(t, a, cmdOf(&fsmv1.RecordRepair{Master: "mymaster", ExpectedEpoch: 1, Address: mAddr, Event: "+convert-to-slave"}))

	m, _, _ = a.f.Master("mymaster")
	if m.Failover != nil || m.LastFailoverAtUnixNanos == 0 {
		t.Fatalf("failover not closed: %v, last %d", m.Failover, m.LastFailoverAtUnixNanos)
	}
	want := []string{
		"+monitor master mymaster 127.0.0.1 6379 quorum 2",
		"+slave slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+slave slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379",
		"+sdown master mymaster 127.0.0.1 6379",
		"+sdown master mymaster 127.0.0.1 6379",
		"+odown master mymaster 127.0.0.1 6379 #quorum 2/2",
		"+try-failover master mymaster 127.0.0.1 6379",
		"+elected-leader master mymaster 127.0.0.1 6379",
		"+failover-state-select-slave master mymaster 127.0.0.1 6379",
		"+selected-slave slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+failover-state-send-slaveof-noone slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+failover-state-wait-promotion slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+promoted-slave slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+failover-state-reconf-slaves master mymaster 127.0.0.1 6379",
		"+new-epoch 1",
		"+switch-master mymaster 127.0.0.1 6379 127.0.0.1 6380",
		"+slave-reconf-sent slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6380",
		"+slave-reconf-done slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6380",
		"+failover-end master mymaster 127.0.0.1 6380",
		"+convert-to-slave slave 127.0.0.1:6379 127.0.0.1 6379 @ mymaster 127.0.0.1 6380",
	}
	got := eventLines(m)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m.Events[3].NodeId != "n1" || m.Events[4].NodeId != "n2" {
		t.Fatal("sdown events do not name their node")
	}
	if ne := m.Events[14]; ne.Type != "+new-epoch" || ne.Epoch != 1 {
		t.Fatalf("+new-epoch: %v", ne)
	}
	if sw := m.Events[15]; sw.Epoch != 1 {
		t.Fatalf("+switch-master carries epoch %d", sw.Epoch)
	}
	evs, missed := a.f.EventsSince(0)
	if missed || len(evs) != len(want) {
		t.Fatalf("live events: %d, missed %v", len(evs), missed)
	}
	if evs, missed := a.f.EventsSince(evs[len(evs)-2].Seq); missed || len(evs) != 1 {
		t.Fatalf("events since the one before last: %d, missed %v", len(evs), missed)
	}
}

func TestFailoverWithoutGoodReplicaAbortsAtOnce(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown"}))
	m, _, _ := a.f.Master("mymaster")
	if m.Failover != nil || m.LastFailoverAtUnixNanos == 0 || m.Epoch != 0 {
		t.Fatalf("failover %v last %d epoch %d", m.Failover, m.LastFailoverAtUnixNanos, m.Epoch)
	}
	if last := m.Events[len(m.Events)-1]; last.Type != "-failover-abort-no-good-slave" || last.Payload != "master mymaster 127.0.0.1 6379" {
		t.Fatalf("last event %v", last)
	}
}

func TestAbortBeforePromotion(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown", Candidate: r2Addr}))
	if err := a.apply(t, cmdOf(&fsmv1.AbortFailover{Master: "mymaster", Event: "bogus"})); kindOf(err) != Invalid {
		t.Fatalf("bogus abort event: %v", err)
	}
	must(t, a, cmdOf(&fsmv1.AbortFailover{Master: "mymaster", Event: "-failover-abort-slave-timeout", Reason: "no role change"}))
	m, _, _ := a.f.Master("mymaster")
	if m.Failover != nil || m.Address != mAddr || m.Epoch != 0 {
		t.Fatalf("abort changed the topology: %v", m)
	}
}

func TestCandidateMustBeAKnownReplica(t *testing.T) {
	a := seeded(t)
	if err := a.apply(t, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown", Candidate: "127.0.0.1:1"})); kindOf(err) != Invalid {
		t.Fatalf("unknown candidate: %v", err)
	}
	if err := a.apply(t, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "because", Candidate: r1Addr})); kindOf(err) != Invalid {
		t.Fatalf("bad reason: %v", err)
	}
}

func TestUpdateReplicasEvents(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(&fsmv1.UpdateReplicas{Master: "mymaster", Replicas: []*fsmv1.Replica{
		{Address: r1Addr, RunId: "aaa", Sdown: true},
		{Address: mAddr}, // the master itself is never listed as a replica
	}}))
	must(t, a, cmdOf(&fsmv1.UpdateReplicas{Master: "mymaster", Replicas: []*fsmv1.Replica{{Address: r1Addr, RunId: "bbb"}}}))
	m, _, _ := a.f.Master("mymaster")
	got := eventLines(m)[3:]
	want := []string{
		"+sdown slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+reboot slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"-sdown slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s", strings.Join(got, "\n"))
	}
	if len(m.Replicas) != 2 {
		t.Fatalf("a replica missing from an update must be kept: %v", m.Replicas)
	}
	must(t, a, cmdOf(&fsmv1.ResetMaster{Name: "mymaster"}))
	m, _, _ = a.f.Master("mymaster")
	if len(m.Replicas) != 0 || m.Events[len(m.Events)-1].Type != "+reset-master" {
		t.Fatalf("reset: %v", m)
	}
}

func TestEventHistoryIsBounded(t *testing.T) {
	a := seeded(t)
	for i := 0; i < MaxEvents; i++ {
		must(t, a, cmdOf(&fsmv1.ReportVote{Master: "mymaster", NodeId: "n1", Address: mAddr, Down: i%2 == 0}))
	}
	m, _, _ := a.f.Master("mymaster")
	if len(m.Events) != MaxEvents || m.Events[0].Seq == 1 {
		t.Fatalf("history %d events, first seq %d", len(m.Events), m.Events[0].Seq)
	}
}
