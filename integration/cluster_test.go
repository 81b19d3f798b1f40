package integration

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
)

// leaderChanges collects, across -count runs in one process, how long the
// cluster took from the leader's SIGKILL to a new leader in status. It is
// logged, never asserted: it measures the machine as much as the code.
var leaderChanges struct {
	mu sync.Mutex
	d  []time.Duration
}

func recordLeaderChange(t *testing.T, d time.Duration) {
	leaderChanges.mu.Lock()
	defer leaderChanges.mu.Unlock()
	leaderChanges.d = append(leaderChanges.d, d)
	s := slices.Clone(leaderChanges.d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	t.Logf("new leader in status %v after SIGKILL of the leader (runs so far: %d, min %v, median %v, max %v)",
		d.Round(time.Millisecond), len(s), s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

// The masters these tests monitor need no Redis: the tests check what the
// cluster stores, not what it observes. The nodes do probe them, so the
// ports are kept clear of the demo's Redis servers (6380 to 6382).

func TestThreeNodesSurviveLeaderKillAndFullRestart(t *testing.T) {
	c := startCluster(t, 3)
	all := c.nodes

	r := mustCtl(t, "--addr", addrs(all...), "monitor", "mymaster", "127.0.0.1:6379", "--quorum", "2", "--down-after", "1s")
	if want := "monitoring mymaster at 127.0.0.1:6379 (index "; len(r.stdout) < len(want) || r.stdout[:len(want)] != want {
		t.Fatalf("monitor confirmation: %v", r)
	}
	waitMasters(t, all, "mymaster")

	// The settings made it through as given, on a node that did not take
	// the write itself.
	got := &coordinatorv1.GetMasterDetailResponse{}
	if err := ctlJSON(got, "--addr", c.nodes[2].grpcAddr, "master", "mymaster"); err != nil {
		t.Fatal(err)
	}
	if m := got.GetDetail().GetMaster(); m.GetAddress() != "127.0.0.1:6379" || m.GetSettings().GetQuorum() != 2 || m.GetSettings().GetDownAfter().AsDuration() != time.Second {
		t.Fatalf("master mymaster = %v", got)
	}

	var leader string
	testwait.For(t, waitTimeout, "a leader in status", func() (err error) {
		leader, err = leaderAmong(all...)
		return err
	})
	old := c.node(leader)
	survivors := without(all, old)

	killedAt := time.Now()
	old.kill()
	var newLeader string
	testwait.For(t, waitTimeout, "a new leader after SIGKILL of "+leader, func() (err error) {
		newLeader, err = leaderAmong(survivors...)
		return err
	})
	recordLeaderChange(t, time.Since(killedAt))

	// Write through the survivor that is not the leader, so the write is
	// forwarded; wait until it knows the new leader, or it could only
	// answer "no leader known".
	waitAgreedLeader(t, survivors...)
	follower := survivors[0]
	if follower.id == newLeader {
		follower = survivors[1]
	}
	mustCtl(t, "--addr", follower.grpcAddr, "monitor", "othermaster", "127.0.0.1:6399", "--quorum", "2")
	waitMasters(t, survivors, "mymaster", "othermaster")

	// The killed node comes back from its data dir and catches up.
	old.start()
	waitMasters(t, []*node{old}, "mymaster", "othermaster")

	// A graceful stop of every node, all at once, then the same command
	// lines again: --bootstrap must be harmless on a node with state.
	for _, n := range all {
		n.terminate()
	}
	for _, n := range all {
		code, err := n.waitExit(stopTimeout)
		if err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
		if code != 0 {
			t.Fatalf("%s exited with code %d after SIGTERM", n.id, code)
		}
	}
	for _, n := range all {
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range all {
		if err := n.waitServing(); err != nil {
			t.Fatalf("restart %s: %v", n.id, err)
		}
	}
	waitMasters(t, all, "mymaster", "othermaster")
	c.waitFormed()
}

func TestFiveNodeClusterForms(t *testing.T) {
	c := startCluster(t, 5)

	testwait.For(t, waitTimeout, "status shows 5 voters and one leader", func() error {
		resp := &coordinatorv1.StatusResponse{}
		if err := ctlJSON(resp, "--addr", addrs(c.nodes...), "status"); err != nil {
			return err
		}
		if len(resp.GetNodes()) != 5 {
			return fmt.Errorf("status lists %d nodes", len(resp.GetNodes()))
		}
		var named, selfLeaders []string
		for _, st := range resp.GetNodes() {
			if !st.GetVoter() || st.GetError() != "" {
				return fmt.Errorf("node %s: %v", st.GetId(), st)
			}
			if st.GetState() == "leader" {
				selfLeaders = append(selfLeaders, st.GetId())
			}
			if !slices.Contains(named, st.GetLeaderId()) {
				named = append(named, st.GetLeaderId())
			}
		}
		if len(selfLeaders) != 1 || len(named) != 1 || named[0] != selfLeaders[0] {
			return fmt.Errorf("want one leader that every node names: leaders %v, named %v", selfLeaders, named)
		}
		return nil
	})

	mustCtl(t, "--addr", c.nodes[4].grpcAddr, "monitor", "mymaster", "127.0.0.1:6379", "--quorum", "3")
	waitMasters(t, c.nodes, "mymaster")
}

func TestJoinAndRemoveNode(t *testing.T) {
	c := startCluster(t, 3)
	n1 := c.nodes[0]

	ports := freeAddrs(t, 3)
	n4 := newNode(t, t.TempDir(), "n4", ports[0], ports[1], ports[2], "--join", n1.grpcAddr)
	n4.start()
	withN4 := append(slices.Clone(c.nodes), n4)
	testwait.For(t, waitTimeout, "members shows 4 voters", func() error { return c.checkMembers(n1, withN4) })

	mustCtl(t, "--addr", addrs(c.nodes...), "monitor", "mymaster", "127.0.0.1:6379", "--quorum", "2")
	waitMasters(t, withN4, "mymaster")

	r := mustCtl(t, "--addr", n1.grpcAddr, "remove-node", "n4")
	if want := "removed node n4 from the cluster (index "; len(r.stdout) < len(want) || r.stdout[:len(want)] != want {
		t.Fatalf("remove-node confirmation: %v", r)
	}
	testwait.For(t, waitTimeout, "members shows 3 voters", func() error { return c.checkMembers(n1, c.nodes) })
	n4.stop()

	// The three go on without it, and a read on another node that asks for
	// the write's index sees it at once.
	set := &coordinatorv1.SetResponse{}
	if err := ctlJSON(set, "--addr", addrs(c.nodes...), "set", "mymaster", "quorum", "3"); err != nil {
		t.Fatal(err)
	}
	got := &coordinatorv1.GetMasterDetailResponse{}
	if err := ctlJSON(got, "--addr", c.nodes[2].grpcAddr, "master", "mymaster", "--min-index", fmt.Sprint(set.GetIndex())); err != nil {
		t.Fatal(err)
	}
	if q := got.GetDetail().GetMaster().GetSettings().GetQuorum(); q != 3 || got.GetIndex() < set.GetIndex() {
		t.Fatalf("after set at index %d, n3 answers quorum %d at index %d", set.GetIndex(), q, got.GetIndex())
	}
}
