package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultHandoverTimeout is how long a coordinated manual failover lets the
// chosen replica catch up when the request does not say.
const DefaultHandoverTimeout = 5 * time.Second

const (
	// handoverGrace is how long past the catch-up timeout the leader lets
	// Redis end its own FAILOVER before it sends FAILOVER ABORT.
	handoverGrace = 2 * time.Second
	// outcomeMargin is added to the longest a failover can take when a
	// Failover request comes without a deadline.
	outcomeMargin = 10 * time.Second
)

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

// beginManualFailover chooses the replica (or checks the named one) on the
// leader's view and commits BeginFailover, which it returns. A zero
// handover means forced.
func (s *Server) beginManualFailover(ctx context.Context, name, to string, handover time.Duration) (*fsmv1.Command, uint64, error) {
	m, _, ok := s.fsm.Master(name)
	if !ok {
		return nil, 0, fsm.UnknownMaster(name)
	}
	if m.GetFailover() != nil {
		return nil, 0, &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonFailoverInProgress,
			Msg: fmt.Sprintf("Failover already in progress for %q (phase %s, candidate %s)", name,
				phaseName(m.GetFailover().GetPhase().String(), "FAILOVER_PHASE_"), m.GetFailover().GetCandidate())}
	}
	if limit := time.Duration(m.GetSettings().GetFailoverTimeoutMs()) * time.Millisecond; handover > limit {
		return nil, 0, status.Errorf(codes.InvalidArgument, "timeout %v is longer than the failover-timeout of %q (%v)", handover, name, limit)
	}
	l := s.monitor.stepFor(ctx, m)
	if handover > 0 && l.sdown(m.GetAddress(), true) {
		return nil, 0, status.Errorf(codes.FailedPrecondition,
			"master %s of %q is down: a coordinated failover needs it to hand over; use force to promote without it", m.GetAddress(), name)
	}
	choice := l.choose()
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
	s.log.Info("starting manual failover", "master", name, "candidate", begin.Candidate, "coordinated", begin.Coordinated,
		"timeout", handover, "rejected", fmt.Sprint(choice.Rejected))
	idx, err := s.apply(ctx, cmd)
	if err != nil {
		return nil, 0, err
	}
	return cmd, idx, nil
}

// checkNamedReplica accepts a replica named by the operator only if the
// selection rules would accept it too.
func checkNamedReplica(m *fsmv1.Master, to string, choice failover.Choice) error {
	if to == m.GetAddress() {
		return status.Errorf(codes.InvalidArgument, "%s is the master of %q itself, not one of its replicas", to, m.GetName())
	}
	for _, r := range choice.Rejected {
		if r.Addr == to {
			return status.Errorf(codes.FailedPrecondition, "replica %s of %q cannot be promoted: %s", to, m.GetName(), r.Reason)
		}
	}
	for _, r := range m.GetReplicas() {
		if r.GetAddress() == to {
			return nil
		}
	}
	var known []string
	for _, r := range m.GetReplicas() {
		known = append(known, r.GetAddress())
	}
	return status.Errorf(codes.InvalidArgument, "%s is not a known replica of %q (known: %s)", to, m.GetName(), orNone(known))
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
	}
}

// stepFor builds a leader step over one master with the current
// observations, for decisions taken outside the loop (a manual failover's
// choice of replica).
func (mo *monitor) stepFor(ctx context.Context, m *fsmv1.Master) *leaderStep {
	mo.mu.Lock()
	tilt := mo.tilt
	mo.mu.Unlock()
	return &leaderStep{mo: mo, ctx: ctx, m: m, obs: mo.watcher.Observations(), tilt: tilt, now: time.Now()}
}

// candidateCheck bounds the INFO that asks whether the candidate has taken
// over: a frozen candidate must not stall the leader's loop long enough to
// look like a pause of this node (TILT).
const candidateCheck = time.Second

