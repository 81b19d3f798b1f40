package orchestrator

import (
	"context"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const (
	// fenceReadGap is the least time between two reads of one master's
	// fence, however often its group's observations change.
	fenceReadGap = 50 * time.Millisecond
	// fenceInfoTimeout bounds that read; a master that does not answer is
	// left alone (its probes decide whether it is down).
	fenceInfoTimeout = 250 * time.Millisecond
	// fenceApplyEvery spaces out re-applying an unchanged fence: only a
	// CONFIG SET by someone else changes it unseen, as INFO shows whether
	// a fence is in force but not which (probe.Info.MinReplicasOn). A
	// master that lost it (a restart without a config file) is seen at
	// the next read and re-applied at most every fenceLostRetry.
	fenceApplyEvery = 30 * time.Second
	fenceLostRetry  = time.Second
	// demoteTimeout bounds the attempt to demote an old master before a
	// promotion is announced; the leader's step waits for it.
	demoteTimeout = 500 * time.Millisecond
	// catchUpPolls: an automatic failover waits, before its promotion, at
	// most this many HandoverPollFor (1 s by default) for the candidate to
	// reach the offset of an old master that answered the write pause
	// (catchUpBeforePromotion): long enough for one healed moment of a
	// flapping link, short against the fence wait it can save.
	// The same span bounds how long the leader keeps trying (demoteTimeout
	// each, catchUpRetry apart) to pause an old master that does not
	// answer before it promotes blind: a link that flaps answers within a
	// second; on a link that is down it delays the candidate's
	// detachment, and the announcement, by as much.
	catchUpPolls = 2
	catchUpRetry = 100 * time.Millisecond
)

func (p *pass) catchUpFor() time.Duration { return catchUpPolls * p.l.cfg.HandoverPollFor }

func fenceLagS(m *fsmv1.Master) int64 {
	return int64(fsm.FenceLag(m.GetSettings()) / time.Second)
}

// ReadsFence reports whether the leader reads master m's replicas for its
// fence: fence on, or a fence still set on its current address.
func ReadsFence(m *fsmv1.Master) bool {
	cur := m.GetFence()
	return fsm.FenceOn(m.GetSettings()) || (cur != nil && cur.GetAddress() == m.GetAddress() && cur.GetMinReplicas() > 0)
}

// maintainFence keeps min-replicas-to-write on the current master equal to
// the number of replicas Redis counts as good (failover.DecideFence):
// committed first, then applied with CONFIG SET. It runs outside a failover
// only, on a master this node's probes reach.
func (p *pass) maintainFence() error {
	o, ok := p.obs.get(p.m.GetAddress())
	plan, work := p.planFence(o.Link(), ok, inputsOf(p.m, groupAddrs(p.m), p.obs.get).changes)
	if !work {
		return nil
	}
	return p.fenceIO(plan)
}

// fencePlan is what planFence left to do on one read of a master's fence,
// all of it I/O: read the master directly (direct), or commit and apply
// the decision d that the INFO carried by a PING gave.
type fencePlan struct {
	read   fenceTake
	direct bool
	info   probe.Info
	in     failover.FenceInput
	d      failover.FenceDecision
}

// planFence is maintainFence without I/O, given the master's link as its
// probe left it (seen false: not observed) and the group's ChangeGens: it
// takes the fence's read if one is due, decides on the INFO a PING carried
// when that is recent enough, and schedules the next read. work is false
// when nothing is left to do, which is what a steady master's read comes
// to nearly always: the leader's loop then runs it inline (Step), without
// handing a worker a pass.
func (p *pass) planFence(link probe.Link, seen bool, changes []uint64) (plan fencePlan, work bool) {
	if !seen || !link.Up || !link.FailingSince.IsZero() {
		// A probe that failed was recorded by Step (noteLinkFailure),
		// at every tick, whether this pass runs or not.
		return plan, false
	}
	if !ReadsFence(p.m) {
		return plan, false
	}
	read, ok := p.l.takeFenceRead(p.m, link, changes, p.now)
	if !ok {
		return plan, false
	}
	plan.read = read
	if read.carried == nil {
		plan.direct = true
		return plan, true
	}
	// The INFO read along with the leader's last PING of the master. Its
	// next read counts from that PING; one that is due already is made
	// now, directly.
	var usable bool
	plan.info = *read.carried
	plan.in, plan.d, usable = p.decideFence(plan.info)
	if !usable || !read.at.Add(failover.NextFenceRead(plan.in, plan.d)).After(p.now) {
		plan.read = fenceTake{at: p.now}
		plan.direct = true
		return plan, true
	}
	return plan, p.fenceDecided(plan)
}

// fenceDecided schedules the fence's next read after plan's decision and
// reports whether it is to be committed and applied (a change) or applied
// again (reapplyAfter).
func (p *pass) fenceDecided(plan fencePlan) bool {
	addr := p.m.GetAddress()
	p.l.scheduleFenceRead(addr, plan.read.at, failover.NextFenceRead(plan.in, plan.d))
	return plan.d.Change || (plan.in.Decided && p.l.dueEvery("fence-apply", addr, p.now, reapplyAfter(plan.info, plan.d)))
}

// fenceIO does what planFence left to do.
func (p *pass) fenceIO(plan fencePlan) error {
	addr := p.m.GetAddress()
	conn, err := p.instance(addr)
	if err != nil {
		return err
	}
	if plan.direct {
		info, err := p.askFence(conn, fenceInfoTimeout)
		var usable bool
		if err == nil {
			plan.info = info
			plan.in, plan.d, usable = p.decideFence(info)
		}
		if !usable {
			p.l.scheduleFenceRead(addr, plan.read.at, failover.FenceReadMin)
			return nil
		}
		if !p.fenceDecided(plan) {
			return nil
		}
	}
	d := plan.d
	if d.Change {
		p.l.cfg.Log.Info("fence", "master", p.m.GetName(), "address", addr, "min_replicas", d.MinReplicas, "max_lag_s", d.MaxLagS, "reason", d.Reason)
		if err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_FenceSet{FenceSet: &fsmv1.FenceSet{Master: p.m.GetName(),
			ExpectedEpoch: p.m.GetEpoch(), Address: addr, MinReplicas: d.MinReplicas, MaxLagS: d.MaxLagS, Reason: d.Reason}}}); err != nil {
			if fsm.IsFormatRefusal(err) {
				// A voter runs a binary from before fencing: the fence
				// stays off until the rolling upgrade is done.
				return nil
			}
			return err
		}
		p.l.dueEvery("fence-apply", addr, p.now, 0) // apply now, below
	}
	if p.fenceInForce(conn, d) {
		return nil
	}
	return p.act(actionTimeout, func(ctx context.Context) error {
		return conn.SetFence(ctx, int(d.MinReplicas), d.MaxLagS)
	})
}

