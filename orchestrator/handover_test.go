package orchestrator

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const handoverTimeout = 10 * time.Second

// errNoPauseWrite is what a server without CLIENT PAUSE ... WRITE answers
// (Redis 6.0).
var errNoPauseWrite = errors.New("ERR Unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP")

// errNoUnpause is what a server without CLIENT UNPAUSE answers (Redis
// 6.0, which has no CLIENT PAUSE ... WRITE either).
var errNoUnpause = errors.New("ERR Unknown subcommand or wrong number of arguments for 'UNPAUSE'. Try CLIENT HELP")

// refusePause makes the old master a server without the write pause, so
// that the leader falls back to FAILOVER TO.
func (e *env) refusePause() {
	e.redis.setHook(addrM, "PAUSE", func(context.Context) error { return errNoPauseWrite })
	e.redis.setHook(addrM, "UNPAUSE", func(context.Context) error { return errNoUnpause })
}

// pauseCmd is the refused CLIENT UNPAUSE that tells the leader the write
// pause cannot be used, before every FAILOVER TO.
var pauseCmd = redisCmd(addrM, "CLIENT UNPAUSE")

// beginHandover starts a coordinated manual failover of the healthy master
// and checks that r2 was chosen.
func (e *env) beginHandover() {
	e.t.Helper()
	cmd, idx, err := e.leader.BeginManual(e.t.Context(), masterName, e.master(), "", handoverTimeout)
	if err != nil {
		e.t.Fatalf("BeginManual: %v", err)
	}
	b := cmd.GetBeginFailover()
	if b.GetCandidate() != addrR2 || !b.GetCoordinated() || b.GetHandoverTimeoutMs() != handoverTimeout.Milliseconds() || b.GetReason() != "manual" {
		e.t.Fatalf("BeginFailover %v", b)
	}
	if idx != e.fsm.AppliedIndex() || e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER {
		e.t.Fatalf("index %d (applied %d), journal %v", idx, e.fsm.AppliedIndex(), e.master().GetFailover())
	}
}

// handoverCompletes plays Redis finishing FAILOVER: the old master follows
// the candidate, which is master.
func (e *env) handoverCompletes() {
	e.setInfo(addrM, func(in *probe.Info) {
		in.Role, in.MasterHost, in.MasterPort, in.MasterLinkStatus = probe.RoleSlave, "10.0.0.3", 6379, probe.LinkStatusUp
		in.MasterFailoverState = "no-failover"
	})
	e.setInfo(addrR2, func(in *probe.Info) {
		in.Role, in.MasterHost, in.MasterPort, in.MasterLinkStatus = probe.RoleMaster, "", 0, ""
		in.MasterReplOffset, in.SlaveReplOffset = 1000, 0
	})
}

// checkRolledBack checks the state and the instances after a handover that
// did not happen: the old master keeps its role and nobody was promoted.
func (e *env) checkRolledBack() {
	e.t.Helper()
	m := e.master()
	last := m.GetLastFailover()
	if m.GetAddress() != addrM || m.GetEpoch() != 0 || last.GetResult() != fsm.ResultAborted ||
		last.GetEvent() != fsm.EventHandoverTimeout || !last.GetCoordinated() || last.GetCandidate() != addrR2 {
		e.t.Fatalf("after the rollback: address %s epoch %d outcome %v", m.GetAddress(), m.GetEpoch(), last)
	}
	if in := e.info(addrM); in.Role != probe.RoleMaster || e.paused(addrM) {
		e.t.Fatalf("old master: role %s, paused %v", in.Role, e.paused(addrM))
	}
	if in := e.info(addrR2); in.Role != probe.RoleSlave {
		e.t.Fatalf("candidate: role %s", in.Role)
	}
	if n := e.count(0, "redis * REPLICAOF *"); n != 0 {
		e.t.Fatalf("REPLICAOF sent during a rolled-back handover:\n%s", e.dump(0))
	}
	e.noRejections()
}

