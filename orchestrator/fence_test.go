package orchestrator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func fenceOn(s *fsmv1.MasterSettings) { s.FenceOff = false }

func (e *env) fence(addr string) [2]int64 {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	return e.server(addr).fence
}

// The master's min-replicas-to-write follows its good replicas: committed,
// then set; lowered when a replica dies while the leader reaches the
// master, raised again when it is back.
func TestFenceFollowsReplicas(t *testing.T) {
	e := newEnv(t, fenceOn)
	from := e.mark()
	e.step()
	e.inOrder(from, redisCmd(addrM, "INFO"), "commit FenceSet", redisCmd(addrM, "CONFIG SET min-replicas-to-write 4 min-replicas-max-lag 2"))
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v, want 4 replicas within 2 s", got)
	}
	if f := e.master().GetFence(); f.GetMinReplicas() != 4 || f.GetAddress() != addrM {
		t.Fatalf("committed fence %v", f)
	}

	e.kill(addrR3)
	e.tick(300 * time.Millisecond)
	if got := e.fence(addrM); got != [2]int64{3, 2} {
		t.Fatalf("after a replica died: fence %v, want 3", got)
	}
	e.revive(addrR3)
	e.setInfo(addrR3, func(in *probe.Info) { in.MasterLinkStatus = "up" })
	e.tick(300 * time.Millisecond)
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("after the replica came back: fence %v, want 4", got)
	}
	// Fence no sets 0 once, then leaves the master alone.
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_SetMasterOptions{SetMasterOptions: &fsmv1.SetMasterOptions{
		Name: masterName, Options: []*fsmv1.Option{{Key: fsm.OptFence, Value: "no"}}}}})
	e.tick(300 * time.Millisecond)
	if got := e.fence(addrM); got != [2]int64{0, 2} {
		t.Fatalf("fence no: %v, want 0", got)
	}
	from = e.mark()
	e.tick(10 * time.Second)
	if got := e.since(from, "commit FenceSet", redisCmd(addrM, "CONFIG")); len(got) != 0 {
		t.Fatalf("fence no touched the master again: %q", got)
	}
}

// fencedSteady is a leader whose fenced master with four replicas has had
// its fence set and read once more, with Gens set so that its steady
// passes are skipped; reads counts the leader's direct INFO reads of the
// master since a trace mark, and step advances the clock and steps
// without observing.
func fencedSteady(t *testing.T) (e *env, reads func(from int) int, step func(d time.Duration)) {
	t.Helper()
	e = newEnv(t, fenceOn)
	e.setGens()
	reads = func(from int) int { return len(e.since(from, redisCmd(addrM, "INFO"))) }
	step = func(d time.Duration) {
		e.clock.Advance(d)
		e.leader.Step(e.fsm.View())
	}
	step(0)
	step(250 * time.Millisecond) // the read after the fence was set
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v, want 4 replicas within 2 s", got)
	}
	return e, reads, step
}

// crashR3Seen kills R3 and gives the leader's probe of it its closed
// connection (a new observation), steps after d, and checks that the
// leader read the master directly once and lowered the fence to 3.
func crashR3Seen(t *testing.T, e *env, reads func(from int) int, step func(d time.Duration), d time.Duration) {
	t.Helper()
	from := e.mark()
	e.kill(addrR3)
	e.editObs(addrR3, true, func(o *probe.Observation) {
		o.LinkUp, o.FailingSince, o.LastPingErr = false, e.clock.Now(), "connection refused"
	})
	step(d)
	if got := reads(from); got != 1 {
		t.Fatalf("%d direct reads at the tick after a replica's new observation, want 1", got)
	}
	if got := e.fence(addrM); got != [2]int64{3, 2} {
		t.Fatalf("after a replica died: fence %v, want 3", got)
	}
}

// readsAtFenceLag gives R2 a lag at fence-lag, lets find make the read
// that sees it, and checks that the leader then reads the master directly
// 250 ms apart (on the loop's 100 ms ticks: every third tick) for a
// second; R2 then acknowledges again.
func readsAtFenceLag(t *testing.T, e *env, reads func(from int) int, step func(d time.Duration), find func()) {
	t.Helper()
	e.setLag(addrR2, 2)
	find()
	from := e.mark()
	for range 10 {
		step(100 * time.Millisecond)
	}
	if got := reads(from); got != 3 {
		t.Fatalf("%d direct reads in 1 s with a lag at fence-lag, want 3 (250 ms apart, on 100 ms ticks)", got)
	}
	e.setLag(addrR2, 0)
	step(250 * time.Millisecond)
}

