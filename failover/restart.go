package failover

import (
	"sort"
	"strconv"
	"time"
)

// EmptyRestartWindow bounds how long after a restart EmptyRestart still
// applies. Replicas reconnect within a second and an empty dataset is sent
// in no time, so a replica that still holds another history this long
// after the restart is not about to resync from the empty master: it is
// following something else, or failing to sync for another reason. The
// bound is Redis's default repl-timeout.
const EmptyRestartWindow = time.Minute

// EmptyRestartInput describes a recorded master and its replicas outside a
// failover, for EmptyRestart.
type EmptyRestartInput struct {
	// MasterHost and MasterPort are the recorded master's address; only
	// replicas that follow it can lose their data to it.
	MasterHost string
	MasterPort int
	// Master is what this node observed of the recorded master.
	Master Probe
	// RecordedRunID is the master's run id as last committed; a different
	// run id in Master is a restart even if this node's probe did not see
	// the change itself (Master.RebootedAt).
	RecordedRunID string
	// Replicas are the recorded replicas, read after the restart was seen:
	// their offsets, replication ids and key counts say what they hold.
	Replicas []Candidate
	// DownAfter is the master's down-after setting (for the ranking's
	// master-link rule).
	DownAfter time.Duration
	// Now is the decision time.
	Now time.Time
}

// EmptyRestartDecision is EmptyRestart's answer.
type EmptyRestartDecision struct {
	// Failover is true when the master must be replaced by Choice.Winner.
	Failover bool
	// Reason says in words why, or why not.
	Reason string
	// Holding lists, sorted, the replicas that hold data the restarted
	// master cannot give back; empty when the rule does not apply.
	Holding []string
	// Choice ranks the holding replicas (SelectReplica); Winner is valid
	// when Failover.
	Choice Choice
}

// EmptyRestart decides whether a master that answers PING must still be
// failed over because it restarted empty behind its replicas. Raftinel's
// own rule; Sentinel has none (its documentation only warns against
// restarting a master without persistence automatically).
//
// A master that restarts without persistence comes back with no keys and a
// new replication id at offset 0. Its replicas reconnect (Redis retries
// once a second), cannot continue that history with a partial resync, and
// take a full resync that replaces their dataset with the empty one. Once
// that has happened nothing is left to save, so the rule looks for the
// moment in between. The master is failed over when all of these hold:
//
//   - it reports role master and restarted less than EmptyRestartWindow
//     ago: Master.RebootedAt, or now when its run id differs from
//     RecordedRunID;
//   - it has finished loading (INFO persistence's loading:0) and INFO
//     keyspace was read and shows no key at all (a master restarted from
//     an RDB or AOF file has its keys and is kept, even when they are
//     older than the replicas' data);
//   - at least one replica that follows the master (MasterHost, MasterPort)
//     holds data the master cannot give back (holdsLostData): it has keys
//     and cannot continue the master's
//     replication history (typically: the master's new id at offset 0,
//     the replica's old id far ahead);
//   - one of those replicas passes SelectReplica's rules (the master is not
//     down, so the 30 s INFO staleness limit applies, and no lag limit:
//     any data beats none). It is the winner.
//
// The input should be read after the restart: a replica that has already
// resynced from the empty master reports the master's new replication id
// and no keys, and no longer counts.
func EmptyRestart(in EmptyRestartInput) EmptyRestartDecision {
	m := in.Master
	if m.InfoAt.IsZero() || m.Role != RoleMaster {
		return EmptyRestartDecision{Reason: "no INFO of the master as master"}
	}
	restartAt := m.RebootedAt
	if in.RecordedRunID != "" && m.RunID != "" && in.RecordedRunID != m.RunID {
		// The record is older than this observation: this is the first
		// pass to see the new run id.
		restartAt = in.Now
	}
	if restartAt.IsZero() {
		return EmptyRestartDecision{Reason: "no restart seen"}
	}
	if d := in.Now.Sub(restartAt); d > EmptyRestartWindow {
		return EmptyRestartDecision{Reason: "the last restart was " + secs(d) + " ago"}
	}
	if m.Loading {
		// Until the load ends, an RDB or AOF master shows few or no keys
		// and a new replication id, as an empty one does.
		return EmptyRestartDecision{Reason: "the master is still loading its data"}
	}
	if !m.KeysKnown {
		return EmptyRestartDecision{Reason: "the master's keyspace is unknown"}
	}
	if m.Keys > 0 {
		return EmptyRestartDecision{Reason: "the master restarted with " + strconv.FormatInt(m.Keys, 10) + " keys: kept"}
	}
	var holding []Candidate
	var names []string
	for _, c := range in.Replicas {
		follows := c.Probe.MasterPort == in.MasterPort && compareFold(c.Probe.MasterHost, in.MasterHost) == 0
		if follows && holdsLostData(m, c.Probe) {
			holding = append(holding, c)
			names = append(names, c.Addr)
		}
	}
	sort.Strings(names)
	if len(holding) == 0 {
		return EmptyRestartDecision{Reason: "the master restarted empty, but no replica holds data it cannot continue"}
	}
	ch := SelectReplica(Selection{Replicas: holding, DownAfter: in.DownAfter, Now: in.Now})
	d := EmptyRestartDecision{Holding: names, Choice: ch}
	if !ch.OK {
		d.Reason = "the master restarted empty behind its replicas, but none of those holding data can be promoted"
		return d
	}
	d.Failover = true
	d.Reason = "the master restarted empty with a new replication history; " + ch.Winner + " holds " +
		strconv.FormatInt(winnerProbe(holding, ch.Winner).Keys, 10) + " keys up to offset " +
		strconv.FormatInt(winnerProbe(holding, ch.Winner).Offset, 10)
	return d
}

func winnerProbe(cs []Candidate, addr string) Probe {
	for _, c := range cs {
		if c.Addr == addr {
			return c.Probe
		}
	}
	return Probe{}
}

// holdsLostData reports whether replica r would lose data by resyncing from
// master m: it has keys and cannot continue m's replication history with a
// partial resync (Continues is false: it is ahead of m, or holds another
// history), so its next sync is a full one that replaces its dataset with
// m's. What is unknown (no keyspace section, no replication id) never
// counts as lost.
func holdsLostData(m, r Probe) bool {
	if r.InfoAt.IsZero() || !r.KeysKnown || r.Keys == 0 || r.ReplID == "" || m.ReplID == "" {
		return false
	}
	return !Continues(m, r)
}

// Continues reports whether a replica holding replication id r.ReplID up to
// offset r.Offset can go on from master m with a partial resync, as Redis's
// PSYNC decides it (leaving out the backlog's size, which INFO does not
// show): the replica's id is m's current one, or m's previous one (ReplID2)
// and the replica is not past where m switched (ReplID2Offset, the first
// offset m no longer shares); and the replica is not ahead of m.
func Continues(m, r Probe) bool {
	if r.Offset > m.Offset {
		return false
	}
	if r.ReplID == m.ReplID {
		return true
	}
	return m.ReplID2 != "" && r.ReplID == m.ReplID2 && r.Offset+1 <= m.ReplID2Offset
}