// fenceInForce reads whether the master holds the fence d already, before
// it is set: one applied again every fenceApplyEvery nearly always is, and
// the read needs no leadership check where the CONFIG SET does (one Raft
// round trip to every follower per master every fenceApplyEvery: 33 a
// second at 1,000 masters). A failed read says no, and the SET decides.
func (p *pass) fenceInForce(conn Instance, d failover.FenceDecision) bool {
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	has, err := conn.HasFence(ctx, int(d.MinReplicas), d.MaxLagS)
	return err == nil && has
}

// reapplyAfter is how long after its last application the unchanged fence
// d is applied again, given the master's INFO: fenceLostRetry when INFO
// shows the master lost it (or holds one where d has none),
// fenceApplyEvery otherwise.
func reapplyAfter(info probe.Info, d failover.FenceDecision) time.Duration {
	if info.MinReplicasOn != (d.MinReplicas > 0 && d.MaxLagS > 0) {
		return fenceLostRetry
	}
	return fenceApplyEvery
}

// decideFence decides the fence on the master's INFO; usable is false when
// that INFO cannot say (not a master, or loading).
func (p *pass) decideFence(info probe.Info) (in failover.FenceInput, d failover.FenceDecision, usable bool) {
	if info.Role != probe.RoleMaster || info.Loading {
		return in, d, false
	}
	addr := p.m.GetAddress()
	cur := p.m.GetFence()
	p.l.mu.Lock()
	failed, seen := p.l.linkFailed[addr]
	p.l.mu.Unlock()
	in = failover.FenceInput{On: fsm.FenceOn(p.m.GetSettings()), LagS: fenceLagS(p.m), Decided: cur != nil && cur.GetAddress() == addr,
		MinReplicas: cur.GetMinReplicas(), MaxLagS: cur.GetMaxLagS(), Unsteady: seen && p.now.Sub(failed) < failover.FenceSteadyFor}
	for _, r := range info.ConnectedReplicas {
		in.Replicas = append(in.Replicas, failover.FenceReplica{Addr: net.JoinHostPort(r.IP, strconv.Itoa(r.Port)),
			Online: r.State == "online", Lag: r.Lag})
	}
	return in, failover.DecideFence(in), true
}

