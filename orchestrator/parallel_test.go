package orchestrator

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// A group whose failover is stuck on an instance that never answers must
// not hold up another group's failover: the other is promoted while the
// leader still waits for the stuck command, not after it gave up on it.
func TestStuckFailoverDoesNotHoldUpAnotherMaster(t *testing.T) {
	e := newEnv(t, nil)
	// "aaa" sorts before mymaster: a leader that ran the masters' passes
	// one after another would wait for it at every pass.
	const stuck, addrS, addrS1 = "aaa", "10.0.1.1:6379", "10.0.1.2:6379"
	e.redis.mu.Lock()
	e.redis.servers[addrS] = &fakeServer{up: true, info: probe.Info{RunID: "run-s", Role: probe.RoleMaster,
		ReplicaPriority: 100, MasterReplOffset: 1000, ReplicaAnnounced: true, MasterFailoverState: "no-failover"}}
	e.redis.servers[addrS1] = &fakeServer{up: true, info: probe.Info{RunID: "run-s1", Role: probe.RoleSlave,
		MasterHost: "10.0.1.1", MasterPort: 6379, MasterLinkStatus: probe.LinkStatusUp, ReplicaPriority: 100,
		SlaveReplOffset: 1000, MasterReplOffset: 1000, ReplicaAnnounced: true, MasterFailoverState: "no-failover"}}
	e.redis.mu.Unlock()
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
		Name: stuck, Address: addrS, Settings: &fsmv1.MasterSettings{Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 60000, ParallelSyncs: 1}}}})
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: &fsmv1.UpdateReplicas{
		Master: stuck, MasterOffset: 1000, MasterRunId: "run-s", Replicas: []*fsmv1.Replica{{Address: addrS1, RunId: "run-s1",
			Role: "slave", MasterHost: "10.0.1.1", MasterPort: 6379, MasterLinkUp: true, Priority: 100, Offset: 1000, Announced: true}}}}})

	release := make(chan struct{})
	defer close(release)
	var attempts, sawOtherPromoted atomic.Int32
	e.redis.setHook(addrS1, "PROMOTE", func(ctx context.Context) error {
		// A frozen instance: no answer until the leader gives up on it.
		attempts.Add(1)
		otherPromoted := func() bool {
			e.redis.mu.Lock()
			defer e.redis.mu.Unlock()
			return e.redis.servers[addrR2].info.Role == probe.RoleMaster
		}
		if otherPromoted() {
			return errors.New("frozen")
		}
		for {
			if otherPromoted() {
				sawOtherPromoted.Add(1)
				return errors.New("frozen")
			}
			select {
			case <-release:
				return errors.New("frozen")
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	})

	// mymaster's promotion waits for the stuck one to be under way, so
	// that the two overlap when the leader lets them.
	e.redis.setHook(addrR2, "PROMOTE", func(ctx context.Context) error {
		for attempts.Load() == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return nil
	})

	e.kill(addrS)
	e.masterFails() // mymaster's master fails too, after down-after
	for _, node := range []string{"n1", "n2"} {
		e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_ReportVote{ReportVote: &fsmv1.ReportVote{
			Master: stuck, NodeId: node, Address: addrS, Down: true, Reason: "test"}}})
	}
	e.tickUntil(30, "mymaster failed over", func() bool { return e.master().GetAddress() == addrR2 && !e.inFailover() })
	if attempts.Load() == 0 {
		t.Fatalf("the stuck group's promotion was never attempted; trace:\n%s", e.dump(0))
	}
	if sawOtherPromoted.Load() == 0 {
		t.Fatalf("mymaster was promoted only after the stuck group's command gave up; trace:\n%s", e.dump(0))
	}
}
