package fsm

import (
	"maps"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Every way a journal closes is counted once, by the outcome it records.
func TestFailoverEndsCountEveryClosedJournal(t *testing.T) {
	a := seeded(t)
	run := func(cmds ...*fsmv1.Command) {
		t.Helper()
		for _, c := range cmds {
			must(t, a, c)
		}
	}
	epoch := func() uint64 { m, _, _ := a.f.Master("mymaster"); return m.GetEpoch() }
	// An automatic failover without an eligible replica aborts at once.
	run(cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown"}))
	// A coordinated handover that times out is rolled back.
	run(cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 5000}),
		cmdOf(&fsmv1.AbortFailover{Master: "mymaster", Event: EventHandoverTimeout, Reason: "replica never caught up"}))
	// A forced manual failover that finishes after a reconfiguration timeout.
	run(cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr}),
		cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}),
		cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: 1, TimedOut: true}))
	// An automatic failover that promotes.
	run(cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown", Candidate: r2Addr, ExpectedEpoch: epoch()}),
		cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r2Addr, ExpectedEpoch: epoch()}),
		cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: epoch() + 1}))
	// A rejected command counts nothing.
	if err := a.apply(t, cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: epoch()})); err == nil {
		t.Fatal("finishing a failover that is not in progress was accepted")
	}

	want := map[FailoverEnd]uint64{
		{Reason: "odown", Result: ResultAborted, Event: EventNoGoodReplica}:                       1,
		{Reason: "manual", Coordinated: true, Result: ResultAborted, Event: EventHandoverTimeout}: 1,
		{Reason: "manual", Result: ResultPromoted, Event: "+failover-end"}:                        1,
		{Reason: "odown", Result: ResultPromoted, Event: "+failover-end"}:                         1,
	}
	if got := a.f.FailoverEnds(); !maps.Equal(got, want) {
		t.Fatalf("FailoverEnds\n got %v\nwant %v", got, want)
	}

	// The counts are the node's, not the state's: a restore keeps them.
	copyState(t, a.f, a.f)
	if got := a.f.FailoverEnds(); !maps.Equal(got, want) {
		t.Fatalf("after a restore\n got %v\nwant %v", got, want)
	}
}

// A restarted node replays its log: the entries it held at start are not
// counted again.
func TestFailoverEndsSkipReplayedEntries(t *testing.T) {
	a := seeded(t)
	a.f.CountEndsAfter(a.index + 1)
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown"})) // a replayed entry
	if got := a.f.FailoverEnds(); len(got) != 0 {
		t.Fatalf("a replayed entry was counted: %v", got)
	}
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual"}))
	want := map[FailoverEnd]uint64{{Reason: "manual", Result: ResultAborted, Event: EventNoGoodReplica}: 1}
	if got := a.f.FailoverEnds(); !maps.Equal(got, want) {
		t.Fatalf("FailoverEnds\n got %v\nwant %v", got, want)
	}
}
