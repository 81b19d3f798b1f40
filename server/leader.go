package server

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const (
	// actionTimeout bounds one command the leader sends to Redis, so a
	// frozen instance cannot stall the loop.
	actionTimeout = 2 * time.Second
	// resendEvery spaces out repeats of an idempotent action that has not
	// shown its effect yet.
	resendEvery = 2 * time.Second
	// observeRefresh is how stale the committed replica offsets may grow
	// before the leader commits fresh ones.
	observeRefresh = 10 * time.Second
)

// lead runs the leader's part of one loop iteration: record what it sees,
// judge ODOWN, and start, resume or finish failovers. Every step is committed
// before it is acted on, and every action is idempotent, so a new leader
// picks up wherever the journal says.
func (mo *monitor) lead(ctx context.Context, st *fsmv1.State, obs map[string]probe.Observation, tilt failover.Tilt, now time.Time) {
	for _, m := range st.Masters {
		if ctx.Err() != nil {
			return
		}
		l := &leaderStep{mo: mo, ctx: ctx, m: m, obs: obs, tilt: tilt, now: now}
		if err := l.run(); err != nil {
			mo.s.log.Warn("failover step", "master", m.GetName(), "err", err)
		}
	}
}

// leaderStep is one pass over one master.
type leaderStep struct {
	mo   *monitor
	ctx  context.Context
	m    *fsmv1.Master
	obs  map[string]probe.Observation
	tilt failover.Tilt
	now  time.Time
}

func (l *leaderStep) downAfter() time.Duration {
	return time.Duration(l.m.GetSettings().GetDownAfterMs()) * time.Millisecond
}

func (l *leaderStep) failoverTimeout() time.Duration {
	return time.Duration(l.m.GetSettings().GetFailoverTimeoutMs()) * time.Millisecond
}

func (l *leaderStep) probeOf(addr string) failover.Probe {
	o, ok := l.obs[addr]
	if addr == l.m.GetAddress() {
		return masterProbe(probeOf(o, ok), l.m)
	}
	return probeOf(o, ok)
}

func (l *leaderStep) sdown(addr string, expectMaster bool) bool {
	down, _ := failover.SubjectivelyDown(l.probeOf(addr), expectMaster, l.downAfter(), l.now)
	return down
}

func (l *leaderStep) commit(cmd *fsmv1.Command) error {
	ctx, cancel := context.WithTimeout(l.ctx, 5*time.Second)
	defer cancel()
	_, err := l.mo.s.apply(ctx, cmd)
	return err
}

func (l *leaderStep) run() error {
	if err := l.observeReplicas(); err != nil {
		return err
	}
	if l.m.GetFailover() != nil {
		return l.driveFailover()
	}
	votes := make([]failover.Vote, 0, len(l.m.GetVotes()))
	for _, v := range l.m.GetVotes() {
		if v.GetAddress() == l.m.GetAddress() {
			votes = append(votes, failover.Vote{Node: v.GetNodeId(), Down: v.GetDown(), At: time.Unix(0, v.GetAtUnixNanos())})
		}
	}
	odown, count := failover.ObjectivelyDown(votes, int(l.m.GetSettings().GetQuorum()), voteFreshness, l.now)
	if odown != l.m.GetOdown() {
		err := l.commit(&fsmv1.Command{Kind: &fsmv1.Command_SetObjectiveDown{SetObjectiveDown: &fsmv1.SetObjectiveDown{
			Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), Down: odown, Votes: uint32(count)}}})
		if err != nil {
			return err
		}
	}
	if odown {
		last := time.Time{}
		if at := l.m.GetLastFailoverAtUnixNanos(); at != 0 {
			last = time.Unix(0, at)
		}
		if ok, _ := failover.MayStartFailover(last, l.failoverTimeout(), l.now); ok && !l.tilt.Active(l.now) && l.offsetsSettled() {
			return l.beginFailover("odown")
		}
		return nil
	}
	return l.heal()
}

