package server

import (
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// commitTimeout is the leader's Raft CommitTimeout: how long replication
// to a follower may stay idle before the leader sends it an empty
// AppendEntries anyway. hashicorp/raft's default, 50 ms, sends each
// follower one every 50 to 100 ms so that it learns the commit index when
// commits stop: with one monitored master those were half of the
// leader's CPU (1.1 to 1.2% of a core, 0.6% with CommitTimeout 1 s), and
// about 0.3% of a core of its 4.9% at 300. Commits made by apply are
// pushed at once instead (runCommitNudges); the others (membership
// changes, a new leader's barrier) reach the followers within two
// commitTimeouts at most.
const commitTimeout = 500 * time.Millisecond

// nudgeFollowers asks runCommitNudges for a barrier after a commit.
func (s *Server) nudgeFollowers() {
	select {
	case s.nudges <- struct{}{}:
	default: // one is pending already and covers this commit too
	}
}

// runCommitNudges appends a Raft barrier after each commit apply made (one
// per batch when they come faster than a barrier commits): a follower
// learns that an entry is committed from the next AppendEntries, and the
// barrier's is sent at once, so the follower applies the commit about one
// round trip after the leader did, rather than at the next idle
// AppendEntries (commitTimeout). The barrier is no command: the FSMs never
// see it, and it is itself learned as committed at the next entry.
func (s *Server) runCommitNudges() {
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.nudges:
		}
		if cfg := s.raft.GetConfiguration(); cfg.Error() == nil && len(cfg.Configuration().Servers) <= 1 {
			continue // a node alone has no follower to tell
		}
		err := s.raft.Barrier(barrierTimeout).Error()
		if err != nil && !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) && !errors.Is(err, raft.ErrRaftShutdown) {
			s.log.Debug("raft barrier after a commit", "err", err)
		}
	}
}
