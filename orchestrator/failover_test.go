package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// masterFails kills the master and ticks until this node holds it SDOWN
// (the first refused contact is the next tick's, and SDOWN comes one tick
// past down-after from it), then commits quorum down votes from two nodes.
func (e *env) masterFails() {
	e.t.Helper()
	e.step()
	e.kill(addrM)
	for range e.master().GetSettings().GetDownAfterMs()/1000 + 2 {
		e.tick(time.Second)
	}
	e.vote("n1", true)
	e.vote("n2", true)
}

// beginAutomatic runs the leader until it commits BeginFailover.
func (e *env) beginAutomatic() {
	e.t.Helper()
	e.masterFails()
	e.step()
	if e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING {
		e.t.Fatalf("no failover began; trace:\n%s", e.dump(0))
	}
}

// finishFailover ticks until the journal closes.
func (e *env) finishFailover() {
	e.t.Helper()
	e.tickUntil(40, "finished", func() bool { return !e.inFailover() })
}

func TestAutomaticFailover(t *testing.T) {
	e := newEnv(t, nil)
	from := e.mark()
	e.step()
	if got := e.since(from, "commit ", "redis "); len(got) != 0 {
		t.Fatalf("a healthy master needs nothing, got %q", got)
	}
	e.masterFails()
	from = e.mark()
	e.step()

	// ODOWN from the quorum of fresh votes, then the failover, in one pass
	// and one commit.
	e.inOrder(from, "commit SetObjectiveDown down=true", "commit BeginFailover odown "+addrR2)
	e.commit.mu.Lock()
	together := slices.Clone(e.commit.together)
	e.commit.mu.Unlock()
	if want := [][]string{{"SetObjectiveDown", "BeginFailover"}}; fmt.Sprint(together) != fmt.Sprint(want) {
		t.Fatalf("commands committed together %q, want %q", together, want)
	}
	m := e.master()
	f := m.GetFailover()
	if f.GetCandidate() != addrR2 || f.GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING || f.GetOldMaster() != addrM {
		t.Fatalf("journal %v", f)
	}
	// r2 beats r3 on offset, and r1 (more data) on priority; r4 has priority 0.
	if len(f.GetRejected()) != 1 || f.GetRejected()[0].GetAddress() != addrR4 || f.GetRejected()[0].GetReason() != "priority 0" {
		t.Fatalf("rejected %v", f.GetRejected())
	}
	if got := e.writes(from); len(got) != 0 {
		t.Fatalf("Redis commands in the pass that began the failover: %q", got)
	}

	// Promote (its transaction reads the INFO that confirms), commit.
	from = e.mark()
	e.tick(time.Second)
	e.inOrder(from, promoteCmd(addrR2), "commit Promoted "+addrR2)
	if got := e.writes(from); !slices.Equal(got, []string{promoteCmd(addrR2)}) {
		t.Fatalf("writes while promoting: %q", got)
	}
	m = e.master()
	if m.GetAddress() != addrR2 || m.GetEpoch() != 1 || m.GetFailover().GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
		t.Fatalf("after promotion: address %s epoch %d journal %v", m.GetAddress(), m.GetEpoch(), m.GetFailover())
	}
	if !slices.Equal(e.crashes, []string{CrashAfterElection, CrashAfterPromotion}) {
		t.Fatalf("crash points %q", e.crashes)
	}

	// Re-point: the replicas sync slowly (link down after REPLICAOF), so
	// r1 stays in progress and nothing else is sent meanwhile.
	e.redis.setLinkAfterReplicaOf(probe.LinkStatusDown)
	from = e.mark()
	e.tick(time.Second)
	e.inOrder(from, "commit ReplicaReconfigured "+addrR1+" SENT", replicaOf(addrR1, addrR2))
	e.tick(time.Second)
	e.inOrder(from, "commit ReplicaReconfigured "+addrR1+" IN_PROGRESS")
	for range 3 {
		e.tick(time.Second)
	}
	if got := e.writes(from); !slices.Equal(got, []string{replicaOf(addrR1, addrR2)}) {
		t.Fatalf("writes while r1 syncs: %q", got)
	}
	e.setInfo(addrR1, func(in *probe.Info) { in.MasterLinkStatus = probe.LinkStatusUp })
	e.tick(time.Second)
	e.inOrder(from, "commit ReplicaReconfigured "+addrR1+" DONE", "commit ReplicaReconfigured "+addrR3+" SENT", replicaOf(addrR3, addrR2))

	// The rest sync at once.
	e.redis.setLinkAfterReplicaOf(probe.LinkStatusUp)
	e.setInfo(addrR3, func(in *probe.Info) { in.MasterLinkStatus = probe.LinkStatusUp })
	e.finishFailover()
	e.inOrder(from,
		"commit ReplicaReconfigured "+addrR3+" DONE",
		"commit ReplicaReconfigured "+addrR4+" SENT", replicaOf(addrR4, addrR2),
		"commit ReplicaReconfigured "+addrR4+" DONE",
		"commit FinishFailover")
	e.checkParallelSyncs(addrR2, 1)
	e.noRejections()
	if got, want := e.kinds("UpdateReplicas", "ReportVote"), []string{"SetObjectiveDown", "BeginFailover", "Promoted",
		"ReplicaReconfigured", "ReplicaReconfigured", "ReplicaReconfigured", // r1 sent, in progress, done
		"ReplicaReconfigured", "ReplicaReconfigured", "ReplicaReconfigured", "ReplicaReconfigured", // r3, r4 sent, done
		"FinishFailover"}; !slices.Equal(got, want) {
		t.Fatalf("committed %q, want %q", got, want)
	}
	// Every command went with the master's credentials.
	e.redis.mu.Lock()
	auths := maps.Clone(e.redis.auths)
	e.redis.mu.Unlock()
	for a, auth := range auths {
		if auth != (probe.Auth{User: "raftinel", Pass: "secret"}) {
			t.Fatalf("%s opened with %+v", a, auth)
		}
	}

	m = e.master()
	last := m.GetLastFailover()
	if m.GetAddress() != addrR2 || m.GetEpoch() != 1 || last.GetResult() != fsm.ResultPromoted || last.GetEvent() != "+failover-end" ||
		last.GetCandidate() != addrR2 || last.GetOldMaster() != addrM {
		t.Fatalf("after the failover: address %s epoch %d outcome %v", m.GetAddress(), m.GetEpoch(), last)
	}
	// The old master, down, is neither promoted nor re-pointed by the failover.
	if n := e.count(0, redisCmd(addrM, "*")); n != 0 {
		t.Fatalf("%d commands sent to the dead old master:\n%s", n, e.dump(0))
	}
	if n := e.count(0, "redis * REPLICAOF NO ONE"); n != 1 {
		t.Fatalf("%d promotions:\n%s", n, e.dump(0))
	}
	for _, a := range []string{addrR1, addrR3, addrR4} {
		if in := e.info(a); in.MasterHost != "10.0.0.3" || in.MasterPort != 6379 {
			t.Fatalf("%s follows %s:%d", a, in.MasterHost, in.MasterPort)
		}
	}
}

