package client_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/client"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeNode serves a scripted WatchMaster: each stream gets the next script
// entry's updates and then its error. It records the resume epochs asked.
type fakeNode struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	mu      sync.Mutex
	scripts [][]*coordinatorv1.WatchMasterResponse
	resumes []uint64
}

func (f *fakeNode) ListMembers(context.Context, *coordinatorv1.ListMembersRequest) (*coordinatorv1.ListMembersResponse, error) {
	return &coordinatorv1.ListMembersResponse{}, nil
}

func (f *fakeNode) GetMaster(_ context.Context, req *coordinatorv1.GetMasterRequest) (*coordinatorv1.GetMasterResponse, error) {
	if req.GetName() != "mymaster" {
		return nil, status.Errorf(codes.NotFound, "unknown master %q", req.GetName())
	}
	return &coordinatorv1.GetMasterResponse{Master: &coordinatorv1.Master{Name: "mymaster", Address: "10.0.0.1:6379", Epoch: 4}, Index: 9}, nil
}

func (f *fakeNode) WatchMaster(req *coordinatorv1.WatchMasterRequest, s coordinatorv1.CoordinatorService_WatchMasterServer) error {
	f.mu.Lock()
	f.resumes = append(f.resumes, req.GetResumeFromEpoch())
	if len(f.scripts) == 0 {
		f.mu.Unlock()
		<-s.Context().Done()
		return status.FromContextError(s.Context().Err()).Err()
	}
	script := f.scripts[0]
	f.scripts = f.scripts[1:]
	f.mu.Unlock()
	for _, u := range script {
		if err := s.Send(u); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "stream reached this node's maximum stream age")
}

func serve(t *testing.T, f *fakeNode) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func update(addr string, epoch uint64) *coordinatorv1.WatchMasterResponse {
	return &coordinatorv1.WatchMasterResponse{Name: "mymaster", Address: addr, Epoch: epoch, Index: epoch * 10}
}

func TestWatcherResumesAndNeverGoesBack(t *testing.T) {
	// Node 1 ends its stream after epoch 2; node 2 (a lagging one, in
	// this script) first repeats epoch 1, then moves to 3.
	n1 := &fakeNode{scripts: [][]*coordinatorv1.WatchMasterResponse{{update("a:1", 1), update("b:1", 2)}}}
	n2 := &fakeNode{scripts: [][]*coordinatorv1.WatchMasterResponse{{update("a:1", 1), update("c:1", 3)}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.NewWithConfig(ctx, client.Config{Addrs: []string{serve(t, n1), serve(t, n2)}, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := c.WatchMaster(ctx, "mymaster")
	defer w.Close()
	var got []uint64
	for m := range w.Updates() {
		if len(got) > 0 && m.Epoch <= got[len(got)-1] {
			t.Fatalf("epoch %d after %v", m.Epoch, got)
		}
		got = append(got, m.Epoch)
		if m.Epoch == 3 {
			if m.Address != "c:1" {
				t.Fatalf("epoch 3 at %s", m.Address)
			}
			break
		}
	}
	n2.mu.Lock()
	defer n2.mu.Unlock()
	if len(n2.resumes) == 0 || n2.resumes[0] != 2 {
		t.Fatalf("node 2 was asked to resume from %v, want 2 first", n2.resumes)
	}
}

func TestMasterAndNotFound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, serve(t, &fakeNode{}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m, err := c.Master(ctx, "mymaster")
	if err != nil || m != (client.Master{Name: "mymaster", Address: "10.0.0.1:6379", Epoch: 4, Index: 9}) {
		t.Fatalf("Master = %+v, %v", m, err)
	}
	if _, err := c.Master(ctx, "other"); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown master: %v", err)
	}
}

func TestNewFailsWhenNoNodeAnswers(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := client.New(ctx, addr); err == nil {
		t.Fatal("New succeeded with no node")
	}
	if _, err := client.New(ctx); err == nil {
		t.Fatal("New succeeded with no address")
	}
}

// leaderFake answers TransferLeadership as a follower that names the
// leader (leaderAddr set), or as the leader; it counts the requests.
type leaderFake struct {
	fakeNode
	leaderAddr string
	mu         sync.Mutex
	calls      int
}

func (f *leaderFake) TransferLeadership(context.Context, *coordinatorv1.TransferLeadershipRequest) (*coordinatorv1.TransferLeadershipResponse, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.leaderAddr != "" {
		return nil, status.Errorf(codes.Unavailable, "not leader; the leader is n2 at %s", f.leaderAddr)
	}
	return &coordinatorv1.TransferLeadershipResponse{PreviousLeaderId: "n2", LeaderId: "n3"}, nil
}

func (f *leaderFake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func serveLeaderFake(t *testing.T, f *leaderFake) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestWritesFollowTheLeaderHint(t *testing.T) {
	leader := &leaderFake{}
	follower := &leaderFake{leaderAddr: serveLeaderFake(t, leader)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Only the follower is configured: the leader is learned from its error.
	c, err := client.NewWithConfig(ctx, client.Config{Addrs: []string{serveLeaderFake(t, follower)}, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id, err := c.TransferLeadership(ctx, "")
	if err != nil || id != "n3" {
		t.Fatalf("TransferLeadership = %q, %v", id, err)
	}
	// The next write goes to the leader at once.
	if _, err := c.TransferLeadership(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if follower.count() != 1 || leader.count() != 2 {
		t.Fatalf("follower got %d calls, leader %d; want 1 and 2", follower.count(), leader.count())
	}
}

func TestCallGivesUpAtTheDeadline(t *testing.T) {
	follower := &leaderFake{leaderAddr: "127.0.0.1:1"} // a hint to nowhere
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, serveLeaderFake(t, follower))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	_, err = c.TransferLeadership(short, "")
	if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "last failure") {
		t.Fatalf("TransferLeadership without a reachable leader: %v, want the deadline", err)
	}
}
