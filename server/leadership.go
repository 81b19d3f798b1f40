package server

import (
	"context"
	"time"

	"github.com/raftinel/raftinel/orchestrator"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// barrierTimeout bounds one attempt at raft's Barrier when leadership is
// gained; a failed attempt is retried while this node still leads.
const barrierTimeout = 10 * time.Second

// monitorLeadership runs leadership as a lifecycle, in the style of nomad's
// leader.go: on gaining it, wait for raft's Barrier (every entry of earlier
// terms applied here) and only then start a fresh orchestrator.Leader; on
// losing it, stop that Leader, which cancels its Redis commands and drops
// all its state. raft's LeaderCh keeps only the latest transition, which is
// all this needs.
func (s *Server) monitorLeadership() {
	var term *leadershipTerm
	defer func() { term.revoke(s) }()
	for {
		select {
		case <-s.ctx.Done():
			return
		case leading := <-s.raft.LeaderCh():
			select {
			case s.leadershipChanged <- struct{}{}:
			default:
			}
			term.revoke(s)
			term = nil
			if leading {
				term = &leadershipTerm{}
				var ctx context.Context
				ctx, term.cancel = context.WithCancel(s.ctx)
				s.wg.Go(func() { s.establishLeadership(ctx) })
			}
		}
	}
}

// leadershipTerm is one term of leadership being established or held.
type leadershipTerm struct{ cancel context.CancelFunc }

func (t *leadershipTerm) revoke(s *Server) {
	if t == nil {
		return
	}
	t.cancel()
	s.monitor.dropLeader()
	s.log.Info("leadership lost: failover execution stopped")
}

// establishLeadership waits for the Barrier, then hands the node's loop a
// new Leader. ctx ends when leadership is lost (or the node stops).
func (s *Server) establishLeadership(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.raft.Barrier(barrierTimeout).Error()
		if err == nil {
			break
		}
		s.log.Warn("raft barrier after gaining leadership", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return
	}
	l := orchestrator.Start(ctx, orchestrator.Config{
		Commit:     committer{s},
		Leadership: committer{s},
		Redis:      s.actions,
		Observe:    s.monitor,
		State:      s.fsm,
		Log:        s.log.With("component", "orchestrator"),
		Crash:      s.simulateFailure,
		Hooks:      s.hookRunner,
		HookPolicy: orchestrator.HookPolicy{Timeout: s.cfg.HookTimeout, RetryDelay: s.cfg.HookRetryDelay,
			MaxRetries: s.cfg.HookMaxRetries},
		OnHookRun:    s.metrics.hookRun,
		OnHookGaveUp: s.metrics.hookGaveUp,
	})
	if s.monitor.installLeader(ctx, l) {
		s.log.Info("leadership established: executing failovers")
	}
	if s.cfg.Recover {
		s.pruneDepartedNodes(ctx)
	}
}

// committer gives the orchestrator this node's commit and leadership check.
type committer struct{ s *Server }

func (c committer) Commit(ctx context.Context, cmds ...*fsmv1.Command) (uint64, error) {
	return c.s.applyInOrder(ctx, cmds...)
}

func (c committer) VerifyLeader(ctx context.Context) error {
	f := c.s.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