// observeReplicas commits the leader's view of the replicas when something
// an operator or a decision cares about changed, or the offsets grew stale.
func (l *leaderStep) observeReplicas() error {
	known := map[string]*fsmv1.Replica{}
	for _, r := range l.m.GetReplicas() {
		known[r.GetAddress()] = r
	}
	addrs := map[string]bool{}
	for a := range known {
		addrs[a] = true
	}
	master, ok := l.obs[l.m.GetAddress()]
	if ok && master.Info != nil && master.Info.Role == "master" {
		for _, r := range master.Info.ConnectedReplicas {
			addrs[net.JoinHostPort(r.IP, strconv.Itoa(r.Port))] = true
		}
	}
	delete(addrs, l.m.GetAddress())
	var update []*fsmv1.Replica
	changed := false
	for a := range addrs {
		// A replica just discovered in the master's INFO is not probed yet:
		// it is recorded by address so that every node starts probing it.
		o, seen := l.obs[a]
		next := &fsmv1.Replica{Address: a, Disconnected: seen && !o.LinkUp, Sdown: l.sdown(a, false)}
		if in := o.Info; in != nil {
			next.RunId, next.Role = in.RunID, string(in.Role)
			next.MasterHost, next.MasterPort = in.MasterHost, int32(in.MasterPort)
			next.MasterLinkUp = in.MasterLinkUp()
			next.MasterLinkDownMs = in.MasterLinkDownSinceSeconds * 1000
			next.Priority, next.Offset, next.Announced = int32(in.ReplicaPriority), in.SlaveReplOffset, in.ReplicaAnnounced
		} else if old := known[a]; old != nil {
			// Without fresh INFO keep what was last known, updating only
			// the leader's own judgement.
			next = &fsmv1.Replica{Address: a, RunId: old.GetRunId(), Role: old.GetRole(), MasterHost: old.GetMasterHost(),
				MasterPort: old.GetMasterPort(), MasterLinkUp: old.GetMasterLinkUp(), MasterLinkDownMs: old.GetMasterLinkDownMs(),
				Priority: old.GetPriority(), Offset: old.GetOffset(), Announced: old.GetAnnounced(),
				Disconnected: next.Disconnected, Sdown: next.Sdown}
		}
		update = append(update, next)
		if old := known[a]; old == nil || materialChange(old, next) ||
			(next.GetOffset() != old.GetOffset() && l.now.Sub(time.Unix(0, old.GetObservedAtUnixNanos())) > observeRefresh) {
			changed = true
		}
		l.mo.noteDown(a, next.GetSdown(), l.now)
	}
	if !changed {
		return nil
	}
	cmd := &fsmv1.UpdateReplicas{Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), Replicas: update,
		MasterOffset: l.m.GetMasterOffset(), MasterRunId: l.m.GetMasterRunId()}
	if ok && master.Info != nil {
		cmd.MasterOffset, cmd.MasterRunId = master.Info.MasterReplOffset, master.Info.RunID
	}
	return l.commit(&fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: cmd}})
}

// materialChange ignores offsets and timestamps, which move all the time.
func materialChange(a, b *fsmv1.Replica) bool {
	return a.GetRunId() != b.GetRunId() || a.GetRole() != b.GetRole() || a.GetMasterHost() != b.GetMasterHost() ||
		a.GetMasterPort() != b.GetMasterPort() || a.GetMasterLinkUp() != b.GetMasterLinkUp() ||
		a.GetPriority() != b.GetPriority() || a.GetAnnounced() != b.GetAnnounced() ||
		a.GetSdown() != b.GetSdown() || a.GetDisconnected() != b.GetDisconnected()
}

// noteDown remembers when an instance last entered SDOWN, for the repair
// rules' "not down recently" checks.
func (mo *monitor) noteDown(addr string, down bool, now time.Time) {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if down && !mo.wasDown[addr] {
		mo.lastEnter[addr] = now
	}
	mo.wasDown[addr] = down
}

func (mo *monitor) lastEntered(addr string) time.Time {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	return mo.lastEnter[addr]
}

// choose ranks the replicas with Sentinel's rules on the leader's view.
func (l *leaderStep) choose() failover.Choice {
	return failover.SelectReplica(l.selection())
}

// offsetsSettled holds an automatic failover back until the replicas'
// offsets are final (failover.OffsetsFinal), for at most
// failover.OffsetSettleWait after ODOWN. A clock that went backwards counts
// as the wait being over, so a skewed new leader cannot wait forever.
func (l *leaderStep) offsetsSettled() bool {
	since := l.now // ODOWN is being committed in this very pass
	if at := l.m.GetOdownSinceUnixNanos(); at != 0 {
		since = time.Unix(0, at)
	}
	if d := l.now.Sub(since); d >= failover.OffsetSettleWait || d < 0 {
		return true
	}
	// When the master went down by this node's own probes; by the others'
	// votes alone, as of the ODOWN.
	downAt := since
	if mp := l.probeOf(l.m.GetAddress()); l.sdown(l.m.GetAddress(), true) {
		downAt = failover.SDownSince(mp, l.downAfter(), l.now)
	}
	return failover.OffsetsFinal(downAt, l.selection().Replicas)
}

