package server

import (
	"context"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

func minReplicas(s *redistest.Server) string {
	v, err := s.Client().ConfigGet(context.Background(), "min-replicas-to-write").Result()
	if err != nil {
		return "error: " + err.Error()
	}
	return v["min-replicas-to-write"]
}

// The fence follows the replicas on real servers: 2 with both replicas, 1
// once one is killed (writes go on), 2 when it is back; a killed master is
// failed over with no fence wait, and the new master takes writes at once.
func TestFenceOnRealRedis(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	g := startGroup(t, 100, 90)
	c.monitorGroup(t, "mymaster", g, 2)

	testwait.Until(t, 20*time.Second, "min-replicas-to-write 2 on the master", func() bool { return minReplicas(g.master) == "2" })
	lag, err := g.master.Client().ConfigGet(context.Background(), "min-replicas-max-lag").Result()
	if err != nil || lag["min-replicas-max-lag"] != "2" {
		t.Fatalf("min-replicas-max-lag %v (%v), want the default 2", lag, err)
	}

	g.r2.Kill()
	testwait.Until(t, 20*time.Second, "the fence lowered to 1", func() bool { return minReplicas(g.master) == "1" })
	testwait.Until(t, 10*time.Second, "a write accepted with one replica", func() bool {
		return g.master.Client().RPush(context.Background(), "k", "v").Err() == nil
	})
	g.r2.Restart()
	testwait.Until(t, 30*time.Second, "the fence raised to 2", func() bool { return minReplicas(g.master) == "2" })

	old := g.master.Addr()
	g.master.Kill()
	testwait.Until(t, 30*time.Second, "the promotion", func() bool {
		m, _, _ := c.leader().srv.FSM().Master("mymaster")
		return m.GetAddress() != old && m.GetEpoch() == 1
	})
	m, _, _ := c.leader().srv.FSM().Master("mymaster")
	for _, e := range m.GetEvents() {
		if e.GetType() == fsm.EventFenceWait {
			t.Fatalf("a killed master cost a fence wait: %v", e)
		}
	}
	promoted := g.r1
	if m.GetAddress() == g.r2.Addr() {
		promoted = g.r2
	}
	if err := promoted.Client().RPush(context.Background(), "k", "after").Err(); err != nil {
		t.Fatalf("the new master refused a write right after its promotion: %v", err)
	}
	testwait.Until(t, 30*time.Second, "the new master fenced by its replica", func() bool { return minReplicas(promoted) == "1" })
}