// A server that refuses the write pause is handed over with Redis's
// FAILOVER TO, the fallback.
func TestCoordinatedHandoverFallback(t *testing.T) {
	e := newEnv(t, nil)
	e.refusePause()
	e.step()
	e.beginHandover()

	// FAILOVER TO the candidate, with the catch-up time that is left.
	from := e.mark()
	e.tick(time.Second)
	if got := e.writes(from); !slices.Equal(got, []string{pauseCmd, redisCmd(addrM, "FAILOVER TO 10.0.0.3 6379 TIMEOUT 9000")}) {
		t.Fatalf("writes %q", got)
	}
	// While Redis runs it, the leader waits.
	from = e.mark()
	e.tick(time.Second)
	e.tick(time.Second)
	if got := e.since(from, "commit ", "redis "); !slices.Equal(got, []string{redisCmd(addrM, "INFO"), redisCmd(addrM, "INFO")}) {
		t.Fatalf("while FAILOVER runs: %q", got)
	}

	e.handoverCompletes()
	from = e.mark()
	e.tick(time.Second)
	e.inOrder(from, redisCmd(addrM, "INFO"), redisCmd(addrR2, "INFO"), "commit Promoted "+addrR2)
	if got := e.writes(from); len(got) != 0 {
		t.Fatalf("writes at the promotion: %q", got)
	}
	f := e.master().GetFailover()
	if e.master().GetAddress() != addrR2 || f.GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS ||
		!slices.ContainsFunc(f.GetReconf(), func(r *fsmv1.ReplicaReconf) bool { return r.GetAddress() == addrM }) {
		t.Fatalf("journal %v", f)
	}

	e.finishFailover()
	e.noRejections()
	if n := e.count(0, "redis * REPLICAOF NO ONE"); n != 0 {
		t.Fatalf("the leader promoted by itself:\n%s", e.dump(0))
	}
	last := e.master().GetLastFailover()
	if last.GetResult() != fsm.ResultPromoted || !last.GetCoordinated() || last.GetEvent() != "+failover-end" || last.GetHandover() != fsm.HandoverFailoverTo {
		t.Fatalf("outcome %v", last)
	}
	for _, a := range []string{addrM, addrR1, addrR3, addrR4} {
		if in := e.info(a); in.Role != probe.RoleSlave || in.MasterHost != "10.0.0.3" {
			t.Fatalf("%s: role %s following %s", a, in.Role, in.MasterHost)
		}
	}
}

// A handover the candidate does not complete within the catch-up time is
// rolled back: AbortFailover with EventHandoverTimeout, the old master
// keeping its role.
func TestHandoverRollback(t *testing.T) {
	cases := []struct {
		name string
		// setup scripts the old master before the handover starts.
		setup func(e *env)
		// each runs before every tick.
		each func(e *env, deadline time.Time)
		// want are the writes to the old master, in order, before the abort.
		want []string
	}{
		{
			name: "Redis ends its FAILOVER at the timeout",
			each: func(e *env, deadline time.Time) {
				if !e.clock.Now().Before(deadline) {
					e.setInfo(addrM, func(in *probe.Info) { in.MasterFailoverState = "no-failover" })
				}
			},
			want: []string{pauseCmd, "redis " + addrM + " FAILOVER TO 10.0.0.3 6379 TIMEOUT 9000"},
		},
		{
			name: "FAILOVER stuck past the timeout is aborted",
			setup: func(e *env) {
				e.redis.setHook(addrM, "FAILOVER", func(context.Context) error {
					e.redis.mu.Lock()
					defer e.redis.mu.Unlock()
					e.redis.servers[addrM].info.MasterFailoverState = "failover-in-progress"
					return errIgnored
				})
			},
			want: []string{pauseCmd, "redis " + addrM + " FAILOVER TO 10.0.0.3 6379 TIMEOUT 9000", "redis " + addrM + " FAILOVER ABORT"},
		},
		{
			name: "FAILOVER TO refused",
			setup: func(e *env) {
				e.redis.setHook(addrM, "FAILOVER", func(context.Context) error {
					return errors.New("ERR FAILOVER target HOST and PORT is not a replica")
				})
			},
			// Retried every resendEvery with the time left.
			want: []string{pauseCmd, "redis " + addrM + " FAILOVER TO 10.0.0.3 6379 TIMEOUT 9000",
				pauseCmd, "redis " + addrM + " FAILOVER TO 10.0.0.3 6379 TIMEOUT 7000",
				pauseCmd, "redis " + addrM + " FAILOVER TO 10.0.0.3 6379 TIMEOUT 5000",
				pauseCmd, "redis " + addrM + " FAILOVER TO 10.0.0.3 6379 TIMEOUT 3000",
				pauseCmd, "redis " + addrM + " FAILOVER TO 10.0.0.3 6379 TIMEOUT 1000"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.refusePause()
			e.step()
			if tc.setup != nil {
				tc.setup(e)
			}
			e.beginHandover()
			started := e.clock.Now()
			deadline := started.Add(handoverTimeout)
			from := e.mark()
			for i := 0; e.inFailover(); i++ {
				if i > 20 {
					t.Fatalf("no rollback:\n%s", e.dump(0))
				}
				e.clock.Advance(time.Second)
				if tc.each != nil {
					tc.each(e, deadline)
				}
				e.step()
			}
			abort := e.index(from, "commit AbortFailover "+fsm.EventHandoverTimeout)
			if abort < 0 {
				t.Fatalf("no handover-timeout abort:\n%s", e.dump(from))
			}
			if at := e.trace.snapshot()[abort].at; at.Before(deadline) || at.After(deadline.Add(handoverGrace+2*time.Second)) {
				t.Fatalf("aborted %v after the start", at.Sub(started))
			}
			if got := e.writes(from); !slices.Equal(got, tc.want) {
				t.Fatalf("writes %q, want %q\n%s", got, tc.want, e.dump(from))
			}
			e.checkRolledBack()
		})
	}
}

