package orchestrator

import (
	"fmt"
	"time"

	"github.com/raftinel/raftinel/failover"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Explain says what this leader would do now for m, or, with manual set,
// what that manual failover would do (failover.Explain), from the same
// observations and clock its passes use.
func (l *Leader) Explain(m *fsmv1.Master, manual *failover.ManualRequest) failover.Explanation {
	return ExplainFrom(m, l.cfg.Observe, l.cfg.Now(), manual)
}

// ExplainFrom is Explain from any node's observations: a follower uses it
// when no leader can be reached, to show at least its own view.
func ExplainFrom(m *fsmv1.Master, obs Observer, now time.Time, manual *failover.ManualRequest) failover.Explanation {
	p := &pass{m: m, obs: newView(obs.Observation), now: now}
	s := m.GetSettings()
	in := failover.ExplainInput{
		Now: now, MasterAddr: m.GetAddress(), Tilt: obs.Tilt(), Quorum: int(s.GetQuorum()), VoteFreshness: VoteFreshness,
		Maintenance: s.GetMaintenance(), FailoverTimeout: p.failoverTimeout(), Selection: p.selection(), Manual: manual,
	}
	for _, v := range m.GetVotes() {
		in.Votes = append(in.Votes, failover.ExplainVote{Node: v.GetNodeId(), Address: v.GetAddress(), Down: v.GetDown(),
			At: time.Unix(0, v.GetAtUnixNanos()), Reason: v.GetReason()})
	}
	if at := m.GetOdownSinceUnixNanos(); m.GetOdown() && at != 0 {
		in.ODownSince = time.Unix(0, at)
	}
	if at := m.GetLastFailoverAtUnixNanos(); at != 0 {
		in.LastFailoverAt = time.Unix(0, at)
	}
	if p.sdown(m.GetAddress(), true) {
		in.MasterSDown = true
		in.MasterDownAt = failover.SDownSince(p.probeOf(m.GetAddress()), DownAfter(m), now)
	}
	if f := m.GetFailover(); f != nil {
		in.InProgress = phaseName(f.GetPhase()) + ", candidate " + f.GetCandidate()
	}
	ex := failover.Explain(in)
	if pause := m.GetFailover().GetPause(); pause != nil {
		// The only fencing Raftinel does: the write pause of a coordinated
		// handover, committed so a new leader releases it.
		ex.Notes = append(ex.Notes, fmt.Sprintf("writes are paused on the old master %s (CLIENT PAUSE WRITE) until %s, for the candidate to reach offset %d",
			m.GetFailover().GetOldMaster(), time.Unix(0, pause.GetUntilUnixNanos()).UTC().Format(time.RFC3339Nano), pause.GetOffset()))
	}
	return ex
}