// selection is the input of the replica ranking, from the leader's view.
func (l *leaderStep) selection() failover.Selection {
	in := failover.Selection{
		DownAfter:    l.downAfter(),
		MaxLagBytes:  l.m.GetSettings().GetMaxLagBytes(),
		MasterOffset: l.m.GetMasterOffset(),
		Now:          l.now,
	}
	mp := l.probeOf(l.m.GetAddress())
	if down, _ := failover.SubjectivelyDown(mp, true, l.downAfter(), l.now); down {
		in.MasterSDownSince = failover.SDownSince(mp, l.downAfter(), l.now)
	}
	if mp.Offset > in.MasterOffset {
		in.MasterOffset = mp.Offset
	}
	for _, r := range l.m.GetReplicas() {
		in.Replicas = append(in.Replicas, failover.Candidate{Addr: r.GetAddress(), Probe: l.probeOf(r.GetAddress()), SDown: l.sdown(r.GetAddress(), false)})
	}
	return in
}

func (l *leaderStep) beginFailover(reason string) error {
	choice := l.choose()
	begin := &fsmv1.BeginFailover{Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), Reason: reason}
	if choice.OK {
		begin.Candidate = choice.Winner
	}
	for _, r := range choice.Rejected {
		begin.Rejected = append(begin.Rejected, &fsmv1.Rejection{Address: r.Addr, Reason: r.Reason})
	}
	l.mo.s.log.Info("starting failover", "master", l.m.GetName(), "reason", reason, "candidate", begin.Candidate, "rejected", fmt.Sprint(choice.Rejected))
	if err := l.commit(&fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: begin}}); err != nil {
		return err
	}
	if begin.Candidate != "" {
		l.mo.s.simulateFailure(CrashAfterElection)
	}
	return nil
}

// replicaOf points one instance at host:port, bounded by actionTimeout.
func (l *leaderStep) replicaOf(addr, host string, port int) error {
	ctx, cancel := context.WithTimeout(l.ctx, actionTimeout)
	defer cancel()
	conn, err := l.mo.s.actions.conn(addr, l.auth())
	if err != nil {
		return err
	}
	return conn.ReplicaOf(ctx, host, port)
}

func (l *leaderStep) auth() probe.Auth {
	s := l.m.GetSettings()
	return probe.Auth{User: s.GetAuthUser(), Pass: s.GetAuthPass()}
}

// driveFailover performs the journal's next step.
func (l *leaderStep) driveFailover() error {
	f := l.m.GetFailover()
	switch f.GetPhase() {
	case fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING:
		return l.promote(f)
	case fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER:
		return l.handover(f)
	case fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS:
		return l.reconfigure(f)
	}
	return fmt.Errorf("failover of %q in unknown phase %v", l.m.GetName(), f.GetPhase())
}

func (l *leaderStep) promote(f *fsmv1.Failover) error {
	cand := f.GetCandidate()
	if failover.StepTimedOut(time.Unix(0, f.GetStartedAtUnixNanos()), l.failoverTimeout(), l.now) {
		return l.abort("-failover-abort-slave-timeout", fmt.Sprintf("%s did not report role master within failover-timeout", cand))
	}
	reportsMaster := false
	if o, ok := l.obs[cand]; ok && o.Info != nil && o.Info.Role == "master" && !o.InfoAt.Before(time.Unix(0, f.GetStartedAtUnixNanos())) {
		reportsMaster = true
	}
	if !reportsMaster && l.mo.due("promote", cand, l.now) {
		ctx, cancel := context.WithTimeout(l.ctx, actionTimeout)
		defer cancel()
		conn, err := l.mo.s.actions.conn(cand, l.auth())
		if err != nil {
			return err
		}
		if err := conn.Promote(ctx); err != nil {
			return fmt.Errorf("promote %s: %w", cand, err)
		}
		// Confirm at once rather than at the next INFO poll.
		info, err := conn.Info(ctx)
		if err != nil {
			return fmt.Errorf("confirm promotion of %s: %w", cand, err)
		}
		reportsMaster = info.Role == "master"
	}
	if !reportsMaster {
		return nil
	}
	return l.commitPromoted(cand)
}

var phaseOf = map[fsmv1.ReconfPhase]failover.ReconfPhase{
	fsmv1.ReconfPhase_RECONF_PHASE_PENDING:     failover.ReconfPending,
	fsmv1.ReconfPhase_RECONF_PHASE_SENT:        failover.ReconfSent,
	fsmv1.ReconfPhase_RECONF_PHASE_IN_PROGRESS: failover.ReconfInProgress,
	fsmv1.ReconfPhase_RECONF_PHASE_DONE:        failover.ReconfDone,
}