func (e *env) setLag(addr string, lag int64) {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	e.server(addr).lag = lag
}

// The leader reads a fenced master a second apart while its replicas'
// lags leave Redis no way to count one out sooner, a quarter of a second
// apart once a lag reaches fence-lag, and at once when an instance of the
// group has a new observation (a replica's closed connection); between
// reads the steady master's pass is skipped.
func TestFenceReadsFollowLagsAndObservations(t *testing.T) {
	e, infoReads, step := fencedSteady(t)
	from, ran, fenceRan := e.mark(), e.leader.passesRun.Load(), e.leader.fencePasses.Load()
	for range 30 {
		step(100 * time.Millisecond)
	}
	if got := infoReads(from); got != 3 {
		t.Fatalf("%d reads in 3 s with every lag 0, want 3 (a second apart)", got)
	}
	if got := e.leader.passesRun.Load() - ran; got != 3 {
		t.Fatalf("%d passes in 3 s of a steady master, want 3 (its reads)", got)
	}
	if got := e.leader.fencePasses.Load() - fenceRan; got != 3 {
		t.Fatalf("%d of those passes ran the fence alone, want all 3", got)
	}

	readsAtFenceLag(t, e, infoReads, step, func() { step(time.Second) }) // the read that finds it

	// R3 dies; the master drops it at once, and the leader's probe of R3
	// sees its connection closed: a new observation, and a read at once.
	crashR3Seen(t, e, infoReads, step, 60*time.Millisecond)
}

// The INFO the leader's PINGs of a fenced master carry
// (probe.Target.ReplicationWithPing) stands in for the fence's own reads:
// with one every second, a steady master is never read directly. A read
// is still made directly when the carried INFO is too old for its own next
// read (a lag at fence-lag), and at once after a new observation, which
// the INFO of an earlier PING may predate (a replica's crash).
func TestFenceTakesTheInfoCarriedByPings(t *testing.T) {
	e, directReads, step := fencedSteady(t)
	carry := func() {
		in := e.info(addrM)
		e.editObs(addrM, false, func(o *probe.Observation) { o.Replication, o.ReplicationAt = &in, e.clock.Now() })
	}
	from, ran := e.mark(), e.leader.passesRun.Load()
	for i := range 30 {
		e.clock.Advance(100 * time.Millisecond)
		if i%10 == 9 {
			carry() // a PING a second, in step with the reads
		}
		e.leader.Step(e.fsm.View())
	}
	if got := directReads(from); got != 0 {
		t.Fatalf("%d direct reads in 3 s with a carried INFO every second, want 0", got)
	}
	if got := e.leader.passesRun.Load() - ran; got != 3 {
		t.Fatalf("%d passes in 3 s of a steady master, want 3 (one per carried INFO)", got)
	}

	// A routine INFO read of a replica (a new Gen, no change to signal)
	// runs the master's whole pass again, whose fence still takes the
	// carried INFO: nothing in that read could make it stale.
	from, ran = e.mark(), e.leader.passesRun.Load()
	e.editObs(addrR1, false, func(o *probe.Observation) { o.Gen++ })
	e.clock.Advance(time.Second)
	carry()
	e.leader.Step(e.fsm.View())
	if got := e.leader.passesRun.Load() - ran; got != 1 {
		t.Fatalf("%d passes after a replica's routine INFO read, want 1", got)
	}
	if got := directReads(from); got != 0 {
		t.Fatalf("%d direct reads after a replica's routine INFO read, want 0", got)
	}

	// A lag at fence-lag: the carried INFO says read again within 250 ms,
	// sooner than the next PING: those reads are direct.
	readsAtFenceLag(t, e, directReads, step, func() {
		e.clock.Advance(time.Second)
		carry()
		e.leader.Step(e.fsm.View())
	})

	// R3 dies after the last carried INFO, which still lists it: the new
	// observation of R3 makes a direct read, which does not.
	step(time.Second)
	e.clock.Advance(50 * time.Millisecond)
	carry()
	crashR3Seen(t, e, directReads, step, 10*time.Millisecond)
}

