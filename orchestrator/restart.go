package orchestrator

import (
	"fmt"
	"sync"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// restartInfoTimeout bounds the leader's own INFO of each replica when it
// checks an empty restart: short, because the replicas are racing to
// resync from the empty master, and a replica that does not answer in time
// is judged on the probe's last INFO instead.
const restartInfoTimeout = time.Second

// emptyRestart fails the master over when it restarted empty behind its
// replicas (failover.EmptyRestart) and reports whether it began a failover.
//
// The probe's view decides whether to look closer: its INFO of the master
// is fresh (a new connection to a restarted instance triggers one), but its
// INFO of the replicas may be ten seconds old, from before the restart. So
// when that view shows a replica at risk, the leader reads every replica's
// INFO itself and decides on that: final offsets for the ranking, and proof
// that the replicas have not resynced from the empty master yet. The
// failover then runs like any other, except that all replicas and the old
// master are re-pointed at once (parallelSyncs): each one left following
// the empty master can be wiped by its next sync.
func (p *pass) emptyRestart() (bool, error) {
	host, port, err := splitHostPort(p.m.GetAddress())
	if err != nil {
		return false, err
	}
	in := failover.EmptyRestartInput{MasterHost: host, MasterPort: port, Master: p.probeOf(p.m.GetAddress()),
		RecordedRunID: p.m.GetMasterRunId(), DownAfter: DownAfter(p.m), Now: p.now}
	for _, r := range p.m.GetReplicas() {
		in.Replicas = append(in.Replicas, failover.Candidate{Addr: r.GetAddress(), Probe: p.probeOf(r.GetAddress()), SDown: p.sdown(r.GetAddress(), false)})
	}
	if d := failover.EmptyRestart(in); len(d.Holding) == 0 || !p.l.due("empty-restart", p.m.GetAddress(), p.now) {
		return false, nil
	}
	in.Replicas = p.freshCandidates(in.Replicas)
	d := failover.EmptyRestart(in)
	if !d.Failover {
		p.l.cfg.Log.Warn("the master restarted empty, not failing over", "master", p.m.GetName(), "reason", d.Reason,
			"holding", fmt.Sprint(d.Holding), "rejected", fmt.Sprint(d.Choice.Rejected))
		return false, nil
	}
	var winner failover.Probe
	for _, c := range in.Replicas {
		if c.Addr == d.Choice.Winner {
			winner = c.Probe
		}
	}
	begin := &fsmv1.BeginFailover{Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Reason: fsm.ReasonEmptyRestart,
		Candidate: d.Choice.Winner, EmptyRestart: &fsmv1.EmptyRestart{RunId: in.Master.RunID, MasterOffset: in.Master.Offset,
			ReplicaOffset: winner.Offset, ReplicaKeys: winner.Keys}}
	for _, r := range d.Choice.Rejected {
		begin.Rejected = append(begin.Rejected, &fsmv1.Rejection{Address: r.Addr, Reason: r.Reason})
	}
	p.l.cfg.Log.Warn("starting failover", "master", p.m.GetName(), "reason", fsm.ReasonEmptyRestart, "why", d.Reason,
		"candidate", begin.Candidate, "holding", fmt.Sprint(d.Holding), "rejected", fmt.Sprint(d.Choice.Rejected))
	if err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: begin}}); err != nil {
		return false, err
	}
	p.l.crash(CrashAfterElection)
	return true, nil
}

// freshCandidates replaces each candidate's INFO with one the leader reads
// now, all replicas at once; a replica that does not answer keeps the
// probe's view.
func (p *pass) freshCandidates(cs []failover.Candidate) []failover.Candidate {
	out := make([]failover.Candidate, len(cs))
	copy(out, cs)
	var wg sync.WaitGroup
	for i, c := range cs {
		conn, err := p.instance(c.Addr)
		if err != nil {
			continue
		}
		wg.Go(func() {
			info, err := p.ask(conn, restartInfoTimeout)
			if err != nil {
				p.l.cfg.Log.Debug("INFO of a replica for the empty-restart check", "replica", c.Addr, "err", err)
				return
			}
			o, ok := p.obs.get(c.Addr)
			if !ok {
				o = probe.Observation{Addr: c.Addr, Since: p.now}
			}
			o.Info, o.InfoAt = &info, p.now
			out[i].Probe = ProbeOf(o, true)
		})
	}
	wg.Wait()
	return out
}

// parallelSyncs is how many replicas a failover re-points at once: the
// master's parallel-syncs, or all of them after an empty restart, where a
// replica left waiting follows the empty master and loses its data at its
// next sync, while one re-pointed early only has a partial resync to do.
func (p *pass) parallelSyncs(f *fsmv1.Failover) int {
	if f.GetReason() == fsm.ReasonEmptyRestart {
		return max(len(f.GetReconf()), 1)
	}
	return int(p.m.GetSettings().GetParallelSyncs())
}
