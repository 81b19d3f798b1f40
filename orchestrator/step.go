package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// pass is the leader's work on one master with one set of observations.
type pass struct {
	l   *Leader
	ctx context.Context
	m   *fsmv1.Master
	obs *view
	now time.Time
	// offsetRefresh is how stale the master's committed offsets may grow
	// (offsetRefresh()) for a master with max-lag; zero (every other
	// master) commits offsets only along with a change that matters.
	offsetRefresh time.Duration
	// promotedAt is when this pass's REPLICAOF NO ONE to the candidate
	// returned (zero if it sent none): the candidate's detachment, which
	// the fence wait counts from, can be well after now.
	promotedAt time.Time
}

func (p *pass) failoverTimeout() time.Duration {
	return time.Duration(p.m.GetSettings().GetFailoverTimeoutMs()) * time.Millisecond
}

func (p *pass) probeOf(addr string) failover.Probe {
	o, ok := p.obs.get(addr)
	if addr == p.m.GetAddress() {
		return MasterProbe(ProbeOf(o, ok), p.m)
	}
	return ProbeOf(o, ok)
}

func (p *pass) sdown(addr string, expectMaster bool) bool {
	down, _ := failover.SubjectivelyDown(p.probeOf(addr), expectMaster, DownAfter(p.m), p.now)
	return down
}

func (p *pass) auth() probe.Auth {
	s := p.m.GetSettings()
	return probe.Auth{User: s.GetAuthUser(), Pass: s.GetAuthPass()}
}

func (p *pass) instance(addr string) (Instance, error) {
	return p.l.cfg.Redis.Instance(addr, p.auth())
}

func (p *pass) run() error {
	update := p.replicasUpdate()
	if p.m.GetFailover() != nil {
		if err := p.commit(update); err != nil {
			return err
		}
		return p.driveFailover()
	}
	if begun, err := p.beginIfDown(update); begun || err != nil {
		return err
	}
	if err := p.commit(update); err != nil {
		return err
	}
	if update != nil {
		if !p.reread() {
			return nil
		}
		if begun, err := p.beginIfDown(); begun || err != nil {
			return err
		}
	}
	if err := p.maintainFence(); err != nil {
		p.l.cfg.Log.Warn("fence", "master", p.m.GetName(), "err", err)
	}
	odown, setOdown := p.judgeODown()
	if err := p.commit(setOdown); err != nil {
		return err
	}
	// Maintenance: detection goes on (the votes and the ODOWN judgement),
	// but nothing automatic is sent to Redis.
	if p.m.GetSettings().GetMaintenance() || odown {
		return nil
	}
	// A master that answers PING may still have to go: see emptyRestart.
	if begun, err := p.emptyRestart(); begun || err != nil {
		return err
	}
	return p.heal()
}

// judgeODown judges the master ODOWN from the fresh votes, and returns
// the SetObjectiveDown to commit when that differs from the record (nil
// otherwise).
func (p *pass) judgeODown() (bool, *fsmv1.Command) {
	votes := make([]failover.Vote, 0, len(p.m.GetVotes()))
	for _, v := range p.m.GetVotes() {
		if v.GetAddress() == p.m.GetAddress() {
			votes = append(votes, failover.Vote{Node: v.GetNodeId(), Down: v.GetDown(), At: time.Unix(0, v.GetAtUnixNanos())})
		}
	}
	odown, count := failover.ObjectivelyDown(votes, int(p.m.GetSettings().GetQuorum()), VoteFreshness, p.now)
	if odown == p.m.GetOdown() {
		return odown, nil
	}
	return odown, &fsmv1.Command{Kind: &fsmv1.Command_SetObjectiveDown{SetObjectiveDown: &fsmv1.SetObjectiveDown{
		Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Down: odown, Votes: uint32(count)}}}
}

// beginIfDown begins the failover of an ODOWN master when it may begin
// (not in maintenance, mayBeginFailover), committing before (the nil ones
// left out), the ODOWN when it is new, and the begin in one commit; it
// reports whether it tried.
func (p *pass) beginIfDown(before ...*fsmv1.Command) (bool, error) {
	odown, setOdown := p.judgeODown()
	if !odown || p.m.GetSettings().GetMaintenance() || !p.mayBeginFailover() {
		return false, nil
	}
	return true, p.beginFailover(append(before, setOdown)...)
}

