package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// group is one monitored master with two replicas, all real redis-server
// processes.
type group struct {
	master, r1, r2 *redistest.Server
}

func startGroup(t *testing.T, r1Priority, r2Priority int) *group {
	m := redistest.Start(t)
	g := &group{master: m,
		r1: redistest.Start(t, redistest.ReplicaOf(m.Addr()), redistest.ReplicaPriority(r1Priority)),
		r2: redistest.Start(t, redistest.ReplicaOf(m.Addr()), redistest.ReplicaPriority(r2Priority)),
	}
	redistest.WaitReplicating(t, g.r1, m)
	redistest.WaitReplicating(t, g.r2, m)
	return g
}

func (c *testCluster) monitorGroup(t *testing.T, name string, g *group, quorum uint32) {
	t.Helper()
	leader := c.leader()
	_, err := leader.client.Monitor(ctxT(t, 5*time.Second), &coordinatorv1.MonitorRequest{Name: name, Address: g.master.Addr(),
		Settings: &coordinatorv1.MasterSettings{Quorum: quorum, DownAfter: durationpb.New(time.Second), FailoverTimeout: durationpb.New(5 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the leader has discovered both replicas.
	testwait.Until(t, 20*time.Second, "replica discovery", func() bool {
		m, _, ok := c.leader().srv.FSM().Master(name)
		return ok && len(m.Replicas) == 2
	})
}

func role(t *testing.T, s *redistest.Server) (string, string) {
	info, err := s.Info(context.Background(), "replication")
	if err != nil {
		return "", ""
	}
	return info["role"], info["master_host"] + ":" + info["master_port"]
}

func TestInProcessFailoverAfterMasterKill(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	g := startGroup(t, 100, 100)
	c.monitorGroup(t, "mymaster", g, 2)
	old := g.master.Addr()
	g.master.Kill()

	var newAddr string
	testwait.Until(t, 30*time.Second, "a promotion on every node", func() bool {
		for _, nd := range c.nodes {
			m, _, _ := nd.srv.FSM().Master("mymaster")
			if m.Epoch != 1 || m.Address == old {
				return false
			}
			newAddr = m.Address
		}
		return true
	})
	promoted, other := g.r1, g.r2
	if newAddr == g.r2.Addr() {
		promoted, other = g.r2, g.r1
	}
	testwait.Until(t, 30*time.Second, "the other replica following the new master", func() bool {
		r, m := role(t, other)
		return r == "slave" && m == promoted.Addr()
	})
	if r, _ := role(t, promoted); r != "master" {
		t.Fatalf("promoted instance reports %q", r)
	}
	testwait.Until(t, 30*time.Second, "the failover to finish", func() bool {
		m, _, _ := c.leader().srv.FSM().Master("mymaster")
		return m.Failover == nil
	})
	// The promoted replica reports role slave until its next INFO; that
	// must not make anyone judge the new master down.
	host, port, _ := strings.Cut(newAddr, ":")
	m, _, _ := c.leader().srv.FSM().Master("mymaster")
	for _, e := range m.Events {
		if (e.Type == "+sdown" || e.Type == "+odown") && strings.HasPrefix(e.Payload, "master mymaster "+host+" "+port) {
			t.Fatalf("the new master was judged down: %s %s (node %q)", e.Type, e.Payload, e.NodeId)
		}
	}
}