// handover drives a coordinated failover (FAILOVER_PHASE_HANDOVER). It
// reads where the handover is from INFO, so a new leader resumes it safely:
// the candidate reports master -> commit Promoted; the old master's
// master_failover_state shows FAILOVER running -> wait; no FAILOVER
// running and the old master still master -> send it (again) while
// catch-up time is left, else abort, the old master keeping its role.
//
// The candidate is asked only once the old master has stepped down (or
// does not answer): a frozen candidate must not hold up the checks that end
// the attempt in time.
func (l *leaderStep) handover(f *fsmv1.Failover) error {
	cand, old := f.GetCandidate(), f.GetOldMaster()
	oldConn, err := l.mo.s.actions.conn(old, l.auth())
	if err != nil {
		return err
	}
	candConn, err := l.mo.s.actions.conn(cand, l.auth())
	if err != nil {
		return err
	}
	info, oldErr := l.info(oldConn, actionTimeout)
	if oldErr != nil || info.Role != probe.RoleMaster {
		if ci, err := l.info(candConn, candidateCheck); err == nil && ci.Role == probe.RoleMaster {
			return l.commitPromoted(cand)
		}
	}
	started := time.Unix(0, f.GetStartedAtUnixNanos())
	if failover.StepTimedOut(started, l.failoverTimeout(), l.now) {
		return l.abort("-failover-abort-slave-timeout", fmt.Sprintf("%s did not report role master within failover-timeout", cand))
	}
	if oldErr != nil {
		return fmt.Errorf("handover of %q: %w", l.m.GetName(), oldErr)
	}
	catchUp := time.Duration(f.GetHandoverTimeoutMs()) * time.Millisecond
	deadline := started.Add(catchUp)
	switch {
	case info.MasterFailoverState != "" && info.MasterFailoverState != "no-failover":
		// Redis runs it, and ends it itself at its TIMEOUT. One stuck in
		// failover-in-progress (the candidate does not answer the PSYNC)
		// is stopped, so that the old master serves again.
		if l.now.After(deadline.Add(handoverGrace)) && l.mo.due("handover-abort", old, l.now) {
			l.mo.s.log.Warn("FAILOVER outlived its timeout; aborting it", "master", l.m.GetName(), "state", info.MasterFailoverState)
			return l.act(actionTimeout, oldConn.FailoverAbort)
		}
		return nil
	case info.Role != probe.RoleMaster:
		// The old master has stepped down and the candidate is being
		// switched over (PSYNC FAILOVER): wait for the candidate's role.
		return nil
	}
	remaining := deadline.Sub(l.now).Truncate(time.Millisecond)
	if p, ok := l.mo.pausedFor(l.m.GetName(), f.GetStartedAtUnixNanos()); ok {
		return l.pausedHandover(oldConn, candConn, f, p, remaining)
	}
	if remaining < time.Millisecond {
		return l.abort(fsm.EventHandoverTimeout, fmt.Sprintf(
			"%s did not take over from %s within %v (the replica did not catch up, or did not answer the switch); %s keeps serving",
			cand, old, catchUp, old))
	}
	if !l.mo.due("handover", old, l.now) {
		return nil
	}
	host, port, err := splitHostPort(cand)
	if err != nil {
		return err
	}
	err = l.act(actionTimeout, func(ctx context.Context) error { return oldConn.FailoverTo(ctx, host, port, remaining) })
	if isUnknownCommand(err) {
		return l.pauseForHandover(oldConn, f, remaining)
	}
	if err != nil {
		return err
	}
	l.mo.s.log.Info("sent FAILOVER TO", "master", l.m.GetName(), "old", old, "candidate", cand, "timeout", remaining)
	return nil
}

// act runs one command against Redis within d.
func (l *leaderStep) act(d time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(l.ctx, d)
	defer cancel()
	return fn(ctx)
}

func (l *leaderStep) info(c *probe.Conn, d time.Duration) (probe.Info, error) {
	var info probe.Info
	err := l.act(d, func(ctx context.Context) (err error) {
		info, err = c.Info(ctx)
		return err
	})
	return info, err
}

func isUnknownCommand(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unknown command")
}

// pausedWrites is a CLIENT PAUSE handover in progress on this leader: the
// failover it belongs to and the old master's offset once paused.
type pausedWrites struct {
	startedAt int64
	offset    int64
}

func (mo *monitor) pausedFor(master string, startedAt int64) (pausedWrites, bool) {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	p, ok := mo.paused[master]
	return p, ok && p.startedAt == startedAt
}