// reread takes the master's record as applied now (Config.State) after
// the pass waited on a commit of its own, so that it judges what others
// committed meanwhile: at a mass failure the other nodes' votes arrive
// while the pass commits the replicas' lost links, and the next pass
// would find them only after this one ends and the node's loop comes
// round again, a few tenths of a second later on a loaded machine. It
// reports false when the pass should end there: the master is gone, or
// a failover began (a manual one), which the next pass drives.
func (p *pass) reread() bool {
	if p.l.cfg.State == nil {
		return p.ctx.Err() == nil
	}
	m, ok := p.applied()
	if !ok || m.GetFailover() != nil {
		return false
	}
	p.m, p.now = m, p.l.cfg.Now()
	return true
}

// mayBeginFailover reports whether a failover of the ODOWN master may
// begin now: failover-timeout has passed since the last, and the
// replicas' offsets are final.
func (p *pass) mayBeginFailover() bool {
	last := time.Time{}
	if at := p.m.GetLastFailoverAtUnixNanos(); at != 0 {
		last = time.Unix(0, at)
	}
	ok, _ := failover.MayStartFailover(last, p.failoverTimeout(), p.now)
	return ok && p.offsetsSettled()
}

// replicasUpdate is the UpdateReplicas that records the leader's view of
// the replicas, when something an operator or a decision cares about
// changed, or, for a master with max-lag, when the offsets grew stale;
// nil when nothing did. The pass commits it first, with whatever it
// commits next when that is a failover's begin.
//
// Offsets alone are committed only where a decision reads them from the
// log: the ranking's max-lag compares the replicas with the master's
// offset, and takes the committed one when it is higher than what the
// leader's own probe saw (a new leader whose probe never read the dead
// master's INFO). Everything else reads live offsets: the ranking itself,
// the empty-restart check and the handover read the probe's INFO or Redis
// directly, and what is displayed (GetMasterDetail, coordinatorctl, the
// lag metric, SENTINEL REPLICAS) comes from the serving node's own probe.
// Committing offsets that always move for display only cost every node a
// log entry written to disk and a new copy of the state, ten times a
// second.
func (p *pass) replicasUpdate() *fsmv1.Command {
	known := map[string]*fsmv1.Replica{}
	addrs := map[string]bool{}
	for _, r := range p.m.GetReplicas() {
		known[r.GetAddress()] = r
		addrs[r.GetAddress()] = true
	}
	master, ok := p.obs.get(p.m.GetAddress())
	if ok && master.Info != nil && master.Info.Role == probe.RoleMaster {
		for _, r := range master.Info.ConnectedReplicas {
			// Joining the address for every replica of every master at
			// every pass was most of this function's cost: known replicas
			// are matched without building a string.
			if !knownHostPort(p.m.GetReplicas(), r.IP, r.Port) {
				addrs[net.JoinHostPort(r.IP, strconv.Itoa(r.Port))] = true
			}
		}
	}
	delete(addrs, p.m.GetAddress())
	var update []*fsmv1.Replica
	changed := false
	for a := range addrs {
		// A replica just discovered in the master's INFO is not probed yet:
		// it is recorded by address so that every node starts probing it.
		o, seen := p.obs.get(a)
		next := &fsmv1.Replica{Address: a, Disconnected: seen && !o.LinkUp, Sdown: p.sdown(a, false)}
		// The INFO of an instance that does not answer is from before it
		// went away (an old master's says master): a record that exists
		// keeps what it holds until the instance answers again, so that
		// +role-change and -role-change come from reports, not memories.
		if in := o.Info; in != nil && (o.LinkUp || known[a] == nil) {
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
			(p.offsetRefresh > 0 && next.GetOffset() != old.GetOffset() && p.now.Sub(time.Unix(0, old.GetObservedAtUnixNanos())) > max(p.offsetRefresh, observeRefresh)) {
			changed = true
		}
		p.l.noteDown(a, next.GetSdown(), p.now)
	}
	if ok && master.Info != nil && master.Info.RunID != "" && master.Info.RunID != p.m.GetMasterRunId() {
		changed = true // the master's first run id, or a restart (+reboot)
	}
	recordedRole := p.m.GetMasterRole()
	if recordedRole == "" {
		recordedRole = fsm.RoleMaster // what a master record starts at
	}
	masterRole := p.masterReportedRole(master, ok)
	if masterRole != "" && masterRole != recordedRole {
		changed = true // +role-change / -role-change
	}
	if !changed {
		return nil
	}
	cmd := &fsmv1.UpdateReplicas{Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Replicas: update,
		MasterOffset: p.m.GetMasterOffset(), MasterRunId: p.m.GetMasterRunId()}
	if ok && master.Info != nil {
		cmd.MasterOffset, cmd.MasterRunId, cmd.MasterRole = master.Info.MasterReplOffset, master.Info.RunID, masterRole
	}
	return &fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: cmd}}
}

