package server

import (
	"context"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// explainForwardBudget bounds how long a follower looks for the leader
// before it answers Explain from its own view: "no leader" is itself the
// answer an operator asking why nothing fails over needs, and it should
// not take the whole request timeout to arrive.
const explainForwardBudget = 3 * time.Second

// Explain answers from the leader's view: on the leader itself, or
// forwarded there through leaderCall. A follower that cannot reach a
// leader answers from its own view, with "no-leader" as the first
// blocking condition.
func (a *api) Explain(ctx context.Context, req *coordinatorv1.ExplainRequest) (*coordinatorv1.ExplainResponse, error) {
	manual, err := explainManual(req)
	if err != nil {
		return nil, err
	}
	s := a.s
	fctx, cancel := context.WithTimeout(ctx, explainForwardBudget)
	defer cancel()
	resp, err := s.leaderCall(fctx, coordinatorv1.CoordinatorService_Explain_FullMethodName, req, func(lctx context.Context) (any, error) {
		l, err := s.establishedLeader(lctx)
		if err != nil {
			return nil, err
		}
		return s.explain(req.GetName(), manual, l, "")
	})
	if err == nil {
		out, ok := resp.(*coordinatorv1.ExplainResponse)
		if !ok {
			return nil, status.Errorf(codes.Internal, "reply %T to Explain", resp)
		}
		return out, nil
	}
	code := status.Code(toStatus(err))
	if ctx.Err() != nil || isForwarded(ctx) || (code != codes.Unavailable && code != codes.DeadlineExceeded) {
		return nil, err
	}
	return s.explain(req.GetName(), manual, nil, "no leader could be reached, so nothing can be committed and no failover can begin ("+
		status.Convert(toStatus(err)).Message()+"); this is node "+s.cfg.ID+"'s own view")
}

// explainManual reads the plan a request asks for, with the checks a
// Failover request gets; nil means the automatic decision.
func explainManual(req *coordinatorv1.ExplainRequest) (*failover.ManualRequest, error) {
	if err := fsm.ValidateName("master", req.GetName()); err != nil {
		return nil, err
	}
	mr := req.GetManual()
	if mr == nil {
		return nil, nil
	}
	handover, err := handoverTimeout(&coordinatorv1.FailoverRequest{Name: req.GetName(), To: mr.GetTo(), Force: mr.GetForce(), Timeout: mr.GetTimeout()})
	if err != nil {
		return nil, err
	}
	return &failover.ManualRequest{To: mr.GetTo(), Force: mr.GetForce(), Handover: handover}, nil
}

// explain builds the answer from l's view, or, without a leader, from this
// node's own observations with noLeader as the first blocking condition.
func (s *Server) explain(name string, manual *failover.ManualRequest, l *orchestrator.Leader, noLeader string) (*coordinatorv1.ExplainResponse, error) {
	m, idx, ok := s.fsm.Master(name)
	if !ok {
		return nil, fsm.UnknownMaster(name)
	}
	now := time.Now()
	var ex failover.Explanation
	if l != nil {
		ex = l.Explain(m, manual)
	} else {
		ex = orchestrator.ExplainFrom(m, s.monitor, now, manual)
		ex.Blocking = append([]failover.Condition{{Code: failover.BlockNoLeader, Detail: noLeader}}, ex.Blocking...)
		ex.Action, ex.Summary = failover.ActionBlocked, "no failover: "+noLeader
	}
	return explainResponse(s.cfg.ID, l != nil, m, idx, now, ex), nil
}

func explainResponse(node string, fromLeader bool, m *fsmv1.Master, idx uint64, now time.Time, ex failover.Explanation) *coordinatorv1.ExplainResponse {
	out := &coordinatorv1.ExplainResponse{
		Master: m.GetName(), Address: m.GetAddress(), Epoch: m.GetEpoch(), NodeId: node, FromLeader: fromLeader,
		Index: idx, At: timestamppb.New(now), Action: ex.Action, Summary: ex.Summary, Notes: ex.Notes,
		DownVotes: uint32(ex.DownVotes), Quorum: uint32(ex.Quorum), Odown: m.GetOdown(), Tilt: ex.Tilt,
		Maintenance: m.GetSettings().GetMaintenance(), LastFailoverAt: timestamp(m.GetLastFailoverAtUnixNanos()),
		Failover: masterDetail(m).GetFailover(), Candidate: ex.Candidate, Coordinated: ex.Coordinated,
	}
	if ex.Tilt {
		out.TiltUntil = timestamppb.New(ex.TiltUntil)
	}
	if ex.AntiFlapWait > 0 {
		out.AntiFlapWait = durationpb.New(ex.AntiFlapWait)
	}
	for _, c := range ex.Blocking {
		out.Blocking = append(out.Blocking, &coordinatorv1.ExplainCondition{Code: c.Code, Detail: c.Detail})
	}
	for _, v := range ex.Votes {
		out.Votes = append(out.Votes, &coordinatorv1.ExplainVote{NodeId: v.Node, Down: v.Down, Counted: v.Counted,
			Age: durationpb.New(v.Age), Reason: v.Reason, Address: v.Address})
	}
	for _, r := range ex.Replicas {
		out.Replicas = append(out.Replicas, &coordinatorv1.ExplainReplica{Address: r.Addr, Eligible: r.Eligible, Rank: uint32(r.Rank),
			Reason: r.Reason, Priority: int32(r.Priority), Offset: r.Offset, Lag: r.Lag, RunId: r.RunID})
	}
	return out
}