// A candidate that never reports role master is given failover-timeout,
// with REPLICAOF NO ONE re-sent every resendEvery; then the attempt aborts
// and the old master stays on record.
func TestPromotionTimesOut(t *testing.T) {
	cases := []struct {
		name  string
		setup func(e *env)
	}{
		{"promote accepted but role unchanged", func(e *env) {
			e.redis.setHook(addrR2, "PROMOTE", func(context.Context) error { return errIgnored })
		}},
		{"promote fails", func(e *env) {
			e.redis.setHook(addrR2, "PROMOTE", func(context.Context) error { return errors.New("READONLY You can't write against a read only replica") })
		}},
		{"candidate unreachable", func(e *env) { e.kill(addrR2) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(s *fsmv1.MasterSettings) { s.FailoverTimeoutMs = 10000 })
			e.beginAutomatic()
			started := e.clock.Now()
			tc.setup(e)
			from := e.mark()
			e.tickUntil(15, "aborted", func() bool { return !e.inFailover() })
			if d := e.clock.Now().Sub(started); d != 11*time.Second {
				t.Fatalf("aborted %v after the start, want the first tick past failover-timeout (11s)", d)
			}
			if got := e.commits(from); slices.Contains(got, "commit Promoted "+addrR2) ||
				!slices.Contains(got, "commit AbortFailover -failover-abort-slave-timeout") {
				t.Fatalf("commits %q", got)
			}
			// REPLICAOF NO ONE was retried, never more often than resendEvery.
			var sent []time.Time
			for _, en := range e.trace.snapshot()[from:] {
				if en.text == promoteCmd(addrR2) {
					sent = append(sent, en.at)
				}
			}
			if len(sent) < 2 {
				t.Fatalf("REPLICAOF NO ONE sent %d times", len(sent))
			}
			for i := 1; i < len(sent); i++ {
				if d := sent[i].Sub(sent[i-1]); d < resendEvery {
					t.Fatalf("REPLICAOF NO ONE re-sent after %v", d)
				}
			}
			m := e.master()
			last := m.GetLastFailover()
			if m.GetAddress() != addrM || m.GetEpoch() != 0 || last.GetResult() != fsm.ResultAborted ||
				last.GetEvent() != "-failover-abort-slave-timeout" {
				t.Fatalf("after the abort: address %s epoch %d outcome %v", m.GetAddress(), m.GetEpoch(), last)
			}
			e.noRejections()
		})
	}
}