// knownHostPort reports whether one of replicas has the address host:port
// (as net.JoinHostPort writes it), without allocating.
func knownHostPort(replicas []*fsmv1.Replica, host string, port int) bool {
	for _, r := range replicas {
		if sameHostPort(r.GetAddress(), host, port) {
			return true
		}
	}
	return false
}

// sameHostPort reports whether addr == net.JoinHostPort(host, strconv.Itoa(port)).
func sameHostPort(addr, host string, port int) bool {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return false
	}
	h, p := addr[:i], addr[i+1:]
	if strings.IndexByte(host, ':') >= 0 {
		if len(h) < 2 || h[0] != '[' || h[len(h)-1] != ']' {
			return false
		}
		h = h[1 : len(h)-1]
	}
	if h != host || len(p) == 0 || len(p) > 18 || (len(p) > 1 && p[0] == '0') {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n == port
}

// masterReportedRole is the role the master's INFO reports, from an INFO
// read while it answers and after it was promoted (a promoted replica's
// INFO from before its promotion still says slave); "" when there is none.
func (p *pass) masterReportedRole(o probe.Observation, ok bool) string {
	if !ok || o.Info == nil || !o.LinkUp {
		return ""
	}
	var promotedAt int64
	if f := p.m.GetFailover(); f.GetPhase() == fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
		promotedAt = f.GetPromotedAtUnixNanos()
	} else if lf := p.m.GetLastFailover(); lf.GetResult() == fsm.ResultPromoted && lf.GetNewMaster() == p.m.GetAddress() {
		promotedAt = lf.GetFinishedAtUnixNanos()
	}
	if promotedAt != 0 && !o.InfoAt.After(time.Unix(0, promotedAt)) {
		return ""
	}
	return string(o.Info.Role)
}

// materialChange ignores offsets and timestamps, which move all the time.
func materialChange(a, b *fsmv1.Replica) bool {
	return a.GetRunId() != b.GetRunId() || a.GetRole() != b.GetRole() || a.GetMasterHost() != b.GetMasterHost() ||
		a.GetMasterPort() != b.GetMasterPort() || a.GetMasterLinkUp() != b.GetMasterLinkUp() ||
		a.GetPriority() != b.GetPriority() || a.GetAnnounced() != b.GetAnnounced() ||
		a.GetSdown() != b.GetSdown() || a.GetDisconnected() != b.GetDisconnected()
}

// offsetsSettled holds an automatic failover back until the replicas'
// offsets are final (failover.OffsetsFinal), for at most
// failover.OffsetSettleWait after ODOWN. A clock that went backwards counts
// as the wait being over, so a skewed new leader cannot wait forever.
func (p *pass) offsetsSettled() bool {
	since := p.now // ODOWN is being committed in this very pass
	if at := p.m.GetOdownSinceUnixNanos(); at != 0 {
		since = time.Unix(0, at)
	}
	if d := p.now.Sub(since); d >= failover.OffsetSettleWait || d < 0 {
		return true
	}
	// When the master went down by this node's own probes; by the others'
	// votes alone, as of the ODOWN.
	downAt := since
	if p.sdown(p.m.GetAddress(), true) {
		downAt = failover.SDownSince(p.probeOf(p.m.GetAddress()), DownAfter(p.m), p.now)
	}
	return failover.OffsetsFinal(downAt, p.selection().Replicas)
}

