package fsm

import (
	"math"
	"testing"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func TestBeginFailoverHandoverValidation(t *testing.T) {
	// seeded's master has the default failover-timeout, 180000 ms.
	cases := []struct {
		name  string
		begin *fsmv1.BeginFailover
		want  Kind // 0: accepted
		phase fsmv1.FailoverPhase
	}{
		{"coordinated manual", &fsmv1.BeginFailover{Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 5000}, 0, fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER},
		{"timeout equal to failover-timeout", &fsmv1.BeginFailover{Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 180000}, 0, fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER},
		{"forced manual", &fsmv1.BeginFailover{Reason: "manual", Candidate: r1Addr}, 0, fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING},
		{"coordinated odown", &fsmv1.BeginFailover{Reason: "odown", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 5000}, Invalid, 0},
		{"coordinated without timeout", &fsmv1.BeginFailover{Reason: "manual", Candidate: r1Addr, Coordinated: true}, Invalid, 0},
		{"negative timeout", &fsmv1.BeginFailover{Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: -1}, Invalid, 0},
		{"timeout beyond failover-timeout", &fsmv1.BeginFailover{Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 180001}, Invalid, 0},
		{"timeout without coordination", &fsmv1.BeginFailover{Reason: "manual", Candidate: r1Addr, HandoverTimeoutMs: 5000}, Invalid, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := seeded(t)
			tc.begin.Master = "mymaster"
			err := a.apply(t, cmdOf(tc.begin))
			if kindOf(err) != tc.want {
				t.Fatalf("got %v (kind %v), want kind %v", err, kindOf(err), tc.want)
			}
			m, _, _ := a.f.Master("mymaster")
			if tc.want != 0 {
				if m.Failover != nil || m.LastFailoverAtUnixNanos != 0 {
					t.Fatalf("a rejected begin changed the state: %v", m)
				}
				return
			}
			if m.Failover.GetPhase() != tc.phase || m.Failover.GetCoordinated() != tc.begin.Coordinated ||
				m.Failover.GetHandoverTimeoutMs() != tc.begin.HandoverTimeoutMs {
				t.Fatalf("journal %v", m.Failover)
			}
		})
	}
}

// Every way a journal closes leaves an outcome a caller can read later.
func TestFailoverOutcomes(t *testing.T) {
	coordinated := &fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 5000}
	cases := []struct {
		name  string
		steps []*fsmv1.Command
		want  *fsmv1.FailoverOutcome
	}{
		{
			name:  "no good replica",
			steps: []*fsmv1.Command{cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual"})},
			want: &fsmv1.FailoverOutcome{Reason: "manual", Result: ResultAborted, Event: EventNoGoodReplica,
				Detail: "no replica passed the selection rules", OldMaster: mAddr, NewMaster: mAddr},
		},
		{
			name: "handover timed out",
			steps: []*fsmv1.Command{cmdOf(coordinated), cmdOf(&fsmv1.AbortFailover{Master: "mymaster", Event: EventHandoverTimeout,
				Reason: "replica never caught up"})},
			want: &fsmv1.FailoverOutcome{Reason: "manual", Result: ResultAborted, Event: EventHandoverTimeout,
				Detail: "replica never caught up", OldMaster: mAddr, NewMaster: mAddr, Candidate: r1Addr, Coordinated: true},
		},
		{
			name: "handover promoted",
			steps: []*fsmv1.Command{cmdOf(coordinated), cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}),
				cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: 1})},
			want: &fsmv1.FailoverOutcome{Reason: "manual", Result: ResultPromoted, Event: "+failover-end", Epoch: 1,
				OldMaster: mAddr, NewMaster: r1Addr, Candidate: r1Addr, Coordinated: true, Handover: HandoverFailoverTo},
		},
		{
			name: "handover promoted after a write pause",
			steps: []*fsmv1.Command{cmdOf(coordinated), cmdOf(&fsmv1.HandoverPaused{Master: "mymaster", Offset: 10, UntilUnixNanos: 1 << 62}),
				cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}), cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: 1})},
			want: &fsmv1.FailoverOutcome{Reason: "manual", Result: ResultPromoted, Event: "+failover-end", Epoch: 1,
				OldMaster: mAddr, NewMaster: r1Addr, Candidate: r1Addr, Coordinated: true, Handover: HandoverWritePause},
		},
		{
			name: "handover rolled back after a write pause",
			steps: []*fsmv1.Command{cmdOf(coordinated), cmdOf(&fsmv1.HandoverPaused{Master: "mymaster", Offset: 10, UntilUnixNanos: 1 << 62}),
				cmdOf(&fsmv1.AbortFailover{Master: "mymaster", Event: EventHandoverTimeout, Reason: "replica never caught up"})},
			want: &fsmv1.FailoverOutcome{Reason: "manual", Result: ResultAborted, Event: EventHandoverTimeout,
				Detail: "replica never caught up", OldMaster: mAddr, NewMaster: mAddr, Candidate: r1Addr, Coordinated: true, Handover: HandoverWritePause},
		},
		{
			name: "reconfiguration timed out",
			steps: []*fsmv1.Command{cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "odown", Candidate: r2Addr}),
				cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r2Addr}),
				cmdOf(&fsmv1.FinishFailover{Master: "mymaster", ExpectedEpoch: 1, TimedOut: true})},
			want: &fsmv1.FailoverOutcome{Reason: "odown", Result: ResultPromoted, Event: "+failover-end-for-timeout",
				Detail: "not every replica was re-pointed within failover-timeout", Epoch: 1, OldMaster: mAddr, NewMaster: r2Addr, Candidate: r2Addr},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := seeded(t)
			for i, c := range tc.steps {
				c.ProposedAtUnixNanos = int64(1000 + i)
				must(t, a, c)
			}
			m, _, _ := a.f.Master("mymaster")
			got := m.GetLastFailover()
			tc.want.StartedAtUnixNanos, tc.want.FinishedAtUnixNanos = 1000, int64(1000+len(tc.steps)-1)
			if got.String() != tc.want.String() {
				t.Fatalf("outcome\n got %v\nwant %v", got, tc.want)
			}
			if m.Failover != nil {
				t.Fatalf("journal still open: %v", m.Failover)
			}
		})
	}
}