// fenceRead is the schedule of the leader's reads of one master's fence.
type fenceRead struct {
	at   time.Time // the last read began
	next time.Time // the next one is due
	// changes are the group's ChangeGens at the last read (inputsOf): a
	// routine INFO read of a replica, which shows nothing the master's
	// own INFO would not, does not hurry the next read.
	changes []uint64
}

// dueAt is when the next read is due with the group's ChangeGens at
// changes: at the period, or fenceReadGap after the last read when an
// observation changed since it.
func (r fenceRead) dueAt(changes []uint64) time.Time {
	if gap := r.at.Add(fenceReadGap); gap.Before(r.next) && !slices.Equal(changes, r.changes) {
		return gap
	}
	return r.next
}

// fenceTake is a read of a master's fence that takeFenceRead began: of
// carried, the INFO read with the leader's PING at at, or, when carried is
// nil, a read of the master's INFO to make now (at).
type fenceTake struct {
	at      time.Time
	carried *probe.Info
}

// takeFenceRead reports whether master m's fence is to be read at now,
// and if so records the read as begun. A read is due at its period
// (scheduleFenceRead, failover.NextFenceRead), and at once, at most every
// fenceReadGap, when an instance of the group has a new observation: a
// replica whose connection closed (a crash) was dropped by the master at
// once, which refuses writes until the fence is lowered, and the leader's
// probe of that replica saw the same closed connection.
//
// When the leader's probe read the master's INFO with a PING since the
// last read (probe.Target.ReplicationWithPing) and no observation of the
// group changed since, that INFO is the read, due or not: it costs no
// round trip, and reading more often is never less safe. After an
// observation changed, the INFO carried by an earlier PING may predate
// what changed (a replica's crash), so the master is read directly.
func (l *Leader) takeFenceRead(m *fsmv1.Master, link probe.Link, changes []uint64, now time.Time) (fenceTake, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	addr := m.GetAddress()
	if r, ok := l.fenceReads[addr]; ok && !now.Before(r.at) {
		if link.Replication != nil && link.ReplicationAt.After(r.at) && !link.ReplicationAt.After(now) && slices.Equal(changes, r.changes) {
			l.fenceReads[addr] = fenceRead{at: link.ReplicationAt, next: link.ReplicationAt.Add(failover.FenceReadMin), changes: changes}
			return fenceTake{at: link.ReplicationAt, carried: link.Replication}, true
		}
		if now.Before(r.dueAt(changes)) {
			return fenceTake{}, false
		}
	}
	// Until the read says otherwise, the next is due at the shortest period.
	l.fenceReads[addr] = fenceRead{at: now, next: now.Add(failover.FenceReadMin), changes: changes}
	return fenceTake{at: now}, true
}

// scheduleFenceRead sets when master addr's next fence read is due: after,
// counted from start, when the read it follows began (the pass that read
// it, or the PING that carried it).
func (l *Leader) scheduleFenceRead(addr string, start time.Time, after time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.fenceReads[addr]; ok {
		r.at, r.next = start, start.Add(after)
		l.fenceReads[addr] = r
	}
}

// refuses reports whether a new connection to conn is refused (see
// probe.Conn.RefusesConnections), within demoteTimeout.
func (p *pass) refuses(conn Instance) bool {
	ctx, cancel := context.WithTimeout(p.ctx, demoteTimeout)
	defer cancel()
	return conn.RefusesConnections(ctx)
}