// selection is the input of the replica ranking, from the leader's view.
func (p *pass) selection() failover.Selection {
	in := failover.Selection{
		DownAfter:    DownAfter(p.m),
		MaxLagBytes:  p.m.GetSettings().GetMaxLagBytes(),
		MasterOffset: p.m.GetMasterOffset(),
		Now:          p.now,
	}
	mp := p.probeOf(p.m.GetAddress())
	if down, _ := failover.SubjectivelyDown(mp, true, DownAfter(p.m), p.now); down {
		in.MasterSDownSince = failover.SDownSince(mp, DownAfter(p.m), p.now)
	}
	if mp.Offset > in.MasterOffset {
		in.MasterOffset = mp.Offset
	}
	for _, r := range p.m.GetReplicas() {
		in.Replicas = append(in.Replicas, failover.Candidate{Addr: r.GetAddress(), Probe: p.probeOf(r.GetAddress()), SDown: p.sdown(r.GetAddress(), false)})
	}
	return in
}

// beginFailover commits the failover's BeginFailover after before (the
// replicas' update and the ODOWN of this pass, nil ones left out) in one
// commit: proposed together, they cost one commit's wait instead of one
// each, a tenth of a second or more each with a hundred masters failing
// at once on a loaded machine. They stay separate entries, in order, so
// +odown comes before +try-failover.
func (p *pass) beginFailover(before ...*fsmv1.Command) error {
	choice := failover.SelectReplica(p.selection())
	begin := &fsmv1.BeginFailover{Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Reason: "odown"}
	if choice.OK {
		begin.Candidate = choice.Winner
	}
	for _, r := range choice.Rejected {
		begin.Rejected = append(begin.Rejected, &fsmv1.Rejection{Address: r.Addr, Reason: r.Reason})
	}
	p.l.cfg.Log.Info("starting failover", "master", p.m.GetName(), "reason", "odown", "candidate", begin.Candidate, "rejected", fmt.Sprint(choice.Rejected))
	if err := p.commit(append(before, &fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: begin}})...); err != nil {
		return err
	}
	if begin.Candidate == "" {
		return nil
	}
	p.l.crash(CrashAfterElection)
	return p.promoteNow()
}

// promoteCandidate sends conn the promotion (probe.Conn.Promote), after
// act's checks, and returns the INFO it read after the role change. A role
// change not stored in the config file counts as done (stored).
func (p *pass) promoteCandidate(conn Instance, opts probe.PromoteOptions) (probe.Info, error) {
	var info probe.Info
	err := p.act(actionTimeout, func(ctx context.Context) error {
		var err error
		info, err = conn.Promote(ctx, opts)
		return err
	})
	if err := p.stored(err); err != nil {
		return probe.Info{}, fmt.Errorf("promote %s: %w", conn.Addr(), err)
	}
	return info, nil
}

// applied reads the master's record as this node applied it
// (Config.State); ok is false without a State, once the pass is stopped,
// or when the master is no longer monitored.
func (p *pass) applied() (*fsmv1.Master, bool) {
	if p.l.cfg.State == nil || p.ctx.Err() != nil {
		return nil, false
	}
	m, _, ok := p.l.cfg.State.Master(p.m.GetName())
	return m, ok
}

// promoteNow goes on from a committed BeginFailover to the promotion in
// the same pass, from the master's record as committed (Config.State), as
// the next pass would, but without waiting for the node's loop to start
// it: with many masters failing at once that wait, a loop iteration over
// every master, was a third of the time from the begin to +switch-master.
// The journal is unchanged: the promotion acts on the committed record,
// and a leader that dies here resumes from it.
func (p *pass) promoteNow() error {
	m, ok := p.applied()
	if !ok || m.GetFailover().GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING {
		return nil
	}
	p.m, p.now = m, p.l.cfg.Now()
	return p.promote(m.GetFailover())
}