// Past failover-timeout after the promotion, the journal closes with
// +failover-end-for-timeout, committed before the best-effort REPLICAOFs
// to the replicas not yet re-pointed.
func TestReconfigurationTimesOut(t *testing.T) {
	e := newEnv(t, func(s *fsmv1.MasterSettings) { s.FailoverTimeoutMs = 15000 })
	for _, a := range []string{addrR1, addrR3, addrR4} {
		e.redis.setHook(a, "REPLICAOF", func(context.Context) error { return errIgnored })
	}
	e.beginAutomatic()
	e.tick(time.Second)
	promotedAt := e.clock.Now()
	if e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
		t.Fatalf("not promoted:\n%s", e.dump(0))
	}
	from := e.mark()
	e.tickUntil(20, "finished", func() bool { return !e.inFailover() })
	if d := e.clock.Now().Sub(promotedAt); d != 16*time.Second {
		t.Fatalf("finished %v after the promotion, want 16s", d)
	}
	// r1 timed out (slave-reconf-timeout) and freed its slot for r3; r4
	// was never reached.
	e.inOrder(from, "commit ReplicaReconfigured "+addrR1+" SENT", "commit ReplicaReconfigured "+addrR1+" DONE",
		"commit ReplicaReconfigured "+addrR3+" SENT")
	end := e.index(from, "commit FinishFailover timed-out")
	if end < 0 {
		t.Fatalf("no timed-out finish:\n%s", e.dump(from))
	}
	if i := e.index(from, replicaOf(addrR4, addrR2)); i < end {
		t.Fatalf("REPLICAOF to the pending r4 at %d, before the finish at %d:\n%s", i, end, e.dump(from))
	}
	if got := e.writes(end); !slices.Equal(got, []string{replicaOf(addrR3, addrR2), replicaOf(addrR4, addrR2)}) {
		t.Fatalf("best-effort REPLICAOFs after the finish: %q\n%s", got, e.dump(from))
	}
	if got := e.commits(end + 1); len(got) != 0 {
		t.Fatalf("commits after the finish: %q", got)
	}
	e.checkParallelSyncs(addrR2, 1)
	e.noRejections()
	last := e.master().GetLastFailover()
	if last.GetResult() != fsm.ResultPromoted || last.GetEvent() != "+failover-end-for-timeout" {
		t.Fatalf("outcome %v", last)
	}
}

