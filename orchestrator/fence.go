package orchestrator

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const (
	// fenceInfoEvery is how often the leader reads the master's INFO
	// itself to keep its fence in step with its replicas: a replica crash
	// makes the master refuse writes at once, until the fence is lowered.
	fenceInfoEvery = 250 * time.Millisecond
	// fenceInfoTimeout bounds that read; a master that does not answer is
	// left alone (its probes decide whether it is down).
	fenceInfoTimeout = 250 * time.Millisecond
	// fenceApplyEvery spaces out re-applying an unchanged fence (a master
	// restarted without a config file forgets it).
	fenceApplyEvery = 5 * time.Second
	// demoteTimeout bounds the attempt to demote an old master before a
	// promotion is announced; the leader's step waits for it.
	demoteTimeout = 500 * time.Millisecond
)

func fenceLagS(m *fsmv1.Master) int64 {
	return int64(fsm.FenceLag(m.GetSettings()) / time.Second)
}

// maintainFence keeps min-replicas-to-write on the current master equal to
// the number of replicas Redis counts as good (failover.DecideFence):
// committed first, then applied with CONFIG SET. It runs outside a failover
// only, on a master this node's probes reach.
func (p *pass) maintainFence() error {
	addr := p.m.GetAddress()
	o, ok := p.obs[addr]
	if !ok || !o.LinkUp || !o.FailingSince.IsZero() {
		return nil
	}
	cur := p.m.GetFence()
	decided := cur != nil && cur.GetAddress() == addr
	if !fsm.FenceOn(p.m.GetSettings()) && (!decided || cur.GetMinReplicas() == 0) {
		return nil
	}
	if !p.l.dueEvery("fence-info", addr, p.now, fenceInfoEvery) {
		return nil
	}
	conn, err := p.instance(addr)
	if err != nil {
		return err
	}
	info, err := p.askFence(conn, fenceInfoTimeout)
	if err != nil || info.Role != probe.RoleMaster || info.Loading {
		return nil
	}
	in := failover.FenceInput{On: fsm.FenceOn(p.m.GetSettings()), LagS: fenceLagS(p.m), Decided: decided,
		MinReplicas: cur.GetMinReplicas(), MaxLagS: cur.GetMaxLagS()}
	for _, r := range info.ConnectedReplicas {
		in.Replicas = append(in.Replicas, failover.FenceReplica{Addr: net.JoinHostPort(r.IP, strconv.Itoa(r.Port)),
			Online: r.State == "online", Lag: r.Lag})
	}
	d := failover.DecideFence(in)
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
	} else if !decided || !p.l.dueEvery("fence-apply", addr, p.now, fenceApplyEvery) {
		return nil
	}
	return p.act(actionTimeout, func(ctx context.Context) error {
		return conn.SetFence(ctx, int(d.MinReplicas), d.MaxLagS)
	})
}

// unfenceCandidate sets min-replicas-to-write 0 on the candidate before
// its promotion, so the new master never answers NOREPLICAS; its fence
// rises once its replicas are attached (maintainFence, after the
// failover). Part of the committed promotion decision.
func (p *pass) unfenceCandidate(conn Instance) error {
	return p.act(actionTimeout, func(ctx context.Context) error { return conn.SetFence(ctx, 0, fenceLagS(p.m)) })
}

// reachOldMaster tries to demote the old master (REPLICAOF the candidate,
// which already reports role master) before the promotion is announced.
func (p *pass) reachOldMaster(old, cand string) (failover.OldMasterReach, error) {
	host, port, err := splitHostPort(cand)
	if err != nil {
		return failover.OldMasterUnknown, err
	}
	conn, err := p.instance(old)
	if err != nil {
		return failover.OldMasterUnknown, err
	}
	// act confirms leadership and TILT first; failing those counts as
	// not reached, which only makes the failover wait.
	err = p.act(demoteTimeout, func(ctx context.Context) error { return p.repoint(ctx, conn, host, port) })
	switch {
	case err == nil:
		return failover.OldMasterDemoted, nil
	case probe.IsRefused(err):
		return failover.OldMasterRefused, nil
	}
	p.l.cfg.Log.Info("old master not reached before announcing the promotion", "master", p.m.GetName(), "old_master", old, "err", err)
	return failover.OldMasterUnknown, nil
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
			reach, err := p.reachOldMaster(f.GetOldMaster(), f.GetCandidate())
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
		DetachedAt: p.now}
	if fence != nil && fence.GetAddress() == f.GetOldMaster() {
		in.MinReplicas, in.LagS = fence.GetMinReplicas(), fence.GetMaxLagS()
	}
	if in.On && in.MinReplicas > 0 {
		reach, err := p.reachOldMaster(f.GetOldMaster(), f.GetCandidate())
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
