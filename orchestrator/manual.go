package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// BeginManual starts a manual failover of m (nil: name is not monitored):
// it chooses the replica on this leader's view, or checks the one named by
// to, and commits BeginFailover, which it returns with its index. A zero
// handover is a forced (plain) promotion; otherwise the old master hands
// over within that catch-up time. Refusals are *fsm.Error values, with a
// Reason where a front end must tell them apart.
func (l *Leader) BeginManual(ctx context.Context, name string, m *fsmv1.Master, to string, handover time.Duration) (*fsmv1.Command, uint64, error) {
	if m == nil {
		return nil, 0, fsm.UnknownMaster(name)
	}
	if f := m.GetFailover(); f != nil {
		return nil, 0, &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonFailoverInProgress,
			Msg: fmt.Sprintf("Failover already in progress for %q (phase %s, candidate %s)", name, phaseName(f.GetPhase()), f.GetCandidate())}
	}
	if m.GetSettings().GetMaintenance() && handover > 0 {
		return nil, 0, &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonMaintenance, Msg: fmt.Sprintf(
			"%q is in maintenance: force the failover (a plain promotion), or set maintenance no first", name)}
	}
	if limit := time.Duration(m.GetSettings().GetFailoverTimeoutMs()) * time.Millisecond; handover > limit {
		return nil, 0, &fsm.Error{Kind: fsm.Invalid, Msg: fmt.Sprintf("timeout %v is longer than the failover-timeout of %q (%v)", handover, name, limit)}
	}
	p := &pass{l: l, ctx: ctx, m: m, obs: newView(l.cfg.Observe.Observation), now: l.cfg.Now()}
	if handover > 0 && p.sdown(m.GetAddress(), true) {
		return nil, 0, &fsm.Error{Kind: fsm.FailedPrecondition, Msg: fmt.Sprintf(
			"master %s of %q is down: a coordinated failover needs it to hand over; use force to promote without it", m.GetAddress(), name)}
	}
	choice := failover.SelectReplica(p.selection())
	begin := &fsmv1.BeginFailover{Master: name, ExpectedEpoch: m.GetEpoch(), Reason: "manual",
		Coordinated: handover > 0, HandoverTimeoutMs: handover.Milliseconds()}
	for _, r := range choice.Rejected {
		begin.Rejected = append(begin.Rejected, &fsmv1.Rejection{Address: r.Addr, Reason: r.Reason})
	}
	switch {
	case to != "":
		if err := checkNamedReplica(m, to, choice); err != nil {
			return nil, 0, err
		}
		begin.Candidate = to
	case choice.OK:
		begin.Candidate = choice.Winner
	}
	if begin.Candidate == "" {
		// Like Sentinel's SENTINEL FAILOVER, nothing is recorded: an
		// attempt on the record would hold off automatic failovers for
		// 2 x failover-timeout although none was tried.
		return nil, 0, &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonNoGoodReplica,
			Msg: fmt.Sprintf("No suitable replica to promote for %q: %s", name, describeRejections(m, choice))}
	}
	cmd := &fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: begin}}
	l.cfg.Log.Info("starting manual failover", "master", name, "candidate", begin.Candidate, "coordinated", begin.Coordinated,
		"timeout", handover, "rejected", fmt.Sprint(choice.Rejected))
	idx, err := l.cfg.Commit.Commit(ctx, cmd)
	if err != nil {
		return nil, 0, err
	}
	return cmd, idx, nil
}

// phaseName is a failover phase as operators read it ("handover").
func phaseName(ph fsmv1.FailoverPhase) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(ph.String(), "FAILOVER_PHASE_")), "_", "-")
}

// checkNamedReplica accepts a replica named by the operator only if the
// selection rules would accept it too.
func checkNamedReplica(m *fsmv1.Master, to string, choice failover.Choice) error {
	if to == m.GetAddress() {
		return &fsm.Error{Kind: fsm.Invalid, Msg: fmt.Sprintf("%s is the master of %q itself, not one of its replicas", to, m.GetName())}
	}
	for _, r := range choice.Rejected {
		if r.Addr == to {
			return &fsm.Error{Kind: fsm.FailedPrecondition, Msg: fmt.Sprintf("replica %s of %q cannot be promoted: %s", to, m.GetName(), r.Reason)}
		}
	}
	var known []string
	for _, r := range m.GetReplicas() {
		if r.GetAddress() == to {
			return nil
		}
		known = append(known, r.GetAddress())
	}
	return &fsm.Error{Kind: fsm.Invalid, Msg: fmt.Sprintf("%s is not a known replica of %q (known: %s)", to, m.GetName(), orNone(known))}
}

func describeRejections(m *fsmv1.Master, choice failover.Choice) string {
	if len(m.GetReplicas()) == 0 {
		return "it has no known replica"
	}
	var parts []string
	for _, r := range choice.Rejected {
		parts = append(parts, r.Addr+" "+r.Reason)
	}
	return orNone(parts)
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