// A new leader (the old one stopped, as when leadership moves) resumes
// from the last committed step and redoes none before it.
func TestNewLeaderResumes(t *testing.T) {
	cases := []struct {
		name string
		// upTo runs the first leader to the point where it stops.
		upTo func(e *env)
		// check looks at what the new leader sent, from its start.
		check func(e *env, from int)
	}{
		{
			name: "after BeginFailover",
			upTo: func(e *env) {
				e.stopAt = CrashAfterElection
				e.beginAutomatic()
			},
			check: func(e *env, from int) {
				if e.count(0, promoteCmd(addrR2)) != 1 || e.index(from, promoteCmd(addrR2)) < 0 {
					e.t.Fatalf("the new leader did not promote r2 (once):\n%s", e.dump(0))
				}
			},
		},
		{
			name: "after Promoted",
			upTo: func(e *env) {
				e.stopAt = CrashAfterPromotion
				e.beginAutomatic()
				e.tick(time.Second)
				if e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
					e.t.Fatalf("not promoted:\n%s", e.dump(0))
				}
			},
			check: func(e *env, from int) {
				if n := e.count(from, "redis * REPLICAOF NO ONE"); n != 0 {
					e.t.Fatalf("the new leader promoted again:\n%s", e.dump(from))
				}
				e.inOrder(from, "commit ReplicaReconfigured "+addrR1+" SENT", replicaOf(addrR1, addrR2))
			},
		},
		{
			name: "mid-reconf, a replica syncing",
			upTo: func(e *env) {
				e.redis.setLinkAfterReplicaOf(probe.LinkStatusDown)
				e.beginAutomatic()
				e.tick(time.Second) // promoted
				e.tick(time.Second) // r1 sent
				e.tick(time.Second) // r1 in progress
				e.inOrder(0, "commit ReplicaReconfigured "+addrR1+" IN_PROGRESS")
			},
			check: func(e *env, from int) {
				// r1 still holds the only slot: nothing is sent until it is done.
				if i, j := e.index(from, "commit ReplicaReconfigured "+addrR1+" DONE"), e.index(from, "redis * REPLICAOF *"); i < 0 || j < i {
					e.t.Fatalf("REPLICAOF at %d before r1 was done at %d:\n%s", j, i, e.dump(from))
				}
			},
		},
		{
			name: "mid-reconf, REPLICAOF lost after its commit",
			upTo: func(e *env) {
				e.beginAutomatic()
				e.tick(time.Second) // promoted
				e.lead.fail(errors.New("leadership lost"))
				e.tick(time.Second) // r1 SENT committed, REPLICAOF refused
				e.lead.fail(nil)
				e.inOrder(0, "commit ReplicaReconfigured "+addrR1+" SENT")
				if n := e.count(0, replicaOf(addrR1, addrR2)); n != 0 {
					e.t.Fatalf("REPLICAOF sent without confirmed leadership")
				}
			},
			check: func(e *env, from int) {
				// The new leader re-sends it in its first pass, and r1 alone.
				if got := e.writes(from)[0]; got != replicaOf(addrR1, addrR2) {
					e.t.Fatalf("first write of the new leader: %q", got)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tc.upTo(e)
			e.redis.setLinkAfterReplicaOf(probe.LinkStatusUp)
			first := e.leader
			e.stopAt = ""
			e.start()
			from := e.mark()

			// The stopped leader does nothing more.
			first.Step(e.fsm.State())
			if e.mark() != from {
				t.Fatalf("a stopped leader acted:\n%s", e.dump(from))
			}
			for _, a := range replicaAddrs {
				e.setInfo(a, func(in *probe.Info) {
					if in.MasterHost == "10.0.0.3" {
						in.MasterLinkStatus = probe.LinkStatusUp
					}
				})
			}
			e.step()
			e.finishFailover()
			tc.check(e, from)
			e.checkParallelSyncs(addrR2, 1)
			e.noRejections()
			for _, kind := range []string{"commit BeginFailover *", "commit Promoted *", "commit FinishFailover*"} {
				if n := e.count(0, kind); n != 1 {
					t.Fatalf("%d × %q:\n%s", n, kind, e.dump(0))
				}
			}
			m := e.master()
			if m.GetAddress() != addrR2 || m.GetEpoch() != 1 || m.GetLastFailover().GetEvent() != "+failover-end" {
				t.Fatalf("after the failover: address %s epoch %d outcome %v", m.GetAddress(), m.GetEpoch(), m.GetLastFailover())
			}
			for _, a := range []string{addrR1, addrR3, addrR4} {
				if in := e.info(a); in.MasterHost != "10.0.0.3" {
					t.Fatalf("%s follows %s", a, in.MasterHost)
				}
			}
		})
	}
}