// After a manual promotion the old master, which is likely alive, is
// re-pointed with the other replicas; after an automatic one it is left to
// the repair rules.
func TestManualPromotionRepointsTheOldMaster(t *testing.T) {
	for _, reason := range []string{"manual", "odown"} {
		t.Run(reason, func(t *testing.T) {
			a := seeded(t)
			must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: reason, Candidate: r1Addr}))
			must(t, a, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}))
			m, _, _ := a.f.Master("mymaster")
			var reconf []string
			for _, rc := range m.Failover.Reconf {
				reconf = append(reconf, rc.Address)
			}
			old, _ := findReplica(m, mAddr)
			switch {
			case reason == "manual" && (len(reconf) != 2 || reconf[0] != mAddr || reconf[1] != r2Addr || old.GetSdown()):
				t.Fatalf("reconf %v, old master record %v", reconf, old)
			case reason == "odown" && (len(reconf) != 1 || reconf[0] != r2Addr || !old.GetSdown()):
				t.Fatalf("reconf %v, old master record %v", reconf, old)
			}
		})
	}
}

func TestHandoverPhaseAcceptsPromotionAndAbortOnly(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 1000}))
	if err := a.apply(t, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r2Addr})); kindOf(err) != FailedPrecondition {
		t.Fatalf("promoting another replica: %v", err)
	}
	if err := a.apply(t, cmdOf(&fsmv1.FinishFailover{Master: "mymaster"})); kindOf(err) != FailedPrecondition {
		t.Fatalf("finishing before promotion: %v", err)
	}
	if err := a.apply(t, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r2Addr})); kindOf(err) != FailedPrecondition {
		t.Fatalf("second begin: %v", err)
	}
	must(t, a, cmdOf(&fsmv1.ResetMaster{Name: "mymaster"}))
	if m, _, _ := a.f.Master("mymaster"); m.Failover != nil || m.LastFailover != nil {
		t.Fatalf("reset kept failover state: %v", m)
	}
}

// A coordinated handover records its write pause once; the record outlives
// the promotion (a new leader must still release it) and goes with the
// journal when the failover closes.
func TestHandoverPauseIsRecordedOnceAndKeptThroughPromotion(t *testing.T) {
	far := t0.Add(time.Hour).UnixNano()
	pause := func(offset, until int64) *fsmv1.Command {
		return cmdOf(&fsmv1.HandoverPaused{Master: "mymaster", Offset: offset, UntilUnixNanos: until})
	}
	a := seeded(t)
	if err := a.apply(t, pause(10, far)); kindOf(err) != FailedPrecondition {
		t.Fatalf("pause without a handover: %v", err)
	}
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr}))
	if err := a.apply(t, pause(10, far)); kindOf(err) != FailedPrecondition {
		t.Fatalf("pause during a forced failover: %v", err)
	}
	must(t, a, cmdOf(&fsmv1.AbortFailover{Master: "mymaster", Event: "-failover-abort-slave-timeout"}))

	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 5000}))
	// A pause with its offset pending must record the largest offset, which
	// a leader that does not know the flag never sees a replica reach.
	pending := cmdOf(&fsmv1.HandoverPaused{Master: "mymaster", Offset: 10, UntilUnixNanos: far, OffsetPending: true})
	for _, bad := range []*fsmv1.Command{pause(-1, far), pause(10, t0.UnixNano()), pending} {
		if err := a.apply(t, bad); kindOf(err) != Invalid {
			t.Fatalf("pause %v: %v", bad, err)
		}
	}
	must(t, a, pause(42, far))
	if err := a.apply(t, pause(43, far)); kindOf(err) != FailedPrecondition {
		t.Fatalf("second pause: %v", err)
	}
	must(t, a, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}))
	m, _, _ := a.f.Master("mymaster")
	if p := m.GetFailover().GetPause(); p.GetOffset() != 42 || p.GetUntilUnixNanos() != far {
		t.Fatalf("pause after promotion: %v", m.GetFailover())
	}
}

// The write pause committed before the pause itself records no offset yet.
func TestHandoverPauseWithOffsetPending(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr, Coordinated: true, HandoverTimeoutMs: 5000}))
	far := t0.Add(time.Hour).UnixNano()
	must(t, a, cmdOf(&fsmv1.HandoverPaused{Master: "mymaster", Offset: math.MaxInt64, UntilUnixNanos: far, OffsetPending: true}))
	m, _, _ := a.f.Master("mymaster")
	if p := m.GetFailover().GetPause(); !p.GetOffsetPending() || p.GetOffset() != math.MaxInt64 || p.GetUntilUnixNanos() != far {
		t.Fatalf("pause %v", p)
	}
}