// startPausedHandover begins a handover whose candidate is behind: the
// leader pauses writes, commits the pause with the master's offset, and
// finds the candidate short of it.
func (e *env) startPausedHandover() {
	e.t.Helper()
	e.step()
	e.beginHandover()
	from := e.mark()
	e.tick(time.Second)
	e.inOrder(from, redisCmd(addrM, "CLIENT UNPAUSE"), "commit HandoverPaused offset=pending", redisCmd(addrM, "CLIENT PAUSE 15000 WRITE"),
		redisCmd(addrM, "INFO"), redisCmd(addrR2, "INFO"))
	if n := e.count(from, "redis * FAILOVER *"); n != 0 {
		e.t.Fatalf("FAILOVER sent with the pause:\n%s", e.dump(from))
	}
	pause := e.master().GetFailover().GetPause()
	if !pause.GetOffsetPending() || pause.GetUntilUnixNanos() != e.clock.Now().Add(handoverTimeout-time.Second+pauseMargin).UnixNano() {
		e.t.Fatalf("pause %v", pause)
	}
	if !e.paused(addrM) {
		e.t.Fatalf("writes not paused")
	}
}

func TestPausedHandover(t *testing.T) {
	t.Run("candidate catches up", func(t *testing.T) {
		e := newEnv(t, nil)
		e.startPausedHandover()
		// Behind the paused offset: wait.
		from := e.mark()
		e.tick(time.Second)
		if got := e.since(from, "commit ", "redis "); !slices.Equal(got, []string{redisCmd(addrM, "INFO"), redisCmd(addrR2, "INFO")}) {
			t.Fatalf("while the candidate catches up: %q", got)
		}
		e.setInfo(addrR2, func(in *probe.Info) { in.SlaveReplOffset, in.MasterReplOffset = 1000, 1000 })
		from = e.mark()
		e.tick(time.Second)
		// Promoted, committed, then the old master re-pointed before it is
		// unpaused, so that no paused writer lands on it.
		e.inOrder(from, promoteCmd(addrR2), "commit Promoted "+addrR2, replicaOf(addrM, addrR2), redisCmd(addrM, "CLIENT UNPAUSE"))
		if e.paused(addrM) {
			t.Fatalf("still paused")
		}
		e.finishFailover()
		e.noRejections()
		// One UNPAUSE asks whether the server can pause, one releases it.
		if n, m := e.count(0, "redis * CLIENT PAUSE *"), e.count(0, "redis * CLIENT UNPAUSE"); n != 1 || m != 2 {
			t.Fatalf("%d pauses, %d unpauses:\n%s", n, m, e.dump(0))
		}
		last := e.master().GetLastFailover()
		if e.master().GetAddress() != addrR2 || last.GetResult() != fsm.ResultPromoted || !last.GetCoordinated() {
			t.Fatalf("outcome %v", last)
		}
		if in := e.info(addrM); in.Role != probe.RoleSlave || in.MasterHost != "10.0.0.3" {
			t.Fatalf("old master: %s of %s", in.Role, in.MasterHost)
		}
	})
	t.Run("candidate never catches up", func(t *testing.T) {
		e := newEnv(t, nil)
		e.startPausedHandover()
		started := time.Unix(0, e.master().GetFailover().GetStartedAtUnixNanos())
		from := e.mark()
		e.tickUntil(15, "rolled back", func() bool { return !e.inFailover() })
		if d := e.clock.Now().Sub(started); d != handoverTimeout {
			t.Fatalf("rolled back %v after the start", d)
		}
		// Unpaused first, then the abort committed.
		e.inOrder(from, redisCmd(addrM, "CLIENT UNPAUSE"), "commit AbortFailover "+fsm.EventHandoverTimeout)
		if got := e.writes(from); !slices.Equal(got, []string{redisCmd(addrM, "CLIENT UNPAUSE")}) {
			t.Fatalf("writes %q", got)
		}
		e.checkRolledBack()
	})
}