// catchUpBeforePromotion is the coordinated switchover's handover, made
// short and optional, for an automatic failover whose old master still
// answers: a link that flaps (or a master that answers some probes but not
// for down-after) is failed over with the old master alive and taking
// writes, and the candidate may lack the last of them. Before the
// promotion the leader pauses writes on the old master (CLIENT PAUSE
// WRITE, tried for up to catchUpFor), reads its offset and polls the
// candidate until it has that offset (at most catchUpFor). Whatever
// happens, the promotion follows: an old master that does not answer, a
// server that refuses the pause, or a candidate that does not catch up in
// time leave the failover on its blind path (promote, demote or wait for
// the fence), so this only ever adds at most 2 x catchUpFor +
// demoteTimeout + fenceInfoTimeout before the promotion (catchUpFor +
// demoteTimeout where the old master does not answer; nothing where it
// refuses connections). The pause outlasts
// the promotion and the fence wait, so that a paused old master takes no
// write until it is demoted (then unpaused) or its fence has closed; it
// is not in the journal: a leader that dies leaves it to end by itself.
func (p *pass) catchUpBeforePromotion(f *fsmv1.Failover, candConn Instance) {
	old := f.GetOldMaster()
	oldConn, err := p.instance(old)
	if err != nil {
		return
	}
	// Tried first, before any leadership check: at a mass failure most
	// old masters are dead, and the check was a tenth of a second each.
	if p.refuses(oldConn) {
		p.l.cfg.Log.Info("old master refuses connections: promoting without catch-up", "master", p.m.GetName(), "old_master", old)
		return
	}
	lag := time.Duration(fenceLagS(p.m)) * time.Second
	pause := 2*p.catchUpFor() + demoteTimeout + fenceInfoTimeout + 2*actionTimeout + lag + failover.FenceSlack
	// Recorded before trying: a pause that timed out here may still reach
	// the old master (a frozen one reads it when it resumes), and the
	// demotion then releases it too.
	p.l.mu.Lock()
	p.l.caughtUpPaused[p.m.GetName()] = f.GetStartedAtUnixNanos()
	p.l.mu.Unlock()
	started := time.Now()
	for {
		tried := time.Now()
		err = p.act(demoteTimeout, func(ctx context.Context) error { return oldConn.PauseWrites(ctx, pause) })
		if err == nil || probe.IsRefused(err) || isRefused(err) || time.Since(started)+catchUpRetry > p.catchUpFor() {
			break
		}
		if sleepCtx(p.ctx, time.Until(tried.Add(catchUpRetry))) != nil {
			break
		}
	}
	if err != nil {
		p.l.cfg.Log.Info("old master not paused before the promotion: promoting without catch-up", "master", p.m.GetName(), "old_master", old,
			"tried_for", time.Since(started).Round(time.Millisecond), "err", err)
		return
	}
	info, err := p.ask(oldConn, fenceInfoTimeout)
	if err != nil || info.Role != probe.RoleMaster {
		p.l.cfg.Log.Info("paused old master's offset not read: promoting without catch-up", "master", p.m.GetName(), "old_master", old, "role", info.Role, "err", err)
		return
	}
	if p.pollCaughtUp(candConn, info.MasterReplOffset, p.catchUpFor()) {
		p.l.cfg.Log.Info("candidate caught up with the paused old master before its promotion", "master", p.m.GetName(), "old_master", old,
			"candidate", f.GetCandidate(), "offset", info.MasterReplOffset, "took", time.Since(started).Round(time.Millisecond))
		return
	}
	p.l.cfg.Log.Warn("candidate did not reach the paused old master's offset in time: promoting anyway (the writes it lacks are lost)",
		"master", p.m.GetName(), "old_master", old, "candidate", f.GetCandidate(), "offset", info.MasterReplOffset, "within", p.catchUpFor())
}

// reachOldMaster tries to demote the old master (REPLICAOF the candidate,
// which already reports role master) before the promotion is announced.
// verify, when above zero, is the leadership check's own budget (actWithin);
// at zero the check shares demoteTimeout with the command.
func (p *pass) reachOldMaster(old, cand string, verify time.Duration) (failover.OldMasterReach, error) {
	host, port, err := splitHostPort(cand)
	if err != nil {
		return failover.OldMasterUnknown, err
	}
	conn, err := p.instance(old)
	if err != nil {
		return failover.OldMasterUnknown, err
	}
	// Whether its port refuses connections is an observation, which
	// needs neither a leadership check nor leaving TILT: a dead old
	// master then costs no fence wait, even when many failovers at once
	// on a loaded machine make the checks slow (and a stalled loop TILT).
	// A node that no longer leads cannot commit the announcement anyway.
	if p.refuses(conn) {
		return failover.OldMasterRefused, nil
	}
	// act confirms leadership and TILT first; failing those counts as
	// not reached, which only makes the failover wait.
	err = p.actWithin(verify, demoteTimeout, func(ctx context.Context) error { return p.repoint(ctx, conn, host, port) })
	switch {
	case err == nil:
		p.releaseCatchUpPause(conn)
		return failover.OldMasterDemoted, nil
	case probe.IsRefused(err):
		return failover.OldMasterRefused, nil
	}
	p.l.cfg.Log.Info("old master not reached before announcing the promotion", "master", p.m.GetName(), "old_master", old, "err", err)
	return failover.OldMasterUnknown, nil
}

