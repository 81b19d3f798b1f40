package server

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestEveryWriteMethodHasAReply(t *testing.T) {
	for m := range writeMethods {
		if newReply(m) == nil {
			t.Errorf("%s is forwarded but has no reply type", m)
		}
	}
}

func testVote(nodeID, addr string) *fsmv1.Command {
	return &fsmv1.Command{Kind: &fsmv1.Command_ReportVote{ReportVote: &fsmv1.ReportVote{
		Master: "m", NodeId: nodeID, Address: addr, Reason: "test vote from " + nodeID}}}
}

func hasTestVote(nd *inmemNode, nodeID string) bool {
	m, _, _ := nd.srv.FSM().Master("m")
	for _, v := range m.GetVotes() {
		if v.GetNodeId() == nodeID && v.GetReason() == "test vote from "+nodeID {
			return true
		}
	}
	return false
}

// Votes, the Sentinel endpoint's writes and API writes take the same path:
// the handler on the leader, from any node.
func TestWritesTakeOnePathToTheLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	follower := c.followers(leader)[0]
	addr := monitorIdle(t, follower.client, "m")

	// Votes go through ClusterService.Propose, validated on the leader.
	for _, nd := range []*inmemNode{leader, follower} {
		if err := nd.srv.propose(ctxT(t, 5*time.Second), testVote(nd.id, addr)); err != nil {
			t.Fatalf("vote from %s: %v", nd.id, err)
		}
		notAVote := &fsmv1.Command{Kind: &fsmv1.Command_RemoveMaster{RemoveMaster: &fsmv1.RemoveMaster{Name: "m"}}}
		err := toStatus(nd.srv.propose(ctxT(t, 5*time.Second), notAVote))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "only propose votes") {
			t.Fatalf("a proposal of another command from %s: %v", nd.id, err)
		}
	}
	testwait.Until(t, 5*time.Second, "the votes applied on the follower", func() bool {
		return hasTestVote(follower, leader.id) && hasTestVote(follower, follower.id)
	})

	// A forwarded write that reaches a node that does not lead is answered,
	// not sent on: the sender learns where the leader is.
	fwd := forwardedContext(ctxT(t, 5*time.Second))
	_, err := clusterv1.NewClusterServiceClient(follower.conn).Propose(fwd, &clusterv1.ProposeRequest{Command: testVote(follower.id, addr)})
	want := fmt.Sprintf("not leader; the leader is %s at %s", leader.id, leader.srv.GRPCAddr())
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != want {
		t.Fatalf("forwarded Propose on a follower: %v, want Unavailable %q", err, want)
	}
	_, err = follower.client.Remove(fwd, &coordinatorv1.RemoveRequest{Name: "m"})
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != want {
		t.Fatalf("forwarded Remove on a follower: %v, want Unavailable %q", err, want)
	}

	// The Sentinel endpoint calls the handlers, never its own gRPC port.
	if err := sentinelClient(t, follower).Set(ctxT(t, 5*time.Second), "m", "quorum", "3").Err(); err != nil {
		t.Fatalf("SENTINEL SET on the follower: %v", err)
	}
	if m, _, _ := leader.srv.FSM().Master("m"); m.GetSettings().GetQuorum() != 3 {
		t.Fatalf("SET not applied on the leader: %v", m.GetSettings())
	}
	follower.srv.connsMu.Lock()
	_, dialedSelf := follower.srv.conns[follower.srv.GRPCAddr()]
	follower.srv.connsMu.Unlock()
	if dialedSelf {
		t.Fatal("the follower dialed its own gRPC port")
	}
}

// A write made while the cluster has no leader waits for the election and
// then commits, whichever way it came in.
func TestWritesWaitOutAnElection(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	c.sentinelsRegistered()
	nd := c.nodes[0]
	addr := monitorIdle(t, nd.client, "m")
	// Every node must hold m before the partition: nd may be a follower
	// whose log does not have the entry yet when Monitor returns, so its
	// LastIndex is no bound to wait for.
	testwait.Until(t, 5*time.Second, "every node holding m", func() bool {
		for _, o := range c.nodes {
			if _, _, ok := o.srv.FSM().Master("m"); !ok {
				return false
			}
		}
		return true
	})
	sc := sentinelClient(t, nd)

	for _, o := range c.nodes {
		c.partition(o)
	}
	testwait.Until(t, 5*time.Second, "no node leading or knowing a leader", func() bool {
		for _, o := range c.nodes {
			if _, id := o.srv.Raft().LeaderWithID(); o.srv.IsLeader() || id != "" {
				return false
			}
		}
		return true
	})

	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	write := func(name string, fn func() error) {
		wg.Go(func() {
			err := fn()
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		})
	}
	write("vote", func() error { return nd.srv.propose(ctxT(t, 5*time.Second), testVote(nd.id, addr)) })
	write("SENTINEL SET", func() error { return sc.Set(ctxT(t, 5*time.Second), "m", "quorum", "3").Err() })
	write("API Monitor", func() error {
		_, err := nd.client.Monitor(ctxT(t, 5*time.Second), monitorReq("other", "127.0.0.1:6390"))
		return err
	})
	time.Sleep(300 * time.Millisecond)
	for _, o := range c.nodes {
		c.heal(o)
	}
	wg.Wait()
	for name, err := range errs {
		if err != nil {
			t.Errorf("%s during the election: %v", name, err)
		}
	}
	testwait.Until(t, 5*time.Second, "the writes applied", func() bool {
		m, _, _ := nd.srv.FSM().Master("m")
		_, _, other := nd.srv.FSM().Master("other")
		return hasTestVote(nd, nd.id) && m.GetSettings().GetQuorum() == 3 && other
	})
}