// A master that may be alive behind a partition: the promotion is
// announced only after the fence window, counted from the candidate's
// detachment; the new master was unfenced before its promotion.
func TestFenceWaitForUnreachableOldMaster(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	// The old master times out instead of refusing.
	e.unreachable(addrM)
	e.redis.setHook(addrM, "REPLICAOF", func(ctx context.Context) error { return context.DeadlineExceeded })
	e.beginAutomatic()
	from := e.mark()
	e.tick(time.Second)
	e.inOrder(from, redisCmd(addrR2, "CONFIG SET min-replicas-to-write 0"), promoteCmd(addrR2),
		replicaOf(addrM, addrR2), "commit FenceWaitStarted")
	detached := e.clock.Now()
	w := e.master().GetFailover().GetFenceWait()
	if want := detached.Add(2*time.Second + 2250*time.Millisecond); !time.Unix(0, w.GetUntilUnixNanos()).Equal(want) {
		t.Fatalf("fence wait until %v, want %v", time.Unix(0, w.GetUntilUnixNanos()), want)
	}
	for e.clock.Now().Before(detached.Add(4 * time.Second)) {
		e.tick(500 * time.Millisecond)
		if e.master().GetAddress() != addrM {
			t.Fatalf("promotion announced %v after the detachment, inside the fence window", e.clock.Now().Sub(detached))
		}
	}
	e.tickUntil(3, "promoted", func() bool { return e.master().GetAddress() == addrR2 })
}

// promoteKilledMaster begins an automatic failover of a killed master and
// checks that the candidate is promoted and announced with no fence wait;
// it returns the trace mark from the begin.
func promoteKilledMaster(t *testing.T, e *env) int {
	t.Helper()
	e.beginAutomatic()
	from := e.mark()
	e.tick(time.Second)
	e.inOrder(from, promoteCmd(addrR2), "commit Promoted "+addrR2)
	if n := e.count(from, "commit FenceWaitStarted"); n != 0 {
		t.Fatalf("fence wait for a killed master:\n%s", e.dump(from))
	}
	return from
}

// A killed master refuses connections: no fence wait at all.
func TestNoFenceWaitForKilledMaster(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	promoteKilledMaster(t, e)
	// The new master was promoted unfenced, and is fenced only once its
	// replicas are attached, after the failover.
	if got := e.fence(addrR2)[0]; got != 0 {
		t.Fatalf("new master's min-replicas-to-write %d at its promotion, want 0", got)
	}
	e.finishFailover()
	e.tick(300 * time.Millisecond)
	if got, want := e.fence(addrR2)[0], int64(len(e.info(addrR2).ConnectedReplicas)); got != want || want == 0 {
		t.Fatalf("new master's fence %d after the failover, want its %d attached replicas", got, want)
	}
}

// A killed old master costs its promotion one leadership check, the
// promotion's own: the catch-up's pause and the demotion learn from a
// refused connection, which needs none, that there is nothing to pause or
// demote. Each check is a Raft round trip; with a hundred failovers at
// once on a loaded machine, the two were a quarter of a promotion's time.
func TestKilledMasterPromotionTakesOneLeadershipCheck(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	before := e.lead.count()
	from := promoteKilledMaster(t, e)
	if n := e.lead.count() - before; n != 1 {
		t.Fatalf("%d leadership checks in the promotion, want 1:\n%s", n, e.dump(from))
	}
	if got := e.since(from, redisCmd(addrM, "")); len(got) != 0 {
		t.Fatalf("commands sent to the killed old master: %q", got)
	}
}

// A killed old master costs no fence wait even when the leadership check
// or TILT stops the attempt to demote it (as on a machine loaded by many
// failovers at once): its refused connection is an observation, which
// needs neither.
func TestNoFenceWaitForKilledMasterWhenChecksFail(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block func(e *env)
	}{
		{"leadership check fails", func(e *env) { e.lead.fail(errors.New("timed out")) }},
		{"TILT", func(e *env) {
			entered := e.clock.Now()
			e.obs.setTilt(func(int) failover.Tilt { return failover.Tilt{EnteredAt: entered} })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fenceOn)
			e.step()
			// Once the candidate is promoted, nothing more may be sent.
			e.redis.setHook(addrR2, "PROMOTE", func(context.Context) error { tc.block(e); return nil })
			from := promoteKilledMaster(t, e)
			if n := e.count(from, replicaOf(addrM, addrR2)); n != 0 {
				t.Fatalf("a command sent to the old master after the check failed:\n%s", e.dump(from))
			}
		})
	}
}