func (l *leaderStep) reconfigure(f *fsmv1.Failover) error {
	newHost, newPort, err := splitHostPort(l.m.GetAddress())
	if err != nil {
		return err
	}
	record := func(addr string, phase fsmv1.ReconfPhase) error {
		return l.commit(&fsmv1.Command{Kind: &fsmv1.Command_ReplicaReconfigured{ReplicaReconfigured: &fsmv1.ReplicaReconfigured{
			Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), Address: addr, Phase: phase}}})
	}
	send := func(addr string) error { return l.replicaOf(addr, newHost, newPort) }
	var states []failover.ReconfState
	for _, rc := range f.GetReconf() {
		addr, phase := rc.GetAddress(), rc.GetPhase()
		// Progress is read from the replica's own INFO.
		if o, ok := l.obs[addr]; ok && o.Info != nil && phase >= fsmv1.ReconfPhase_RECONF_PHASE_SENT && phase < fsmv1.ReconfPhase_RECONF_PHASE_DONE &&
			o.Info.Role == "slave" && o.Info.MasterHost == newHost && o.Info.MasterPort == newPort {
			next := fsmv1.ReconfPhase_RECONF_PHASE_IN_PROGRESS
			if o.Info.MasterLinkStatus == "up" {
				next = fsmv1.ReconfPhase_RECONF_PHASE_DONE
			}
			if next > phase {
				if err := record(addr, next); err != nil {
					return err
				}
				phase = next
			}
		}
		if phase == fsmv1.ReconfPhase_RECONF_PHASE_SENT && l.mo.due("reconf", addr, l.now) {
			if err := send(addr); err != nil {
				l.mo.s.log.Debug("re-sending REPLICAOF", "replica", addr, "err", err)
			}
		}
		o := l.obs[addr]
		states = append(states, failover.ReconfState{Addr: addr, Phase: phaseOf[phase], SentAt: time.Unix(0, rc.GetSentAtUnixNanos()),
			Disconnected: !o.LinkUp, SDown: l.sdown(addr, false)})
	}
	if failover.StepTimedOut(time.Unix(0, f.GetPromotedAtUnixNanos()), l.failoverTimeout(), l.now) {
		for _, s := range states {
			if s.Phase != failover.ReconfDone {
				_ = send(s.Addr) // best effort, as Sentinel's +slave-reconf-sent-be
			}
		}
		return l.commit(&fsmv1.Command{Kind: &fsmv1.Command_FinishFailover{FinishFailover: &fsmv1.FinishFailover{
			Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), TimedOut: true}}})
	}
	plan := failover.NextReconfBatch(states, int(l.m.GetSettings().GetParallelSyncs()), l.now)
	for _, addr := range plan.TimedOut {
		if err := record(addr, fsmv1.ReconfPhase_RECONF_PHASE_DONE); err != nil {
			return err
		}
	}
	for _, addr := range plan.Send {
		if err := record(addr, fsmv1.ReconfPhase_RECONF_PHASE_SENT); err != nil {
			return err
		}
		l.mo.due("reconf", addr, l.now)
		if err := send(addr); err != nil {
			l.mo.s.log.Warn("REPLICAOF during failover", "replica", addr, "err", err)
		}
	}
	if plan.Finished {
		return l.commit(&fsmv1.Command{Kind: &fsmv1.Command_FinishFailover{FinishFailover: &fsmv1.FinishFailover{
			Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch()}}})
	}
	return nil
}

// heal repairs the topology outside a failover: a returning old master is
// turned into a replica, a replica following the wrong master is re-pointed.
func (l *leaderStep) heal() error {
	host, port, err := splitHostPort(l.m.GetAddress())
	if err != nil {
		return err
	}
	masterProbe := l.probeOf(l.m.GetAddress())
	masterDown := l.sdown(l.m.GetAddress(), true) || l.m.GetOdown()
	for _, r := range l.m.GetReplicas() {
		rh, rp, err := splitHostPort(r.GetAddress())
		if err != nil {
			continue
		}
		act := failover.Heal(failover.HealInput{
			MasterHost: host, MasterPort: port, Master: masterProbe, MasterSDown: masterDown,
			Host: rh, Port: rp, Instance: l.probeOf(r.GetAddress()), InstanceLastDown: l.mo.lastEntered(r.GetAddress()),
			FailoverTimeout: l.failoverTimeout(), Tilt: l.tilt.Active(l.now), Now: l.now,
		})
		if act.Kind == failover.NoAction || !l.mo.due("heal", r.GetAddress(), l.now) {
			continue
		}
		err = l.replicaOf(r.GetAddress(), host, port)
		if err != nil {
			l.mo.s.log.Warn("repair", "replica", r.GetAddress(), "action", act.Kind.String(), "err", err)
			continue
		}
		l.mo.s.log.Info("repaired", "master", l.m.GetName(), "replica", r.GetAddress(), "action", act.Kind.String(), "reason", act.Reason)
		if err := l.commit(&fsmv1.Command{Kind: &fsmv1.Command_RecordRepair{RecordRepair: &fsmv1.RecordRepair{
			Master: l.m.GetName(), ExpectedEpoch: l.m.GetEpoch(), Address: r.GetAddress(), Event: "+" + act.Kind.String(), Reason: act.Reason}}}); err != nil {
			return err
		}
	}
	return nil
}
