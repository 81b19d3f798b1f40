package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// addGroup monitors one more master, with one replica, in the env's model
// and state, and returns their addresses.
func (e *env) addGroup(name string, i int) (master, replica string) {
	e.t.Helper()
	master, replica = fmt.Sprintf("10.1.%d.%d:6379", i/200, 2*(i%200)+1), fmt.Sprintf("10.1.%d.%d:6379", i/200, 2*(i%200)+2)
	mh, mp, _ := splitHostPort(master)
	e.redis.mu.Lock()
	e.redis.servers[master] = &fakeServer{up: true, info: probe.Info{RunID: "run-" + name, Role: probe.RoleMaster,
		ReplicaPriority: 100, MasterReplOffset: 1000, ReplicaAnnounced: true, MasterFailoverState: "no-failover"}}
	e.redis.servers[replica] = &fakeServer{up: true, info: probe.Info{RunID: "run-" + name + "-r", Role: probe.RoleSlave,
		MasterHost: mh, MasterPort: mp, MasterLinkStatus: probe.LinkStatusUp, ReplicaPriority: 100,
		SlaveReplOffset: 1000, MasterReplOffset: 1000, ReplicaAnnounced: true, MasterFailoverState: "no-failover"}}
	e.redis.mu.Unlock()
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
		Name: name, Address: master, Settings: &fsmv1.MasterSettings{Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 60000,
			ParallelSyncs: 1, FenceOff: true}}}})
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: &fsmv1.UpdateReplicas{
		Master: name, MasterOffset: 1000, MasterRunId: "run-" + name, Replicas: []*fsmv1.Replica{{Address: replica,
			RunId: "run-" + name + "-r", Role: "slave", MasterHost: mh, MasterPort: int32(mp), MasterLinkUp: true,
			Priority: 100, Offset: 1000, Announced: true}}}}})
	return master, replica
}

// A hundred masters failing at the same instant are failed over side by
// side: every one's promotion is in flight at the same time, none queued
// behind another's. Each candidate's REPLICAOF NO ONE is held until all of
// them have arrived, so a leader that ran fewer passes at once than there
// are failing masters (it ran at most 64) never promotes any of them.
func TestManyMastersFailingAtOnceAreFailedOverSideBySide(t *testing.T) {
	const n = 100
	e := newEnv(t, nil)
	masters, replicas := make([]string, n), make([]string, n)
	for i := range n {
		masters[i], replicas[i] = e.addGroup(fmt.Sprintf("m%03d", i), i)
	}
	var mu sync.Mutex
	arrived, peak := 0, 0
	all, allClosed := make(chan struct{}), false
	for _, r := range replicas {
		e.redis.setHook(r, "PROMOTE", func(ctx context.Context) error {
			mu.Lock()
			arrived++
			peak = max(peak, arrived)
			if arrived == n && !allClosed {
				close(all)
				allClosed = true
			}
			mu.Unlock()
			select {
			case <-all:
				return nil
			case <-ctx.Done():
				// Not all of them in flight: this attempt gives up (and
				// is retried later, with the others again).
				mu.Lock()
				arrived--
				mu.Unlock()
				return ctx.Err()
			}
		})
	}

	e.step()
	for _, m := range masters {
		e.kill(m)
	}
	for range 7 { // past down-after
		e.tick(time.Second)
	}
	for i := range n {
		for _, node := range []string{"n1", "n2"} {
			e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_ReportVote{ReportVote: &fsmv1.ReportVote{
				Master: fmt.Sprintf("m%03d", i), NodeId: node, Address: masters[i], Down: true, Reason: "test"}}})
		}
	}
	promoted := func() int {
		c := 0
		for i := range n {
			if m, _, ok := e.fsm.Master(fmt.Sprintf("m%03d", i)); ok && m.GetAddress() == replicas[i] {
				c++
			}
		}
		return c
	}
	e.tickUntil(60, "every master failed over", func() bool { return promoted() == n })
	mu.Lock()
	defer mu.Unlock()
	if peak < n {
		t.Fatalf("at most %d of %d promotions were in flight at once", peak, n)
	}
	e.noRejections()
}

// With the state machine at hand (Config.State), the pass that commits a
// BeginFailover goes on with the promotion from the committed record: one
// pass takes the failover from ODOWN to the announced promotion, in the
// journal's order (BeginFailover committed before REPLICAOF NO ONE, which
// comes before Promoted).
func TestPromotionFollowsBeginInTheSamePass(t *testing.T) {
	e := newEnv(t, nil)
	e.chain = true
	e.start()
	e.masterFails()
	from := e.mark()
	e.step()
	e.leader.Wait() // the passes this Step started
	if got := e.master().GetAddress(); got != addrR2 {
		t.Fatalf("after one pass the master is %s, want %s promoted; trace:\n%s", got, addrR2, e.dump(from))
	}
	e.inOrder(from, "commit SetObjectiveDown*", "commit BeginFailover*", promoteCmd(addrR2), "commit Promoted*")
	e.noRejections()
	e.finishFailover()
	e.noRejections()
}

// A leader that stops right after committing BeginFailover (a crash at
// that point) sends nothing more: the promotion is left to the next
// leader, which resumes it from the journal.
func TestPromotionInTheSamePassStopsWithTheLeader(t *testing.T) {
	e := newEnv(t, nil)
	e.chain = true
	e.stopAt = CrashAfterElection
	e.start()
	e.masterFails()
	from := e.mark()
	e.step()
	e.leader.Wait()
	if n := e.count(from, promoteCmd(addrR2)); n != 0 {
		t.Fatalf("the stopped leader sent REPLICAOF NO ONE %d times; trace:\n%s", n, e.dump(from))
	}
	if e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING {
		t.Fatalf("journal phase %v, want PROMOTING; trace:\n%s", e.phase(), e.dump(from))
	}
	e.stopAt = ""
	e.start()
	e.tickUntil(10, "resumed and promoted", func() bool { return e.master().GetAddress() == addrR2 })
	e.noRejections()
}