// A reachable old master is demoted instead of waited for, and the wait
// ends early when the old master comes within reach.
func TestFenceWaitEndsWhenOldMasterDemoted(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	e.unreachable(addrM)
	e.redis.setHook(addrM, "REPLICAOF", func(ctx context.Context) error { return context.DeadlineExceeded })
	e.beginAutomatic()
	e.tick(time.Second)
	if e.master().GetFailover().GetFenceWait() == nil {
		t.Fatalf("no fence wait:\n%s", e.dump(0))
	}
	e.redis.setHook(addrM, "DIAL", nil)
	e.redis.setHook(addrM, "REPLICAOF", nil)
	e.revive(addrM)
	from := e.mark()
	e.tick(2 * time.Second)
	e.inOrder(from, replicaOf(addrM, addrR2), "commit Promoted "+addrR2)
}

// An old master that still answers when its failover promotes (a link
// that flaps): writes are paused on it, the candidate reaches its offset,
// and only then is the candidate promoted; the old master is demoted and
// unpaused before the promotion is announced.
func TestCatchUpBeforePromotion(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	e.beginAutomatic()
	e.revive(addrM) // it answers again, as in a healed half-second
	e.setInfo(addrR2, func(in *probe.Info) { in.SlaveReplOffset = 1000 })
	from := e.mark()
	e.tick(time.Second)
	e.inOrder(from, redisCmd(addrM, "CLIENT PAUSE * WRITE"), redisCmd(addrM, "INFO"), redisCmd(addrR2, "INFO"),
		promoteCmd(addrR2), replicaOf(addrM, addrR2), redisCmd(addrM, "CLIENT UNPAUSE"), "commit Promoted "+addrR2)
	if n := e.count(from, "commit FenceWaitStarted"); n != 0 {
		t.Fatalf("fence wait for an old master that was demoted:\n%s", e.dump(from))
	}
	if e.paused(addrM) {
		t.Fatalf("the demoted old master is still paused")
	}
}

// A candidate that does not reach the paused old master's offset within
// catchUpFor is promoted anyway: the catch-up never blocks a failover.
func TestCatchUpBeforePromotionGivesUp(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	e.beginAutomatic()
	e.revive(addrM)
	from := e.mark()
	e.tick(time.Second)
	e.inOrder(from, redisCmd(addrM, "CLIENT PAUSE * WRITE"), promoteCmd(addrR2), replicaOf(addrM, addrR2), "commit Promoted "+addrR2)
}

// An old master that does not answer the pause (cut off) is promoted
// past at once, on the blind path: promotion, then the fence wait.
func TestCatchUpBeforePromotionOldMasterUnreachable(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	e.redis.setHook(addrM, "PAUSE", func(ctx context.Context) error { return context.DeadlineExceeded })
	e.redis.setHook(addrM, "REPLICAOF", func(ctx context.Context) error { return context.DeadlineExceeded })
	e.beginAutomatic()
	e.revive(addrM)
	from := e.mark()
	e.tick(time.Second)
	e.inOrder(from, promoteCmd(addrR2), "commit FenceWaitStarted")
	// It answers again during the wait: demoted, and released from a pause
	// that may have reached it late.
	e.redis.setHook(addrM, "REPLICAOF", nil)
	from = e.mark()
	e.tick(2 * time.Second)
	e.inOrder(from, replicaOf(addrM, addrR2), redisCmd(addrM, "CLIENT UNPAUSE"), "commit Promoted "+addrR2)
}

// A master whose probes failed recently keeps its fence when a replica
// falls behind (a flapping link stalls the replicas too); once it has
// answered every probe for FenceSteadyFor, the fence follows its replicas
// again.
func TestFenceNotLoweredOnUnsteadyMaster(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v, want 4", got)
	}
	e.kill(addrM)
	e.tick(300 * time.Millisecond) // a failed probe
	e.revive(addrM)
	for _, r := range []string{addrR1, addrR2, addrR4} {
		e.setInfo(r, func(in *probe.Info) { in.MasterLinkStatus, in.HasMasterLinkDownSince = probe.LinkStatusUp, false })
	}
	killR3HeldThenLowered(t, e, "the master's failed probe")
}