// The candidate of an automatic failover is the best replica by Sentinel's
// ranking (lower priority, then higher offset, then run id), priority 0
// and unreachable replicas excluded; with none left, the attempt is
// recorded as -failover-abort-no-good-slave and nothing is sent.
func TestCandidateRanking(t *testing.T) {
	cases := []struct {
		name  string
		setup func(e *env)
		want  string // "" for none
	}{
		{"lower priority beats a larger offset", func(e *env) {}, addrR2},
		{"equal priority: larger offset", func(e *env) {
			e.setInfo(addrR3, func(in *probe.Info) { in.SlaveReplOffset = 950 })
		}, addrR3},
		{"equal priority and offset: smaller run id", func(e *env) {
			e.setInfo(addrR3, func(in *probe.Info) { in.SlaveReplOffset, in.RunID = 900, "run-r0" })
		}, addrR3},
		{"priority 0 never", func(e *env) {
			e.setInfo(addrR2, func(in *probe.Info) { in.ReplicaPriority = 0 })
			e.setInfo(addrR3, func(in *probe.Info) { in.ReplicaPriority = 0 })
		}, addrR1},
		{"unreachable excluded", func(e *env) { e.kill(addrR2) }, addrR3},
		{"no good replica", func(e *env) {
			for _, a := range []string{addrR1, addrR2, addrR3} {
				e.setInfo(a, func(in *probe.Info) { in.ReplicaPriority = 0 })
			}
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			tc.setup(e)
			e.masterFails()
			from := e.mark()
			e.step()
			if i := e.index(from, "commit BeginFailover odown "+tc.want); i < 0 {
				t.Fatalf("want candidate %q:\n%s", tc.want, e.dump(from))
			}
			m := e.master()
			if tc.want != "" {
				if m.GetFailover().GetCandidate() != tc.want {
					t.Fatalf("journal %v", m.GetFailover())
				}
				return
			}
			if m.GetFailover() != nil || m.GetLastFailover().GetEvent() != fsm.EventNoGoodReplica || len(m.GetLastFailover().GetCandidate()) != 0 {
				t.Fatalf("journal %v, outcome %v", m.GetFailover(), m.GetLastFailover())
			}
			// The master stays ODOWN (the votes re-asserted), but the next
			// attempt waits 2 x failover-timeout.
			for range 5 {
				e.vote("n1", true)
				e.vote("n2", true)
				e.tick(time.Second)
			}
			if !e.master().GetOdown() {
				t.Fatalf("not ODOWN")
			}
			if got := e.writes(from); len(got) != 0 {
				t.Fatalf("writes %q", got)
			}
			if n := e.count(from, "commit BeginFailover *"); n != 1 {
				t.Fatalf("%d attempts", n)
			}
			e.noRejections()
		})
	}
}

// The replicas' update that the pass finding ODOWN has to record (their
// links to the master are lost at the same moment) goes in one commit
// with the ODOWN and the begin, ahead of them.
func TestReplicasUpdateCommittedWithTheBegin(t *testing.T) {
	e := newEnv(t, nil)
	e.masterFails()
	e.setInfo(addrR3, func(in *probe.Info) { in.ReplicaPriority = 50 })
	from := e.mark()
	e.step()
	e.inOrder(from, "commit UpdateReplicas", "commit SetObjectiveDown down=true", "commit BeginFailover odown "+addrR2)
	e.commit.mu.Lock()
	together := slices.Clone(e.commit.together)
	e.commit.mu.Unlock()
	if want := [][]string{{"UpdateReplicas", "SetObjectiveDown", "BeginFailover"}}; fmt.Sprint(together) != fmt.Sprint(want) {
		t.Fatalf("commands committed together %q, want %q:\n%s", together, want, e.dump(from))
	}
}

// Votes committed while a pass waits on its own commit (the replicas'
// lost links) are judged in that pass: it re-reads the record, finds the
// master ODOWN and begins, rather than leaving it to the next pass.
func TestVotesArrivingDuringAPassAreJudgedInIt(t *testing.T) {
	e := newEnv(t, nil)
	e.chain = true // the pass reads the record as applied (Config.State)
	e.start()
	e.step()
	e.kill(addrM)
	for range e.master().GetSettings().GetDownAfterMs()/1000 + 2 {
		e.tick(time.Second)
	}
	e.setInfo(addrR3, func(in *probe.Info) { in.ReplicaPriority = 50 })
	voted := false
	e.commit.onCommit = func(cmd *fsmv1.Command) {
		if cmd.GetUpdateReplicas() != nil && !voted {
			voted = true
			e.vote("n1", true)
			e.vote("n2", true)
		}
	}
	from := e.mark()
	e.step()
	e.leader.Wait()
	e.inOrder(from, "commit UpdateReplicas", "commit ReportVote n2 down=true", "commit SetObjectiveDown down=true", "commit BeginFailover odown "+addrR2)
}