func (mo *monitor) setPaused(master string, p *pausedWrites) {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if mo.paused == nil {
		mo.paused = map[string]pausedWrites{}
	}
	if p == nil {
		delete(mo.paused, master)
		return
	}
	mo.paused[master] = *p
}

// pauseForHandover starts the coordinated handover for servers without
// FAILOVER (renamed away, or a fork that lacks it): it pauses writes on the
// old master and notes the offset the candidate must reach. The pause
// outlasts the catch-up time and the promotion, so no write lands on the
// old master before it follows the new one; UNPAUSE ends it early. Only
// this leader knows of it: a new leader finds no FAILOVER and starts over,
// while the old pause runs out by itself.
func (l *leaderStep) pauseForHandover(oldConn *probe.Conn, f *fsmv1.Failover, remaining time.Duration) error {
	err := l.act(actionTimeout, func(ctx context.Context) error { return oldConn.PauseWrites(ctx, remaining+3*actionTimeout) })
	if err != nil {
		return err
	}
	info, err := l.info(oldConn, actionTimeout)
	if err != nil {
		return err
	}
	l.mo.s.log.Info("paused writes for the handover (no FAILOVER command)", "master", l.m.GetName(), "old", oldConn.Addr(),
		"offset", info.MasterReplOffset, "timeout", remaining)
	l.mo.setPaused(l.m.GetName(), &pausedWrites{startedAt: f.GetStartedAtUnixNanos(), offset: info.MasterReplOffset})
	return nil
}

// pausedHandover goes on with a CLIENT PAUSE handover, one check per loop
// pass: once the candidate has the old master's offset, promote it, commit,
// re-point the old master and unpause; past the catch-up time, unpause and
// abort.
func (l *leaderStep) pausedHandover(oldConn, candConn *probe.Conn, f *fsmv1.Failover, p pausedWrites, remaining time.Duration) error {
	cand := f.GetCandidate()
	ci, err := l.info(candConn, candidateCheck)
	caughtUp := err == nil && ci.SlaveReplOffset >= p.offset
	if !caughtUp && remaining >= time.Millisecond {
		return nil
	}
	defer func() {
		l.mo.setPaused(l.m.GetName(), nil)
		if err := l.act(actionTimeout, oldConn.Unpause); err != nil {
			l.mo.s.log.Warn("CLIENT UNPAUSE after the handover (the pause ends by itself)", "err", err)
		}
	}()
	if !caughtUp {
		return l.abort(fsm.EventHandoverTimeout, fmt.Sprintf("%s did not reach the offset %d of %s within %v; %s keeps serving",
			cand, p.offset, oldConn.Addr(), time.Duration(f.GetHandoverTimeoutMs())*time.Millisecond, oldConn.Addr()))
	}
	if err := l.act(actionTimeout, candConn.Promote); err != nil {
		return fmt.Errorf("promote %s: %w", cand, err)
	}
	if ci, err := l.info(candConn, actionTimeout); err != nil || ci.Role != probe.RoleMaster {
		return fmt.Errorf("promotion of %s not confirmed (role %q): %v", cand, ci.Role, err)
	}
	if err := l.commitPromoted(cand); err != nil {
		return err
	}
	host, port, err := splitHostPort(cand)
	if err != nil {
		return err
	}
	// The reconfiguration step re-points it too; doing it before the
	// pause ends keeps paused writers from landing on the old master.
	return l.act(actionTimeout, func(ctx context.Context) error { return oldConn.ReplicaOf(ctx, host, port) })
}

func (l *leaderStep) abort(event, reason string) error {
	l.mo.s.log.Warn("failover aborted", "master", l.m.GetName(), "event", event, "reason", reason)
	return l.commit(&fsmv1.Command{Kind: &fsmv1.Command_AbortFailover{AbortFailover: &fsmv1.AbortFailover{
		Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), Event: event, Reason: reason}}})
}

func (l *leaderStep) commitPromoted(cand string) error {
	l.mo.s.log.Info("promoted", "master", l.m.GetName(), "new_address", cand, "epoch", l.m.GetEpoch()+1)
	if err := l.commit(&fsmv1.Command{Kind: &fsmv1.Command_Promoted{Promoted: &fsmv1.Promoted{
		Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), Address: cand}}}); err != nil {
		return err
	}
	l.mo.s.simulateFailure(CrashAfterPromotion)
	return nil
}