// A PING answered late between two of the leader's looks (the probe's
// LinkFailedAt, with no look while it waited) holds the fence for
// FenceSteadyFor as a failed PING seen by a look does.
func TestFenceNotLoweredAfterLateReply(t *testing.T) {
	e := newEnv(t, fenceOn)
	e.step()
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v, want 4", got)
	}
	e.editObs(addrM, false, func(o *probe.Observation) { o.LinkFailedAt = e.clock.Now() })
	killR3HeldThenLowered(t, e, "the master's late reply")
}

// killR3HeldThenLowered kills R3 just after a failure of the master's link,
// and checks that the fence stays at 4 for FenceSteadyFor after the
// failure and follows the replicas to 3 after that.
func killR3HeldThenLowered(t *testing.T, e *env, failure string) {
	t.Helper()
	e.kill(addrR3)
	e.tick(300 * time.Millisecond)
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v lowered right after %s, want 4 kept", got, failure)
	}
	for range 4 {
		e.tick(time.Second)
	}
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v lowered within %v of %s, want 4 kept", got, 4300*time.Millisecond, failure)
	}
	e.tick(time.Second)
	if got := e.fence(addrM); got != [2]int64{3, 2} {
		t.Fatalf("fence %v once the master was steady, want 3", got)
	}
}

// TestFenceReappliedWhenLost: an unchanged fence is applied again only
// every fenceApplyEvery, unless the master's INFO shows no fence in force
// (a restart without a config file): then at the next read. Applying again
// reads the fence first, and only a master that lost it or holds other
// values costs a leadership check and a CONFIG SET.
func TestFenceReappliedWhenLost(t *testing.T) {
	e, _, step := fencedSteady(t)
	applies := func(from int) int { return len(e.since(from, redisCmd(addrM, "CONFIG SET min-replicas-to-write"))) }
	from := e.mark()
	for range 40 {
		step(250 * time.Millisecond) // 10 s of reads
	}
	if got := applies(from); got != 0 {
		t.Fatalf("an unchanged fence in force was applied %d times in 10 s, want 0", got)
	}

	e.redis.mu.Lock()
	e.server(addrM).fence = [2]int64{} // restarted without a config file
	e.redis.mu.Unlock()
	from = e.mark()
	step(time.Second)
	if got := applies(from); got != 1 {
		t.Fatalf("a lost fence was applied %d times at the next read, want 1; trace:\n%s", got, e.dump(from))
	}
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v after the re-apply, want 4 replicas within 2 s", got)
	}

	from = e.mark()
	for range 8 {
		step(250 * time.Millisecond)
	}
	if got := applies(from); got != 0 {
		t.Fatalf("the fence was applied %d more times once back in force, want 0", got)
	}
	checks := e.lead.count()
	step(fenceApplyEvery)
	if got := len(e.since(from, redisCmd(addrM, "CONFIG GET min-replicas"))); got != 1 {
		t.Fatalf("%d reads of the fence after fenceApplyEvery, want 1; trace:\n%s", got, e.dump(from))
	}
	if got := applies(from); got != 0 {
		t.Fatalf("a fence in force was set %d times after fenceApplyEvery, want 0", got)
	}
	if got := e.lead.count() - checks; got != 0 {
		t.Fatalf("%d leadership checks to find the fence in force, want 0", got)
	}

	// Someone else's CONFIG SET left a fence on, so INFO cannot tell; the
	// read after fenceApplyEvery finds the other values and sets ours.
	e.redis.mu.Lock()
	e.server(addrM).fence = [2]int64{1, 10}
	e.redis.mu.Unlock()
	from, checks = e.mark(), e.lead.count()
	step(fenceApplyEvery)
	if got := applies(from); got != 1 {
		t.Fatalf("%d applies after fenceApplyEvery to a fence changed behind the leader's back, want 1; trace:\n%s", got, e.dump(from))
	}
	if got := e.lead.count() - checks; got != 1 {
		t.Fatalf("%d leadership checks before setting the fence, want 1", got)
	}
	if got := e.fence(addrM); got != [2]int64{4, 2} {
		t.Fatalf("fence %v after the re-apply, want 4 replicas within 2 s", got)
	}
}
