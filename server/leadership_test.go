package server

import (
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Only the node that leads runs an orchestrator.Leader, installed after its
// Barrier.
func TestOnlyTheLeaderExecutesFailovers(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	testwait.Until(t, 10*time.Second, "the leader's orchestrator installed, and no other", func() bool {
		for _, nd := range c.nodes {
			if (nd.srv.monitor.currentLeader() != nil) != (nd == leader) {
				return false
			}
		}
		return true
	})
}

// A leader cut off in the middle of a promotion (its REPLICAOF NO ONE to a
// frozen candidate still waiting for an answer) drops its orchestrator, and
// the next leader resumes the failover from the journal.
func TestLeadershipLostMidStepIsResumedByTheNextLeader(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.registered()
	g := startGroup(t, 100, 100)
	c.monitorForManual(t, "mymaster", g)
	old := c.leader()
	testwait.Until(t, 10*time.Second, "the leader's orchestrator", func() bool { return old.srv.monitor.currentLeader() != nil })

	g.r1.Pause()
	t.Cleanup(g.r1.Resume)
	m, _, _ := old.srv.FSM().Master("mymaster")
	if _, err := old.srv.apply(ctxT(t, 5*time.Second), &fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: &fsmv1.BeginFailover{
		Master: "mymaster", ExpectedEpoch: m.GetEpoch(), Reason: "manual", Candidate: g.r1.Addr()}}}); err != nil {
		t.Fatal(err)
	}
	c.partition(old)
	testwait.Until(t, 10*time.Second, "the cut-off leader to step down and drop its orchestrator", func() bool {
		return !old.srv.IsLeader() && old.srv.monitor.currentLeader() == nil
	})
	next := c.leader(c.followers(old)...)
	testwait.Until(t, 10*time.Second, "the next leader's orchestrator", func() bool { return next.srv.monitor.currentLeader() != nil })
	if f := mustMaster(t, next, "mymaster").GetFailover(); f.GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING || f.GetCandidate() != g.r1.Addr() {
		t.Fatalf("journal on the next leader: %v", f)
	}

	g.r1.Resume()
	testwait.Until(t, 30*time.Second, "the next leader to finish the promotion", func() bool {
		m := mustMaster(t, next, "mymaster")
		return m.GetEpoch() == 1 && m.GetAddress() == g.r1.Addr() && m.GetFailover() == nil
	})
	if r, _ := role(t, g.r1); r != "master" {
		t.Fatalf("the candidate reports role %q", r)
	}
	c.heal(old)
	testwait.Until(t, 10*time.Second, "the old leader catching up", func() bool {
		return mustMaster(t, old, "mymaster").GetEpoch() == 1
	})
}

func mustMaster(t *testing.T, nd *inmemNode, name string) *fsmv1.Master {
	t.Helper()
	m, _, ok := nd.srv.FSM().Master(name)
	if !ok {
		t.Fatalf("%s does not know master %q", nd.id, name)
	}
	return m
}
