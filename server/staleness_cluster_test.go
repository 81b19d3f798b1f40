package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/raftinel/raftinel/client"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rawSubscriber is a Sentinel subscription on a plain connection, to see
// the node close it.
type rawSubscriber struct {
	nc     net.Conn
	closed chan struct{}
}

func rawSubscribe(t *testing.T, addr, channel string) *rawSubscriber {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if _, err := fmt.Fprintf(nc, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(channel), channel); err != nil {
		t.Fatal(err)
	}
	s := &rawSubscriber{nc: nc, closed: make(chan struct{})}
	r := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "*3\r\n" {
		t.Fatalf("SUBSCRIBE confirmation: %q %v", line, err)
	}
	_ = nc.SetReadDeadline(time.Time{})
	go func() {
		defer close(s.closed)
		_, _ = io.Copy(io.Discard, r)
	}()
	return s
}

func noLeaderContact(err error) error {
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		return fmt.Errorf("got %v, want Unavailable", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == ReasonNoLeaderContact {
			return nil
		}
	}
	return fmt.Errorf("Unavailable without reason %s: %v", ReasonNoLeaderContact, err)
}

// A node cut off from the other two stops naming the master, on its
// Sentinel endpoint (the connection closes) and over gRPC (Unavailable),
// once --max-staleness has passed; it disconnects its subscribers and ends
// its WatchMaster streams. The majority fails the master over meanwhile,
// and a go-redis FailoverClient and the client package, both given the
// cut-off node first, still reach the new master. After the heal the node
// names the new master again.
func TestCutOffNodeStopsNamingMaster(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	c.sentinelsRegistered()
	g := startGroup(t, 100, 100)
	c.monitorGroup(t, "mymaster", g, 2)
	ctx := ctxT(t, 3*time.Minute)
	cut := c.followers(leader)[0]
	var majority []*inmemNode
	for _, nd := range c.nodes {
		if nd != cut {
			majority = append(majority, nd)
		}
	}
	old := g.master.Addr()
	oh, op, _ := net.SplitHostPort(old)
	cutSC := sentinelClient(t, cut)
	testwait.For(t, 20*time.Second, "the node to cut names the master", func() error {
		addr, err := cutSC.GetMasterAddrByName(ctx, "mymaster").Result()
		if err != nil || len(addr) != 2 || addr[0] != oh || addr[1] != op {
			return fmt.Errorf("%v %v", addr, err)
		}
		return nil
	})
	sub := rawSubscribe(t, cut.srv.SentinelAddr(), "+switch-master")
	watch, err := cut.client.WatchMaster(ctx, &coordinatorv1.WatchMasterRequest{Name: "mymaster"})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := watch.Recv(); err != nil || u.GetAddress() != old {
		t.Fatalf("first WatchMaster update from the node to cut: %v %v", u, err)
	}

	c.partition(cut)
	testwait.For(t, 30*time.Second, "the cut-off node's Sentinel endpoint closes get-master-addr-by-name", func() error {
		addr, err := cutSC.GetMasterAddrByName(ctx, "mymaster").Result()
		if err == nil {
			return fmt.Errorf("still answers %v", addr)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isConnReset(err) {
			return fmt.Errorf("failed otherwise than by a closed connection: %v", err)
		}
		return nil
	})
	select {
	case <-sub.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the cut-off node kept its +switch-master subscriber")
	}
	if _, err := watch.Recv(); noLeaderContact(err) != nil {
		t.Fatalf("the cut-off node's WatchMaster stream: %v", noLeaderContact(err))
	}
	if _, err := cut.client.GetMaster(ctx, &coordinatorv1.GetMasterRequest{Name: "mymaster"}); noLeaderContact(err) != nil {
		t.Fatalf("GetMaster on the cut-off node: %v", noLeaderContact(err))
	}
	if _, err := cut.client.ListMasters(ctx, &coordinatorv1.ListMastersRequest{}); noLeaderContact(err) != nil {
		t.Fatalf("ListMasters on the cut-off node: %v", noLeaderContact(err))
	}

	// The majority fails the master over; the cut-off node cannot know.
	g.master.Kill()
	var promoted *redistest.Server
	testwait.For(t, 60*time.Second, "the majority promotes a replica", func() error {
		var addr string
		for _, nd := range majority {
			m, _, ok := nd.srv.FSM().Master("mymaster")
			if !ok || m.GetEpoch() != 1 || m.GetAddress() == old || (addr != "" && m.GetAddress() != addr) {
				return fmt.Errorf("%s: %v", nd.id, m)
			}
			addr = m.GetAddress()
		}
		for _, s := range []*redistest.Server{g.r1, g.r2} {
			if s.Addr() == addr {
				promoted = s
				return nil
			}
		}
		return fmt.Errorf("%s is not a replica of the group", addr)
	})
	if m, _, _ := cut.srv.FSM().Master("mymaster"); m.GetAddress() != old {
		t.Fatalf("the cut-off node applied the failover: %v", m)
	}
	nh, np, _ := net.SplitHostPort(promoted.Addr())
	for _, nd := range majority {
		sc := sentinelClient(t, nd)
		testwait.For(t, 20*time.Second, nd.id+" names the new master", func() error {
			addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
			if err != nil || len(addr) != 2 || addr[0] != nh || addr[1] != np {
				return fmt.Errorf("%v %v", addr, err)
			}
			return nil
		})
	}
	if addr, err := cutSC.GetMasterAddrByName(ctx, "mymaster").Result(); err == nil {
		t.Fatalf("the cut-off node names %v", addr)
	}

	// Clients given the cut-off node first.
	addrs := []string{cut.srv.SentinelAddr()}
	for _, nd := range majority {
		addrs = append(addrs, nd.srv.SentinelAddr())
	}
	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: "mymaster", SentinelAddrs: addrs,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
	})
	t.Cleanup(func() { _ = fc.Close() })
	testwait.For(t, 20*time.Second, "a write through the FailoverClient", func() error {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return fc.Set(wctx, "after-cut", "1", 0).Err()
	})
	if v, err := promoted.Client().Get(ctx, "after-cut").Result(); err != nil || v != "1" {
		t.Fatalf("the FailoverClient's write is not on the new master %s: %q %v", promoted.Addr(), v, err)
	}
	cl, err := client.NewWithConfig(ctx, client.Config{Addrs: []string{cut.srv.GRPCAddr(), majority[0].srv.GRPCAddr(), majority[1].srv.GRPCAddr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if m, err := cl.Master(ctx, "mymaster"); err != nil || m.Address != promoted.Addr() {
		t.Fatalf("client.Master with the cut-off node first: %+v %v, want %s", m, err, promoted.Addr())
	}
	w := cl.WatchMaster(ctx, "mymaster")
	defer w.Close()
	if m, err := w.Wait(ctx); err != nil || m.Address != promoted.Addr() {
		t.Fatalf("client.WatchMaster with the cut-off node first: %+v %v, want %s", m, err, promoted.Addr())
	}

	c.heal(cut)
	testwait.For(t, 30*time.Second, "the healed node names the new master", func() error {
		addr, err := cutSC.GetMasterAddrByName(ctx, "mymaster").Result()
		if err != nil || len(addr) != 2 || addr[0] != nh || addr[1] != np {
			return fmt.Errorf("%v %v", addr, err)
		}
		return nil
	})
	if m, err := cut.client.GetMaster(ctx, &coordinatorv1.GetMasterRequest{Name: "mymaster"}); err != nil || m.GetMaster().GetAddress() != promoted.Addr() {
		t.Fatalf("GetMaster on the healed node: %v %v", m, err)
	}
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne)
}