// replicaOf points one instance at host:port.
func (p *pass) replicaOf(addr, host string, port int) error {
	conn, err := p.instance(addr)
	if err != nil {
		return err
	}
	return p.act(actionTimeout, func(ctx context.Context) error { return p.repoint(ctx, conn, host, port) })
}

// repoint sends REPLICAOF host port, after giving the instance the group's
// credentials as its masteruser/masterauth (setMasterAuth).
func (p *pass) repoint(ctx context.Context, conn Instance, host string, port int) error {
	p.setMasterAuth(ctx, conn)
	return p.stored(conn.ReplicaOf(ctx, host, port))
}

// stored passes a role change that could not be stored in the config file
// (probe.ErrNotRewritten: CONFIG renamed away) as done, with a warning:
// the instance has its new role, and a restart would undo it, as under
// Sentinel with CONFIG renamed.
func (p *pass) stored(err error) error {
	if errors.Is(err, probe.ErrNotRewritten) {
		p.l.cfg.Log.Warn("role changed but not stored in the config file", "master", p.m.GetName(), "err", err)
		return nil
	}
	return err
}

// setMasterAuth sets, when the group has a password (auth-pass), the
// instance's masteruser and masterauth to the group's auth-user and
// auth-pass before it is made to replicate, so that a server started
// without masterauth (an old master brought back with its original
// config) can authenticate to its new master; the CONFIG REWRITE of the
// REPLICAOF that follows stores them. Sentinel does not do this: it leaves
// masterauth to the operator. A failure (CONFIG renamed away, an ACL
// without CONFIG) is logged and the re-point goes on, as fencing does: the
// instance may well have masterauth configured already.
func (p *pass) setMasterAuth(ctx context.Context, conn Instance) {
	auth := p.auth()
	if auth.Pass == "" {
		return
	}
	if err := conn.SetMasterAuth(ctx, auth); err != nil {
		p.l.cfg.Log.Warn("setting masteruser/masterauth before re-pointing failed; the instance keeps its own and may fail to authenticate to its new master",
			"master", p.m.GetName(), "address", conn.Addr(), "err", err)
	}
}

// driveFailover performs the journal's next step.
func (p *pass) driveFailover() error {
	f := p.m.GetFailover()
	switch f.GetPhase() {
	case fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING:
		return p.promote(f)
	case fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER:
		return p.handover(f)
	case fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS:
		return p.reconfigure(f)
	}
	return fmt.Errorf("failover of %q in unknown phase %v", p.m.GetName(), f.GetPhase())
}

// promote sends REPLICAOF NO ONE to the candidate until it reports role
// master (in INFO taken after the failover began), then commits Promoted.
func (p *pass) promote(f *fsmv1.Failover) error {
	cand := f.GetCandidate()
	reportsMaster := false
	if o, ok := p.obs.get(cand); ok && o.Info != nil && o.Info.Role == probe.RoleMaster && !o.InfoAt.Before(time.Unix(0, f.GetStartedAtUnixNanos())) {
		reportsMaster = true
	}
	// A candidate that turned master is never abandoned: aborting would
	// leave it a second master. It waits for the old master's fence,
	// however long that takes beyond failover-timeout.
	if !reportsMaster && failover.StepTimedOut(time.Unix(0, f.GetStartedAtUnixNanos()), p.failoverTimeout(), p.now) {
		return p.abort("-failover-abort-slave-timeout", fmt.Sprintf("%s did not report role master within failover-timeout", cand))
	}
	if !reportsMaster && p.l.due("promote", cand, p.now) {
		conn, err := p.instance(cand)
		if err != nil {
			return err
		}
		// The unfence (min-replicas-to-write 0, so that the new master
		// never answers NOREPLICAS; its fence rises once its replicas are
		// attached) is part of the committed promotion decision and rides
		// in the promotion's transaction, which also reads the INFO that
		// confirms the role at once rather than at the next poll.
		fenced := fsm.FenceOn(p.m.GetSettings())
		if fenced {
			p.catchUpBeforePromotion(f, conn)
		}
		info, err := p.promoteCandidate(conn, probe.PromoteOptions{Unfence: fenced})
		if err != nil {
			return err
		}
		p.promotedAt = p.l.cfg.Now()
		reportsMaster = info.Role == probe.RoleMaster
	}
	if !reportsMaster {
		return nil
	}
	if ok, err := p.fenceBeforeAnnounce(f); !ok || err != nil {
		return err
	}
	return p.commitPromoted(cand)
}