// releaseCatchUpPause unpauses a demoted old master that this leader
// tried to pause for the current failover (catchUpBeforePromotion): it is
// a replica now, so writes fail with READONLY rather than wait.
func (p *pass) releaseCatchUpPause(oldConn Instance) {
	started := p.m.GetFailover().GetStartedAtUnixNanos()
	p.l.mu.Lock()
	paused := started != 0 && p.l.caughtUpPaused[p.m.GetName()] == started
	delete(p.l.caughtUpPaused, p.m.GetName())
	p.l.mu.Unlock()
	if paused {
		p.unpause(oldConn)
	}
}

// fenceBeforeAnnounce is called once the candidate reports role master. It
// returns true when the promotion may be committed (announced) now; false
// while the failover waits for the old master's fence (+fence-wait).
func (p *pass) fenceBeforeAnnounce(f *fsmv1.Failover) (bool, error) {
	if w := f.GetFenceWait(); w != nil {
		until := time.Unix(0, w.GetUntilUnixNanos())
		if !p.now.Before(until) {
			return true, nil
		}
		// The old master may come back within reach meanwhile: demoting
		// it ends the wait early. Not in the wait's last moments, where
		// the attempt would only delay the announcement.
		if until.Sub(p.now) > 2*demoteTimeout && p.l.due("fence-demote", f.GetOldMaster(), p.now) {
			reach, err := p.reachOldMaster(f.GetOldMaster(), f.GetCandidate(), 0)
			if err != nil {
				return false, err
			}
			if reach != failover.OldMasterUnknown {
				return true, nil
			}
		}
		return false, nil
	}
	fence := p.m.GetFence()
	in := failover.FenceWaitInput{On: fsm.FenceOn(p.m.GetSettings()), LagS: fenceLagS(p.m), Others: max(len(p.m.GetReplicas())-1, 0),
		DetachedAt: maxTime(p.now, p.promotedAt)}
	if fence != nil && fence.GetAddress() == f.GetOldMaster() {
		in.MinReplicas, in.LagS = fence.GetMinReplicas(), fence.GetMaxLagS()
	}
	if in.On && in.MinReplicas > 0 {
		// The leadership check has a budget of its own here, so that a
		// slow one (a loaded machine, many failovers at once) does not
		// leave the demotion no time: an old master whose connection is
		// refused then costs no fence wait.
		reach, err := p.reachOldMaster(f.GetOldMaster(), f.GetCandidate(), actionTimeout)
		if err != nil {
			return false, err
		}
		in.Reach = reach
		p.l.due("fence-demote", f.GetOldMaster(), p.now)
	}
	d := failover.DecideFenceWait(in)
	if !d.Wait {
		p.l.cfg.Log.Info("no fence wait", "master", p.m.GetName(), "reason", d.Reason)
		return true, nil
	}
	p.l.cfg.Log.Warn("+fence-wait", "master", p.m.GetName(), "until", d.Until, "reason", d.Reason, "proven", d.Proven)
	err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_FenceWaitStarted{FenceWaitStarted: &fsmv1.FenceWaitStarted{
		Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), UntilUnixNanos: d.Until.UnixNano(), Reason: d.Reason}}})
	if fsm.IsFormatRefusal(err) {
		// A voter runs a binary from before fencing: announce without the
		// wait, as that binary would, rather than never.
		p.l.cfg.Log.Warn("no fence wait: not every voter understands it yet", "master", p.m.GetName(), "err", err)
		return true, nil
	}
	return false, err
}

// sleepCtx waits d (nothing when d <= 0) or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
