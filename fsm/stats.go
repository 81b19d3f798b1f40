package fsm

import (
	"strings"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// FailoverEnd is how one failover ended, as recorded in its outcome.
type FailoverEnd struct {
	// Reason is "odown" or "manual".
	Reason string
	// Coordinated is set for a manual failover that handed over (FAILOVER
	// TO, or a write pause) instead of promoting outright.
	Coordinated bool
	// Result is ResultPromoted or ResultAborted.
	Result string
	// Event is the event that closed the journal: +failover-end (also
	// after +failover-end-for-timeout) or a -failover-abort-* event.
	Event string
}

// countEndsLocked counts the failovers that events close. A journal closes
// with +failover-end or a -failover-abort-* event, in the same command that
// records its outcome, so the master's LastFailover describes it.
func (f *FSM) countEndsLocked(index uint64, events []*fsmv1.Event) {
	if index <= f.countAfter {
		return
	}
	for _, e := range events {
		if e.GetType() != "+failover-end" && !strings.HasPrefix(e.GetType(), "-failover-abort-") {
			continue
		}
		o := f.state.GetMasters()[e.GetMaster()].GetLastFailover()
		if o == nil {
			continue
		}
		if f.ends == nil {
			f.ends = map[FailoverEnd]uint64{}
		}
		f.ends[FailoverEnd{Reason: o.GetReason(), Coordinated: o.GetCoordinated(), Result: o.GetResult(), Event: e.GetType()}]++
	}
}

// CountEndsAfter makes FailoverEnds count only the log entries above
// index. A node passes the last index its log held when it started: those
// entries are replayed, and their failovers were counted by the process
// that applied them first.
func (f *FSM) CountEndsAfter(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.countAfter = index
}

// FailoverEnds counts the failovers whose end this node applied, by how
// they ended. Every node that applies the same entries counts the same.
// The counts are not replicated state: they start at zero with the
// process, and a snapshot installed from the leader adds nothing.
func (f *FSM) FailoverEnds() map[FailoverEnd]uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make(map[FailoverEnd]uint64, len(f.ends))
	for k, v := range f.ends {
		out[k] = v
	}
	return out
}