var phaseOf = map[fsmv1.ReconfPhase]failover.ReconfPhase{
	fsmv1.ReconfPhase_RECONF_PHASE_PENDING:     failover.ReconfPending,
	fsmv1.ReconfPhase_RECONF_PHASE_SENT:        failover.ReconfSent,
	fsmv1.ReconfPhase_RECONF_PHASE_IN_PROGRESS: failover.ReconfInProgress,
	fsmv1.ReconfPhase_RECONF_PHASE_DONE:        failover.ReconfDone,
}

// beingRepointed reports a replica the failover re-points itself.
func beingRepointed(f *fsmv1.Failover, addr string) bool {
	for _, rc := range f.GetReconf() {
		if rc.GetAddress() == addr {
			return true
		}
	}
	return false
}

// healEvery spaces out repeated repairs: a returning former master is
// tried again sooner, since it may be acknowledging writes.
func healEvery(former bool) time.Duration {
	if former {
		return 500 * time.Millisecond
	}
	return resendEvery
}

// reconfigure re-points the other replicas at the new master,
// parallel-syncs at a time, committing each replica's progress (read from
// its own INFO) and closing the journal when all are done or
// failover-timeout has passed since the promotion.
func (p *pass) reconfigure(f *fsmv1.Failover) error {
	newHost, newPort, err := splitHostPort(p.m.GetAddress())
	if err != nil {
		return err
	}
	if err := p.repair(true); err != nil {
		p.l.cfg.Log.Warn("converting a returning former master", "master", p.m.GetName(), "err", err)
	}
	if err := p.releasePause(f, newHost, newPort); err != nil {
		p.l.cfg.Log.Warn("releasing the handover's write pause (it ends by itself)", "master", p.m.GetName(), "err", err)
	}
	record := func(addr string, phase fsmv1.ReconfPhase) error {
		return p.commit(&fsmv1.Command{Kind: &fsmv1.Command_ReplicaReconfigured{ReplicaReconfigured: &fsmv1.ReplicaReconfigured{
			Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Address: addr, Phase: phase}}})
	}
	send := func(addr string) error { return p.replicaOf(addr, newHost, newPort) }
	var states []failover.ReconfState
	for _, rc := range f.GetReconf() {
		addr, phase := rc.GetAddress(), rc.GetPhase()
		if o, ok := p.obs.get(addr); ok && o.Info != nil && phase >= fsmv1.ReconfPhase_RECONF_PHASE_SENT && phase < fsmv1.ReconfPhase_RECONF_PHASE_DONE &&
			o.Info.Role == probe.RoleSlave && o.Info.MasterHost == newHost && o.Info.MasterPort == newPort {
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
		if phase == fsmv1.ReconfPhase_RECONF_PHASE_SENT && p.l.due("reconf", addr, p.now) {
			if err := send(addr); err != nil {
				p.l.cfg.Log.Debug("re-sending REPLICAOF", "replica", addr, "err", err)
			}
		}
		o, _ := p.obs.get(addr)
		states = append(states, failover.ReconfState{Addr: addr, Phase: phaseOf[phase], SentAt: time.Unix(0, rc.GetSentAtUnixNanos()),
			Disconnected: !o.LinkUp, SDown: p.sdown(addr, false)})
	}
	if failover.StepTimedOut(time.Unix(0, f.GetPromotedAtUnixNanos()), p.failoverTimeout(), p.now) {
		// Committed first; the best-effort REPLICAOFs after it are
		// Sentinel's +slave-reconf-sent-be, which nobody resumes.
		err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_FinishFailover{FinishFailover: &fsmv1.FinishFailover{
			Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), TimedOut: true}}})
		if err != nil {
			return err
		}
		for _, s := range states {
			if s.Phase != failover.ReconfDone {
				_ = send(s.Addr)
			}
		}
		return nil
	}
	plan := failover.NextReconfBatch(states, p.parallelSyncs(f), p.now)
	for _, addr := range plan.TimedOut {
		if err := record(addr, fsmv1.ReconfPhase_RECONF_PHASE_DONE); err != nil {
			return err
		}
	}
	for _, addr := range plan.Send {
		if err := record(addr, fsmv1.ReconfPhase_RECONF_PHASE_SENT); err != nil {
			return err
		}
		p.l.due("reconf", addr, p.now)
		if err := send(addr); err != nil {
			p.l.cfg.Log.Warn("REPLICAOF during failover", "replica", addr, "err", err)
		}
	}
	if plan.Finished {
		return p.commit(&fsmv1.Command{Kind: &fsmv1.Command_FinishFailover{FinishFailover: &fsmv1.FinishFailover{
			Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch()}}})
	}
	return nil
}

