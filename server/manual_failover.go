package server

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultHandoverTimeout is how long a coordinated manual failover lets the
// chosen replica catch up when the request does not say.
const DefaultHandoverTimeout = 5 * time.Second

// outcomeMargin is added to the longest a failover can take when a
// Failover request comes without a deadline.
const outcomeMargin = 10 * time.Second

// StartFailover is SENTINEL FAILOVER: a plain promotion of the best replica
// (the master need not be down, and the anti-flap wait does not apply),
// returning as soon as the leader has committed the start. It works on any
// node: a follower forwards it to the leader. The error is the gRPC status
// the Failover call would answer; a refusal carries its fsm.Reason (read it
// with ReasonOf): ReasonFailoverInProgress, ReasonNoGoodReplica or
// ReasonUnknownMaster.
func (s *Server) StartFailover(ctx context.Context, name string) error {
	req := &coordinatorv1.FailoverRequest{Name: name, Force: true, NoWait: true}
	_, err := onLeader(s, ctx, coordinatorv1.CoordinatorService_Failover_FullMethodName, req, (&api{s: s}).Failover)
	if err != nil {
		return toStatus(err)
	}
	return nil
}

// Failover runs a manual failover on the leader (leaderCall brings it
// here) and, unless no_wait, waits on the local state for the
// journal to close. The leader's loop does the work; this only commits the
// start and reads the outcome, so the wait survives nothing but this node.
func (a *api) Failover(ctx context.Context, req *coordinatorv1.FailoverRequest) (*coordinatorv1.FailoverResponse, error) {
	handover, err := handoverTimeout(req)
	if err != nil {
		return nil, err
	}
	if err := checkDeadline(ctx, handover); err != nil {
		return nil, err
	}
	begin, idx, err := a.s.beginManualFailover(ctx, req.GetName(), req.GetTo(), handover)
	if err != nil {
		return nil, err
	}
	resp := &coordinatorv1.FailoverResponse{Index: idx, Candidate: begin.GetBeginFailover().GetCandidate()}
	if req.GetNoWait() {
		return resp, nil
	}
	// The journal's started_at is the leader's stamp on the BeginFailover
	// entry: it tells this failover's outcome from a later one's.
	out, idx, err := a.s.waitOutcome(ctx, req.GetName(), begin.GetProposedAtUnixNanos())
	if err != nil {
		return nil, err
	}
	resp.Outcome, resp.Index = publicOutcome(out), idx
	return resp, nil
}

// handoverTimeout validates the request's timeout: zero means a forced
// (plain) failover.
func handoverTimeout(req *coordinatorv1.FailoverRequest) (time.Duration, error) {
	if err := fsm.ValidateName("master", req.GetName()); err != nil {
		return 0, err
	}
	if req.GetTo() != "" {
		if err := fsm.ValidateAddress("replica", req.GetTo()); err != nil {
			return 0, err
		}
	}
	if req.GetForce() {
		if req.Timeout != nil {
			return 0, status.Error(codes.InvalidArgument, "timeout is the catch-up time of a coordinated failover; a forced failover does not wait")
		}
		return 0, nil
	}
	if req.Timeout == nil {
		return DefaultHandoverTimeout, nil
	}
	if err := req.GetTimeout().CheckValid(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "timeout: %v", err)
	}
	d := req.GetTimeout().AsDuration()
	if d < time.Millisecond {
		return 0, status.Errorf(codes.InvalidArgument, "timeout %v: want at least 1ms (Redis's FAILOVER counts milliseconds)", d)
	}
	return d.Truncate(time.Millisecond), nil
}

// checkDeadline refuses a coordinated request whose deadline would end
// before the catch-up time: the caller would see DeadlineExceeded for a
// failover that may still succeed.
func checkDeadline(ctx context.Context, handover time.Duration) error {
	if dl, ok := ctx.Deadline(); ok && handover > 0 && time.Until(dl) < handover {
		return status.Errorf(codes.InvalidArgument, "the request's deadline ends in %v, before the catch-up timeout of %v: give the call more time",
			time.Until(dl).Round(time.Millisecond), handover)
	}
	return nil
}

// beginManualFailover commits the start of a manual failover through this
// node's orchestrator.Leader (which chooses or checks the replica). A zero
// handover means forced.
func (s *Server) beginManualFailover(ctx context.Context, name, to string, handover time.Duration) (*fsmv1.Command, uint64, error) {
	l, err := s.establishedLeader(ctx)
	if err != nil {
		return nil, 0, err
	}
	m, _, _ := s.fsm.Master(name)
	return l.BeginManual(ctx, name, m, to, handover)
}

// establishedLeader returns this term's orchestrator.Leader, waiting while
// leadership is being established (raft's Barrier): a request that arrives
// right after an election should be delayed by it, not refused.
func (s *Server) establishedLeader(ctx context.Context) (*orchestrator.Leader, error) {
	for {
		if l := s.monitor.currentLeader(); l != nil {
			return l, nil
		}
		if !s.IsLeader() {
			return nil, s.notLeader()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			return nil, raft.ErrRaftShutdown
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitOutcome waits until the failover that started at startedAt has closed
// and returns its outcome. Without a deadline it waits as long as the
// failover may take (catch-up, promotion and re-pointing).
func (s *Server) waitOutcome(ctx context.Context, name string, startedAt int64) (*fsmv1.FailoverOutcome, uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		m, _, _ := s.fsm.Master(name)
		budget := 2*time.Duration(m.GetSettings().GetFailoverTimeoutMs())*time.Millisecond + outcomeMargin
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	for {
		changed, _ := s.fsm.Changed()
		m, idx, ok := s.fsm.Master(name)
		switch {
		case !ok:
			return nil, 0, status.Errorf(codes.Aborted, "master %q was removed during its failover", name)
		case m.GetLastFailover().GetStartedAtUnixNanos() == startedAt:
			return m.GetLastFailover(), idx, nil
		case m.GetFailover().GetStartedAtUnixNanos() != startedAt:
			return nil, 0, status.Errorf(codes.Aborted, "the failover of %q was closed without an outcome (the master was reset)", name)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, 0, status.Errorf(status.FromContextError(ctx.Err()).Code(),
				"failover of %q still running (phase %s): follow it with GetMasterDetail", name,
				phaseName(m.GetFailover().GetPhase().String(), "FAILOVER_PHASE_"))
		case <-s.ctx.Done():
			return nil, 0, status.Error(codes.Unavailable, "node shutting down while waiting for the failover")
		}
	}
}

func publicOutcome(o *fsmv1.FailoverOutcome) *coordinatorv1.FailoverOutcome {
	if o == nil {
		return nil
	}
	return &coordinatorv1.FailoverOutcome{
		Reason: o.GetReason(), Result: o.GetResult(), Event: o.GetEvent(), Detail: o.GetDetail(), Epoch: o.GetEpoch(),
		StartedAt: timestamp(o.GetStartedAtUnixNanos()), FinishedAt: timestamp(o.GetFinishedAtUnixNanos()),
		OldMaster: o.GetOldMaster(), Candidate: o.GetCandidate(), NewMaster: o.GetNewMaster(), Coordinated: o.GetCoordinated(),
		Handover: o.GetHandover(),
	}
}
