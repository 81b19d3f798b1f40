package server

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/client"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The client package cannot start a node (it must not import the server),
// so its tests against real nodes live here: the server's tests may import
// the client, which imports nothing of the server.

func (c *testCluster) grpcAddrs() []string {
	var out []string
	for _, nd := range c.nodes {
		if nd.srv != nil {
			out = append(out, nd.srv.GRPCAddr())
		}
	}
	return out
}

func newClient(t *testing.T, addrs ...string) *client.Client {
	t.Helper()
	cl, err := client.New(ctxT(t, 10*time.Second), addrs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// nextUpdate reads the watcher's next master, failing on an epoch lower
// than the last one seen.
func nextUpdate(t *testing.T, updates <-chan client.Master, last *client.Master) client.Master {
	t.Helper()
	select {
	case m, ok := <-updates:
		if !ok {
			t.Fatal("the watcher stopped")
		}
		if m.Epoch < last.Epoch {
			t.Fatalf("epoch went down: %+v after %+v", m, *last)
		}
		*last = m
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("no update after %+v within 30s", *last)
	}
	return client.Master{}
}

func TestClientMasterAndWatchAcrossNodeRestart(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	a := monitorIdle(t, c.leader().client, "mymaster")
	b := unusedAddr(t)
	for _, nd := range c.nodes {
		testwait.Until(t, 10*time.Second, nd.id+" to know mymaster", func() bool {
			_, _, ok := nd.srv.FSM().Master("mymaster")
			return ok
		})
	}
	cl := newClient(t, c.grpcAddrs()...)
	m, err := cl.Master(ctxT(t, 10*time.Second), "mymaster")
	if err != nil || m.Address != a || m.Epoch != 0 || m.Index == 0 {
		t.Fatalf("Master = %+v, %v", m, err)
	}
	if _, err := cl.Master(ctxT(t, 10*time.Second), "nope"); err == nil || !strings.Contains(err.Error(), `unknown master "nope"`) {
		t.Fatalf("unknown master: %v", err)
	}

	w := cl.WatchMaster(context.Background(), "mymaster")
	defer w.Close()
	updates := w.Updates()
	var last client.Master
	if m := nextUpdate(t, updates, &last); m.Address != a || m.Epoch != 0 {
		t.Fatalf("first update %+v", m)
	}

	// Stop the node the watch streams from: it goes on elsewhere.
	var watched *inmemNode
	testwait.Until(t, 10*time.Second, "the watcher to name its node", func() bool {
		for _, nd := range c.nodes {
			if nd.srv != nil && nd.srv.GRPCAddr() == w.Node() {
				watched = nd
				return true
			}
		}
		return false
	})
	c.stop(watched)
	promoteTo(t, c.leader().srv, "mymaster", b)
	for last.Epoch < 1 {
		nextUpdate(t, updates, &last)
	}
	if last.Address != b || last.Epoch != 1 {
		t.Fatalf("after the stop: %+v, want %s at epoch 1", last, b)
	}
	if n := w.Node(); n == "" {
		t.Log("the watcher is between streams")
	}

	// Back with its state, and another change: still in order.
	c.start(watched, nil)
	promoteTo(t, c.leader().srv, "mymaster", a)
	for last.Epoch < 2 {
		nextUpdate(t, updates, &last)
	}
	if last.Address != a {
		t.Fatalf("epoch 2 at %s, want %s", last.Address, a)
	}
	if cur, ok := w.Current(); !ok || cur != last {
		t.Fatalf("Current = %+v, last update %+v", cur, last)
	}
}

func TestClientTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader()
	c.registered()
	// Ask a follower only: the write is forwarded to the leader.
	cl := newClient(t, c.followers(old)[0].srv.GRPCAddr())
	if _, err := cl.TransferLeadership(ctxT(t, 10*time.Second), ""); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "another leader", func() bool { return !old.srv.IsLeader() && c.leader() != old })
}

// infoPort is the tcp_port the Redis server behind rdb reports.
func infoPort(ctx context.Context, rdb *redis.Client) (string, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "tcp_port:"); ok {
			return v, nil
		}
	}
	return "", nil
}

func TestRedisClientSwitchesToTheNewMaster(t *testing.T) {
	redistest.Require(t)
	// Two standalone servers, both alive all along: only the pool
	// switching can move the client from one to the other.
	oldMaster, newMaster := redistest.Start(t), redistest.Start(t)
	c := newTestCluster(t, 1, nil)
	leader := c.leader()
	_, err := leader.client.Monitor(ctxT(t, 10*time.Second), &coordinatorv1.MonitorRequest{Name: "mymaster", Address: oldMaster.Addr(),
		Settings: &coordinatorv1.MasterSettings{Quorum: 1, DownAfter: durationpb.New(time.Hour), FailoverTimeout: durationpb.New(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, c.grpcAddrs()...)
	w := cl.WatchMaster(context.Background(), "mymaster")
	defer w.Close()
	rdb := client.NewRedisClient(w, &redis.Options{DialTimeout: 2 * time.Second, PoolSize: 4})
	defer rdb.Close()

	ctx := ctxT(t, 60*time.Second)
	if port, err := infoPort(ctx, rdb); err != nil || port != strconv.Itoa(oldMaster.Port()) {
		t.Fatalf("before the switch the client reaches port %q (%v), want %d", port, err, oldMaster.Port())
	}
	// Keep a few connections pooled, all to the old master.
	for range 8 {
		if err := rdb.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}

	promoteTo(t, leader.srv, "mymaster", newMaster.Addr())
	testwait.Until(t, 30*time.Second, "the watcher to see epoch 1", func() bool {
		m, _ := w.Current()
		return m.Epoch == 1
	})
	failed := 0
	testwait.Until(t, 30*time.Second, "the Redis client to reach the new master", func() bool {
		port, err := infoPort(ctx, rdb)
		if err != nil {
			failed++
			return false
		}
		return port == strconv.Itoa(newMaster.Port())
	})
	t.Logf("commands that failed during the switch: %d", failed)
	// And it stays there: every pooled connection is to the new master.
	for range 8 {
		if port, err := infoPort(ctx, rdb); err != nil || port != strconv.Itoa(newMaster.Port()) {
			t.Fatalf("after the switch: port %q, %v", port, err)
		}
	}
}