// A new leader finds the pause in the journal and completes or releases it
// in its first pass. The offset was not committed (it is read once writes
// are paused), so the new leader pauses again to read it, but it never
// commits a second pause.
func TestNewLeaderResumesPause(t *testing.T) {
	cases := []struct {
		name   string
		before func(e *env) // after the pause, before the new leader
		want   []string     // the new leader's first pass, in order
		// rolledBack: the handover ended with the abort; promoted: with the promotion.
		rolledBack, promoted bool
	}{
		{
			name:   "candidate caught up",
			before: func(e *env) { e.setInfo(addrR2, func(in *probe.Info) { in.SlaveReplOffset = 1000 }) },
			want: []string{redisCmd(addrM, "CLIENT PAUSE 14000 WRITE"), redisCmd(addrM, "INFO"), promoteCmd(addrR2), "commit Promoted " + addrR2,
				replicaOf(addrM, addrR2), redisCmd(addrM, "CLIENT UNPAUSE")},
			promoted: true,
		},
		{
			name:   "catch-up time over",
			before: func(e *env) { e.clock.Advance(handoverTimeout) },
			want: []string{redisCmd(addrM, "CLIENT PAUSE 4000 WRITE"), redisCmd(addrM, "INFO"), redisCmd(addrM, "CLIENT UNPAUSE"),
				"commit AbortFailover " + fsm.EventHandoverTimeout},
			rolledBack: true,
		},
		{
			name: "promoted, not yet released",
			before: func(e *env) {
				e.stopAt = CrashAfterPromotion
				e.setInfo(addrR2, func(in *probe.Info) { in.SlaveReplOffset = 1000 })
				from := e.mark()
				e.tick(time.Second)
				e.inOrder(from, promoteCmd(addrR2), "commit Promoted "+addrR2)
				if got := e.writes(from); len(got) != 1 {
					e.t.Fatalf("the stopped leader went on: %q", got)
				}
			},
			want:     []string{replicaOf(addrM, addrR2), redisCmd(addrM, "CLIENT UNPAUSE")},
			promoted: true,
		},
		{
			name:   "candidate still behind, time left",
			before: func(e *env) {},
			want:   nil,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.startPausedHandover()
			pause := e.master().GetFailover().GetPause()
			tc.before(e)
			e.stopAt = ""
			e.start()
			from := e.mark()
			e.tick(time.Second)
			if tc.want != nil {
				e.inOrder(from, tc.want...)
			} else if got := e.since(from, "commit ", "redis "); !slices.Equal(got, []string{redisCmd(addrM, "INFO"),
				redisCmd(addrM, "CLIENT PAUSE 14000 WRITE"), redisCmd(addrM, "INFO"), redisCmd(addrR2, "INFO")}) {
				t.Fatalf("first pass: %q", got)
			}
			if n := e.count(from, "commit HandoverPaused *"); n != 0 {
				t.Fatalf("the new leader committed a second pause:\n%s", e.dump(from))
			}
			switch {
			case tc.rolledBack:
				e.checkRolledBack()
			case tc.promoted:
				if e.paused(addrM) || e.master().GetAddress() != addrR2 {
					t.Fatalf("paused %v, master %s", e.paused(addrM), e.master().GetAddress())
				}
				e.finishFailover()
				e.noRejections()
			default:
				if !e.paused(addrM) || !e.inFailover() || e.master().GetFailover().GetPause().GetOffset() != pause.GetOffset() {
					t.Fatalf("the pause changed: %v", e.master().GetFailover())
				}
			}
		})
	}
}

