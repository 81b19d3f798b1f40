package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// testWriter routes a node's log lines to t.Log so they show on failure only.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func fastRaft(c *raft.Config) {
	c.HeartbeatTimeout = 150 * time.Millisecond
	c.ElectionTimeout = 150 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
}

// inmemNode keeps what a node needs to be restarted with its state.
type inmemNode struct {
	id     string
	addr   raft.ServerAddress
	trans  *raft.InmemTransport
	logs   *raft.InmemStore
	snaps  *raft.InmemSnapshotStore
	srv    *Server
	conn   *grpc.ClientConn
	client coordinatorv1.CoordinatorServiceClient
}

type testCluster struct {
	t     testing.TB
	nodes []*inmemNode
	tune  func(*raft.Config)
}

// newTestCluster starts n nodes on raft's in-memory transport and stores,
// each with real gRPC and Sentinel endpoints on free 127.0.0.1 ports.
func newTestCluster(t testing.TB, n int, tune func(*raft.Config)) *testCluster {
	c := &testCluster{t: t, tune: tune}
	var boot []raft.Server
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("127.0.0.1:%d", 17000+i)))
		c.nodes = append(c.nodes, &inmemNode{id: id, addr: addr, trans: trans, logs: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()})
		boot = append(boot, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: addr})
	}
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
	for _, nd := range c.nodes {
		c.start(nd, boot)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.stop(nd)
		}
	})
	return c
}

func (c *testCluster) start(nd *inmemNode, boot []raft.Server) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	tune := func(rc *raft.Config) {
		fastRaft(rc)
		if c.tune != nil {
			c.tune(rc)
		}
	}
	srv, err := New(Config{
		ID: nd.id, RaftAddr: string(nd.addr), GRPCListener: lis, Bootstrap: boot, SentinelAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0",
		Logger: testLogger(c.t).With("test_node", nd.id), LogStore: nd.logs, StableStore: nd.logs,
		SnapshotStore: nd.snaps, Transport: nd.trans, TuneRaft: tune, RequestTimeout: 3 * time.Second,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	nd.srv = srv
	nd.conn, err = grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	nd.client = coordinatorv1.NewCoordinatorServiceClient(nd.conn)
}

func (c *testCluster) stop(nd *inmemNode) {
	if nd.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = nd.srv.Shutdown(ctx)
	_ = nd.conn.Close()
	nd.srv = nil
}

// partition cuts node nd off from every other node, both ways.
func (c *testCluster) partition(nd *inmemNode) {
	for _, o := range c.nodes {
		if o != nd {
			nd.trans.Disconnect(o.addr)
			o.trans.Disconnect(nd.addr)
		}
	}
}

func (c *testCluster) heal(nd *inmemNode) {
	for _, o := range c.nodes {
		if o != nd {
			nd.trans.Connect(o.addr, o.trans)
			o.trans.Connect(nd.addr, nd.trans)
		}
	}
}

// leader waits for exactly one running node, among those given, to lead.
func (c *testCluster) leader(among ...*inmemNode) *inmemNode {
	c.t.Helper()
	if len(among) == 0 {
		among = c.nodes
	}
	var l *inmemNode
	testwait.Until(c.t, 10*time.Second, "a leader", func() bool {
		l = nil
		for _, nd := range among {
			if nd.srv != nil && nd.srv.IsLeader() {
				if l != nil {
					return false
				}
				l = nd
			}
		}
		return l != nil
	})
	return l
}

func (c *testCluster) followers(leader *inmemNode) []*inmemNode {
	var out []*inmemNode
	for _, nd := range c.nodes {
		if nd != leader && nd.srv != nil {
			out = append(out, nd)
		}
	}
	return out
}

// registered waits until every running node knows every node's gRPC address.
func (c *testCluster) registered() {
	c.t.Helper()
	testwait.Until(c.t, 10*time.Second, "every node registered", func() bool {
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			if len(nd.srv.FSM().Nodes()) != len(c.nodes) {
				return false
			}
		}
		return true
	})
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
