package orchestrator

import (
	"errors"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// BeginManual refuses with a typed *fsm.Error, committing nothing, or
// commits BeginFailover with the chosen or named replica.
func TestBeginManual(t *testing.T) {
	cases := []struct {
		name     string
		setup    func(e *env)
		master   string // masterName unless set
		to       string
		handover time.Duration
		// wantKind 0: accepted, with candidate and phase.
		wantKind   fsm.Kind
		wantReason fsm.Reason
		candidate  string
		phase      fsmv1.FailoverPhase
	}{
		{name: "unknown master", master: "nope", wantKind: fsm.NotFound, wantReason: fsm.ReasonUnknownMaster},
		{
			name: "failover in progress",
			setup: func(e *env) {
				if _, _, err := e.leader.BeginManual(e.t.Context(), masterName, e.master(), "", 0); err != nil {
					e.t.Fatalf("first BeginManual: %v", err)
				}
			},
			wantKind: fsm.FailedPrecondition, wantReason: fsm.ReasonFailoverInProgress,
		},
		{
			name: "no good replica",
			setup: func(e *env) {
				for _, a := range []string{addrR1, addrR2, addrR3} {
					e.setInfo(a, func(in *probe.Info) { in.ReplicaPriority = 0 })
				}
				e.step()
			},
			wantKind: fsm.FailedPrecondition, wantReason: fsm.ReasonNoGoodReplica,
		},
		{
			name:     "no good replica: all disconnected",
			setup:    func(e *env) { e.kill(addrR1); e.kill(addrR2); e.kill(addrR3); e.kill(addrR4); e.tick(time.Second) },
			wantKind: fsm.FailedPrecondition, wantReason: fsm.ReasonNoGoodReplica,
		},
		{name: "named replica unknown", to: "10.9.9.9:6379", wantKind: fsm.Invalid},
		{name: "named replica is the master", to: addrM, wantKind: fsm.Invalid},
		{name: "named replica rejected by the rules", to: addrR4, wantKind: fsm.FailedPrecondition},
		{name: "catch-up time beyond failover-timeout", handover: 61 * time.Second, wantKind: fsm.Invalid},
		{
			name:     "coordinated with the master down",
			setup:    func(e *env) { e.kill(addrM); e.tick(time.Second); e.tick(6 * time.Second) },
			handover: handoverTimeout, wantKind: fsm.FailedPrecondition,
		},
		{
			name:     "coordinated in maintenance",
			setup:    func(e *env) { e.mustCommit(setOptions("maintenance", "yes")) },
			handover: handoverTimeout, wantKind: fsm.FailedPrecondition, wantReason: fsm.ReasonMaintenance,
		},
		{
			name:      "forced in maintenance",
			setup:     func(e *env) { e.mustCommit(setOptions("maintenance", "yes")) },
			candidate: addrR2, phase: fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING,
		},
		{name: "forced, best replica", candidate: addrR2, phase: fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING},
		{name: "named replica", to: addrR3, candidate: addrR3, phase: fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING},
		{name: "coordinated", handover: handoverTimeout, candidate: addrR2, phase: fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER},
		{
			name:      "forced with the master down",
			setup:     func(e *env) { e.kill(addrM); e.tick(time.Second); e.tick(6 * time.Second) },
			candidate: addrR2, phase: fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.step()
			if tc.setup != nil {
				tc.setup(e)
			}
			name := masterName
			if tc.master != "" {
				name = tc.master
			}
			m, _, _ := e.fsm.Master(name) // nil when unknown
			before := e.master().GetFailover()
			from := e.mark()
			cmd, idx, err := e.leader.BeginManual(t.Context(), name, m, tc.to, tc.handover)
			if tc.wantKind != 0 {
				var fe *fsm.Error
				if !errors.As(err, &fe) || fe.Kind != tc.wantKind || fe.Reason != tc.wantReason {
					t.Fatalf("got %#v, want kind %v reason %q", err, tc.wantKind, tc.wantReason)
				}
				if cmd != nil || idx != 0 {
					t.Fatalf("refused, yet returned %v at %d", cmd, idx)
				}
				if got := e.since(from); len(got) != 0 {
					t.Fatalf("a refusal committed or sent %q", got)
				}
				if after := e.master().GetFailover(); (after == nil) != (before == nil) {
					t.Fatalf("journal changed: %v", after)
				}
				return
			}
			if err != nil {
				t.Fatalf("BeginManual: %v", err)
			}
			f := e.master().GetFailover()
			if f.GetCandidate() != tc.candidate || f.GetPhase() != tc.phase || f.GetReason() != "manual" ||
				cmd.GetBeginFailover().GetCandidate() != tc.candidate || idx != e.fsm.AppliedIndex() {
				t.Fatalf("journal %v, command %v at %d", f, cmd, idx)
			}
			if got := e.since(from); len(got) != 1 || got[0] != "commit BeginFailover manual "+tc.candidate {
				t.Fatalf("trace %q", got)
			}
		})
	}
}