// heal repairs the topology outside a failover: a returning old master is
// turned into a replica, a replica following the wrong master is re-pointed.
// The repair is committed before its REPLICAOF is sent, like every step; a
// command that fails is tried again, committed again, after resendEvery.
func (p *pass) heal() error { return p.repair(false) }

// repair is heal's work; with onlyFormer (during a failover's
// re-pointing) it converts only a returning former master.
func (p *pass) repair(onlyFormer bool) error {
	host, port, err := splitHostPort(p.m.GetAddress())
	if err != nil {
		return err
	}
	masterProbe := p.probeOf(p.m.GetAddress())
	masterDown := p.sdown(p.m.GetAddress(), true) || p.m.GetOdown()
	lastOld := ""
	if lf := p.m.GetLastFailover(); lf.GetResult() == fsm.ResultPromoted {
		lastOld = lf.GetOldMaster()
	}
	if f := p.m.GetFailover(); f.GetPhase() == fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
		lastOld = f.GetOldMaster()
	}
	for _, r := range p.m.GetReplicas() {
		rh, rp, err := splitHostPort(r.GetAddress())
		if err != nil {
			continue
		}
		inst := p.probeOf(r.GetAddress())
		former := failover.IsFormerMaster(r.GetAddress(), lastOld, inst, masterProbe)
		if onlyFormer && (!former || beingRepointed(p.m.GetFailover(), r.GetAddress())) {
			continue
		}
		act := failover.Heal(failover.HealInput{
			MasterHost: host, MasterPort: port, Master: masterProbe, MasterSDown: masterDown,
			Host: rh, Port: rp, Instance: inst, InstanceLastDown: p.l.lastEntered(r.GetAddress()),
			FailoverTimeout: p.failoverTimeout(), Now: p.now, FormerMaster: former,
		})
		if act.Kind == failover.NoAction || !p.l.dueEvery("heal", r.GetAddress(), p.now, healEvery(former)) {
			continue
		}
		if err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_RecordRepair{RecordRepair: &fsmv1.RecordRepair{
			Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Address: r.GetAddress(), Event: "+" + act.Kind.String(), Reason: act.Reason}}}); err != nil {
			return err
		}
		if err := p.replicaOf(r.GetAddress(), host, port); err != nil {
			p.l.cfg.Log.Warn("repair", "replica", r.GetAddress(), "action", act.Kind.String(), "err", err)
			continue
		}
		p.l.cfg.Log.Info("repaired", "master", p.m.GetName(), "replica", r.GetAddress(), "action", act.Kind.String(), "reason", act.Reason)
	}
	return nil
}

func (p *pass) abort(event, reason string) error {
	p.l.cfg.Log.Warn("failover aborted", "master", p.m.GetName(), "event", event, "reason", reason)
	return p.commit(&fsmv1.Command{Kind: &fsmv1.Command_AbortFailover{AbortFailover: &fsmv1.AbortFailover{
		Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Event: event, Reason: reason}}})
}

func (p *pass) commitPromoted(cand string) error {
	p.l.cfg.Log.Info("promoted", "master", p.m.GetName(), "new_address", cand, "epoch", p.m.GetEpoch()+1)
	if err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_Promoted{Promoted: &fsmv1.Promoted{
		Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Address: cand}}}); err != nil {
		return err
	}
	p.l.crash(CrashAfterPromotion)
	return nil
}