// A candidate already promoted in a paused handover, whose promotion was
// not committed (the promotion's reply was lost, or the commit failed and the
// leader changed), has every write of the paused old master: the handover
// completes on the next pass, as handover's doc says ("the candidate
// reports master -> commit Promoted"), rather than waiting out the
// catch-up time and rolling back a promotion that already happened. A
// promoted replica's INFO has no slave_repl_offset, so the offset check
// alone cannot see it caught up.
func TestPausedHandoverCandidateAlreadyPromoted(t *testing.T) {
	cases := []struct {
		name string
		// promote makes the first attempt fail after REPLICAOF NO ONE.
		promote func(e *env)
	}{
		{
			name: "promotion's reply lost",
			promote: func(e *env) {
				failed := false // guarded by e.redis.mu
				e.redis.setHook(addrR2, "PROMOTE", func(context.Context) error {
					e.redis.mu.Lock()
					defer e.redis.mu.Unlock()
					if !failed {
						failed = true
						becomeMaster(e.redis.servers[addrR2])
						return errors.New("i/o timeout")
					}
					return nil
				})
				e.tick(time.Second)
			},
		},
		{
			name: "commit failed, new leader",
			promote: func(e *env) {
				e.commit.fail = func(cmd *fsmv1.Command) error {
					if cmd.GetPromoted() != nil {
						return errors.New("the cluster did not commit the write in time")
					}
					return nil
				}
				e.tick(time.Second)
				e.commit.fail = nil
				e.start()
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.startPausedHandover()
			e.setInfo(addrR2, func(in *probe.Info) { in.SlaveReplOffset, in.MasterReplOffset = 1000, 1000 })
			from := e.mark()
			tc.promote(e)
			if e.info(addrR2).Role != probe.RoleMaster || e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER {
				t.Fatalf("setup: candidate %s, journal %v\n%s", e.info(addrR2).Role, e.master().GetFailover(), e.dump(from))
			}
			from = e.mark()
			e.tick(time.Second)
			if e.phase() == fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER {
				// Run it out to show where it ends.
				e.tickUntil(15, "ended", func() bool { return e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER })
				t.Fatalf("the promoted candidate was not committed on the next pass; the handover ended with %v:\n%s",
					e.master().GetLastFailover().GetEvent(), e.dump(from))
			}
			e.inOrder(from, "commit Promoted "+addrR2, replicaOf(addrM, addrR2), redisCmd(addrM, "CLIENT UNPAUSE"))
			e.finishFailover()
			e.noRejections()
			if last := e.master().GetLastFailover(); last.GetResult() != fsm.ResultPromoted {
				t.Fatalf("outcome %v", last)
			}
		})
	}
}

// The fast path in one pass: pause, commit the pause, poll the candidate
// until it has the paused offset, promote, commit, re-point the old master
// and unpause, with no FAILOVER sent.
func TestPausedHandoverInOnePass(t *testing.T) {
	e := newEnv(t, nil)
	e.step()
	e.pollFor = time.Minute // bounded by the candidate, below
	e.start()
	e.beginHandover()
	looks := 0 // guarded by e.redis.mu
	e.redis.setHook(addrR2, "INFO", func(context.Context) error {
		e.redis.mu.Lock()
		defer e.redis.mu.Unlock()
		if looks++; looks == 3 {
			// The last writes reach the candidate on the third look.
			e.redis.servers[addrR2].info.SlaveReplOffset = 1000
		}
		return nil
	})
	from := e.mark()
	e.tick(time.Second)
	e.inOrder(from, redisCmd(addrM, "CLIENT UNPAUSE"), "commit HandoverPaused offset=pending", redisCmd(addrM, "CLIENT PAUSE 15000 WRITE"),
		redisCmd(addrM, "INFO"), redisCmd(addrR2, "INFO"), redisCmd(addrR2, "INFO"), redisCmd(addrR2, "INFO"),
		promoteCmd(addrR2), "commit Promoted "+addrR2, replicaOf(addrM, addrR2), redisCmd(addrM, "CLIENT UNPAUSE"))
	if n := e.count(from, "redis * FAILOVER *"); n != 0 {
		t.Fatalf("FAILOVER sent:\n%s", e.dump(from))
	}
	if e.paused(addrM) || e.master().GetAddress() != addrR2 {
		t.Fatalf("paused %v, master %s", e.paused(addrM), e.master().GetAddress())
	}
	e.finishFailover()
	e.noRejections()
	if last := e.master().GetLastFailover(); last.GetResult() != fsm.ResultPromoted || last.GetHandover() != fsm.HandoverWritePause {
		t.Fatalf("outcome %v", last)
	}
}
