package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// unusedAddr is a 127.0.0.1 address where nothing listens: the masters of
// these tests are never reached, their epochs are driven by committed
// commands.
func unusedAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// monitorIdle monitors a master at an unreachable address with a down-after
// long enough that no node votes it down during a test.
func monitorIdle(t testing.TB, client coordinatorv1.CoordinatorServiceClient, name string) string {
	t.Helper()
	addr := unusedAddr(t)
	_, err := client.Monitor(ctxT(t, 10*time.Second), &coordinatorv1.MonitorRequest{Name: name, Address: addr,
		Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(time.Hour), FailoverTimeout: durationpb.New(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// promoteTo commits the failover journal that moves a master to addr, one
// epoch up, through the leader: BeginFailover, Promoted (unless the leader's
// own loop promoted first), and FinishFailover unless the leader's loop
// finished it first (it may: there is no replica left to re-point). It
// returns the new epoch.
func promoteTo(t testing.TB, leader *Server, name, addr string) uint64 {
	t.Helper()
	m, _, ok := leader.FSM().Master(name)
	if !ok {
		t.Fatalf("master %q is not known to the leader", name)
	}
	epoch := m.GetEpoch()
	if !hasReplica(m, addr) {
		mustApply(t, leader, &fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: &fsmv1.UpdateReplicas{
			Master: name, ExpectedEpoch: epoch, Replicas: []*fsmv1.Replica{{Address: addr}}}}})
	}
	mustApply(t, leader, &fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: &fsmv1.BeginFailover{
		Master: name, ExpectedEpoch: epoch, Reason: "manual", Candidate: addr}}})
	// With a live Redis at addr the leader may commit the promotion itself.
	_, err := leader.apply(ctxT(t, 10*time.Second), &fsmv1.Command{Kind: &fsmv1.Command_Promoted{Promoted: &fsmv1.Promoted{
		Master: name, ExpectedEpoch: epoch, Address: addr}}})
	if now, _, _ := leader.FSM().Master(name); err != nil && (now.GetEpoch() != epoch+1 || now.GetAddress() != addr) {
		t.Fatalf("apply Promoted: %v", err)
	}
	_, err = leader.apply(ctxT(t, 10*time.Second), &fsmv1.Command{Kind: &fsmv1.Command_FinishFailover{FinishFailover: &fsmv1.FinishFailover{
		Master: name, ExpectedEpoch: epoch + 1}}})
	var fe *fsm.Error
	if err != nil && !(errors.As(err, &fe) && fe.Kind == fsm.FailedPrecondition) {
		t.Fatal(err)
	}
	return epoch + 1
}

func hasReplica(m *fsmv1.Master, addr string) bool {
	for _, r := range m.GetReplicas() {
		if r.GetAddress() == addr {
			return true
		}
	}
	return false
}

func mustApply(t testing.TB, leader *Server, cmd *fsmv1.Command) {
	t.Helper()
	if _, err := leader.apply(ctxT(t, 10*time.Second), cmd); err != nil {
		t.Fatalf("apply %T: %v", cmd.Kind, err)
	}
}

func recvUpdate(t *testing.T, s coordinatorv1.CoordinatorService_WatchMasterClient) *coordinatorv1.WatchMasterResponse {
	t.Helper()
	u, err := s.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return u
}

func TestWatchMasterSendsCurrentThenEveryChangeInOrder(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	a := monitorIdle(t, leader.client, "mymaster")
	b := unusedAddr(t)
	follower := c.followers(leader)[0]
	testwait.Until(t, 10*time.Second, "the follower to know mymaster", func() bool {
		_, _, ok := follower.srv.FSM().Master("mymaster")
		return ok
	})

	stream, err := follower.client.WatchMaster(ctxT(t, 60*time.Second), &coordinatorv1.WatchMasterRequest{Name: "mymaster"})
	if err != nil {
		t.Fatal(err)
	}
	first := recvUpdate(t, stream)
	if first.Address != a || first.Epoch != 0 || first.Index == 0 || first.Name != "mymaster" {
		t.Fatalf("first update = %v, want %s at epoch 0 with an index", first, a)
	}

	// Epoch changes in a row: the stream may skip some when it is slower
	// than the commits, but it must end at the last one, with epochs going
	// up and each address the one of its epoch.
	const changes = 8
	addrAt := func(epoch uint64) string {
		if epoch%2 == 1 {
			return b
		}
		return a
	}
	for e := uint64(1); e <= changes; e++ {
		promoteTo(t, leader.srv, "mymaster", addrAt(e))
	}
	last := first
	for last.Epoch < changes {
		u := recvUpdate(t, stream)
		if u.Epoch <= last.Epoch || u.Index <= last.Index {
			t.Fatalf("update %v after %v: epoch and index must rise", u, last)
		}
		if u.Address != addrAt(u.Epoch) {
			t.Fatalf("update %v: want address %s at epoch %d", u, addrAt(u.Epoch), u.Epoch)
		}
		last = u
	}
}

func TestWatchMasterEndsWithNotFound(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	monitorIdle(t, leader.client, "gone")

	unknown, err := leader.client.WatchMaster(ctxT(t, 10*time.Second), &coordinatorv1.WatchMasterRequest{Name: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unknown.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown master: %v, want NotFound", err)
	}
	bad, err := leader.client.WatchMaster(ctxT(t, 10*time.Second), &coordinatorv1.WatchMasterRequest{Name: "bad name"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("invalid name: %v, want InvalidArgument", err)
	}

	stream, err := leader.client.WatchMaster(ctxT(t, 30*time.Second), &coordinatorv1.WatchMasterRequest{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	recvUpdate(t, stream)
	if _, err := leader.client.Remove(ctxT(t, 10*time.Second), &coordinatorv1.RemoveRequest{Name: "gone"}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.NotFound {
		t.Fatalf("after removal: %v, want NotFound", err)
	}
}

func TestWatchMasterResume(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	leader := c.leader()
	a := monitorIdle(t, leader.client, "mymaster")
	b := unusedAddr(t)
	promoteTo(t, leader.srv, "mymaster", b)
	promoteTo(t, leader.srv, "mymaster", a) // epoch 2

	// A client that last saw epoch 1 gets epoch 2 at once.
	older, err := leader.client.WatchMaster(ctxT(t, 30*time.Second), &coordinatorv1.WatchMasterRequest{Name: "mymaster", ResumeFromEpoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The watch hub publishes a commit after the FSM applied it: on a
	// loaded machine the stream may first repeat epoch 1 (what the client
	// saw, which the contract allows), never anything older, and then
	// epoch 2.
	u := recvUpdate(t, older)
	for u.Epoch == 1 && u.Address == b {
		u = recvUpdate(t, older)
	}
	if u.Epoch != 2 || u.Address != a {
		t.Fatalf("resume from 1: %v, want %s at epoch 2", u, a)
	}
	// A client that saw epoch 3 elsewhere hears nothing older from this
	// node: its first message is epoch 3, once committed here.
	ahead, err := leader.client.WatchMaster(ctxT(t, 30*time.Second), &coordinatorv1.WatchMasterRequest{Name: "mymaster", ResumeFromEpoch: 3})
	if err != nil {
		t.Fatal(err)
	}
	promoteTo(t, leader.srv, "mymaster", b)
	if u := recvUpdate(t, ahead); u.Epoch != 3 || u.Address != b {
		t.Fatalf("resume from 3: %v, want %s at epoch 3", u, b)
	}
}

// A client that saw an index a node has not applied yet gets no answer
// from it before it has: not a NotFound for a master it has not learned.
func TestWatchMasterWaitsForMinIndex(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	behind := c.followers(leader)[0]
	c.partition(behind)
	resp, err := leader.client.Monitor(ctxT(t, 10*time.Second), &coordinatorv1.MonitorRequest{Name: "later", Address: unusedAddr(t),
		Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := behind.client.WatchMaster(ctxT(t, 30*time.Second), &coordinatorv1.WatchMasterRequest{Name: "later",
		Consistency: &coordinatorv1.ReadConsistency{MinIndex: resp.Index}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := behind.srv.FSM().Master("later"); ok {
		t.Fatal("the partitioned follower applied the write")
	}
	c.heal(behind)
	if u := recvUpdate(t, stream); u.Name != "later" || u.Index < resp.Index {
		t.Fatalf("after catching up: %v, want later at index %d or more", u, resp.Index)
	}
}

// startNode starts a one-node cluster with a config the test adjusts.
func startNode(t testing.TB, adjust func(*Config)) (*Server, *grpc.ClientConn) {
	t.Helper()
	addr, trans := raft.NewInmemTransport("")
	logs := raft.NewInmemStore()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "n1", GRPCListener: lis, Logger: testLogger(t), LogStore: logs, StableStore: logs,
		SnapshotStore: raft.NewInmemSnapshotStore(), Transport: trans, TuneRaft: fastRaft,
		Bootstrap: []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: addr}}}
	adjust(&cfg)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	testwait.Until(t, 10*time.Second, "the node to lead", srv.IsLeader)
	return srv, conn
}

func TestStreamsEndAtMaxStreamAge(t *testing.T) {
	_, conn := startNode(t, func(c *Config) { c.MaxStreamAge = 300 * time.Millisecond })
	client := coordinatorv1.NewCoordinatorServiceClient(conn)
	monitorIdle(t, client, "mymaster")

	watch, err := client.WatchMaster(ctxT(t, 30*time.Second), &coordinatorv1.WatchMasterRequest{Name: "mymaster"})
	if err != nil {
		t.Fatal(err)
	}
	recvUpdate(t, watch)
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("WatchMaster past its age: %v, want Unavailable", err)
	}
	behind, err := client.WatchMaster(ctxT(t, 30*time.Second), &coordinatorv1.WatchMasterRequest{Name: "mymaster",
		Consistency: &coordinatorv1.ReadConsistency{MinIndex: 1 << 40}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := behind.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("WatchMaster waiting for an index past its age: %v, want Unavailable", err)
	}
	events, err := client.WatchEvents(ctxT(t, 30*time.Second), &coordinatorv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("WatchEvents past its age: %v, want Unavailable", err)
	}
}

func TestMaxStreamAgeValidation(t *testing.T) {
	c := Config{ID: "n1", RaftAddr: "127.0.0.1:7000", GRPCAddr: "127.0.0.1:7100", DataDir: t.TempDir(), MaxStreamAge: -time.Second}
	if err := c.Validate(); err == nil {
		t.Fatal("a negative max stream age was accepted")
	}
	c.MaxStreamAge = 0
	if err := c.Validate(); err != nil || c.MaxStreamAge != DefaultMaxStreamAge {
		t.Fatalf("default max stream age: %v, %v", c.MaxStreamAge, err)
	}
}

// recvEvents reads events until one of the given type arrives.
func recvEventsUntil(t *testing.T, s coordinatorv1.CoordinatorService_WatchEventsClient, typ string) []*coordinatorv1.Event {
	t.Helper()
	var out []*coordinatorv1.Event
	for range 1000 {
		r, err := s.Recv()
		if err != nil {
			t.Fatalf("recv after %d events: %v", len(out), err)
		}
		out = append(out, r.Event)
		if r.Event.Type == typ {
			return out
		}
	}
	t.Fatalf("no %s event in %d events", typ, len(out))
	return nil
}

func TestWatchEvents(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	a := monitorIdle(t, leader.client, "m1")
	monitorIdle(t, leader.client, "m2")
	b := unusedAddr(t)
	promoteTo(t, leader.srv, "m1", b)
	follower := c.followers(leader)[0]
	testwait.Until(t, 10*time.Second, "the follower to apply the promotion", func() bool {
		m, _, ok := follower.srv.FSM().Master("m1")
		return ok && m.GetEpoch() == 1
	})

	// Replay: the stored history of m1 first, oldest first, then live
	// events, with no gap and no repeat.
	replay, err := follower.client.WatchEvents(ctxT(t, 60*time.Second), &coordinatorv1.WatchEventsRequest{Master: "m1", Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	history := recvEventsUntil(t, replay, "+switch-master")
	ah, ap := fsm.SplitAddress(a)
	bh, bp := fsm.SplitAddress(b)
	if history[0].Type != "+monitor" || history[0].Payload != fmt.Sprintf("master m1 %s %s quorum 2", ah, ap) {
		t.Fatalf("history starts with %v, want +monitor", history[0])
	}
	sw := history[len(history)-1]
	if sw.Payload != fmt.Sprintf("m1 %s %s %s %s", ah, ap, bh, bp) || sw.Epoch != 1 || sw.Master != "m1" || sw.At == nil {
		t.Fatalf("+switch-master event = %v", sw)
	}

	// Resume after a given seq, on another node: the same events, by seq.
	other := c.followers(leader)[1]
	testwait.Until(t, 10*time.Second, "the other follower to apply the promotion", func() bool {
		return other.srv.FSM().LastEventSeq() >= sw.Seq
	})
	resumed, err := other.client.WatchEvents(ctxT(t, 60*time.Second), &coordinatorv1.WatchEventsRequest{Master: "m1", AfterSeq: sw.Seq - 1})
	if err != nil {
		t.Fatal(err)
	}
	if md, err := resumed.Header(); err != nil || len(md.Get(afterSeqHeader)) != 1 || md.Get(afterSeqHeader)[0] != fmt.Sprint(sw.Seq-1) {
		t.Fatalf("resumed stream header %v, %v", md, err)
	}
	if r, err := resumed.Recv(); err != nil || r.Event.Seq != sw.Seq || r.Event.Payload != sw.Payload {
		t.Fatalf("resumed after %d: %v, %v, want %v", sw.Seq-1, r, err, sw)
	}
	both, err := other.client.WatchEvents(ctxT(t, 10*time.Second), &coordinatorv1.WatchEventsRequest{Replay: true, AfterSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := both.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("replay with after_seq: %v, want InvalidArgument", err)
	}

	// Live only, every master: it starts after the header and sees
	// events of both masters.
	before := follower.srv.FSM().LastEventSeq()
	live, err := follower.client.WatchEvents(ctxT(t, 60*time.Second), &coordinatorv1.WatchEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Header(); err != nil {
		t.Fatal(err)
	}
	promoteTo(t, leader.srv, "m2", unusedAddr(t))
	promoteTo(t, leader.srv, "m1", a)

	got := recvEventsUntil(t, live, "+switch-master")
	if got[0].Seq <= before || got[len(got)-1].Master != "m2" {
		t.Fatalf("live stream began with %v and its first switch is %v, want m2's", got[0], got[len(got)-1])
	}
	got = recvEventsUntil(t, live, "+switch-master")
	if got[len(got)-1].Master != "m1" {
		t.Fatalf("second switch on the live stream: %v, want m1's", got[len(got)-1])
	}
	// The filtered stream saw m1's second switch and nothing of m2.
	for _, e := range recvEventsUntil(t, replay, "+switch-master") {
		if e.Master != "m1" {
			t.Fatalf("filtered stream delivered %v", e)
		}
		if e.Seq <= sw.Seq {
			t.Fatalf("event %v repeats the history (last %d)", e, sw.Seq)
		}
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	follower := c.followers(leader)[0]

	// Sent to a follower, it is forwarded to the leader.
	resp, err := follower.client.TransferLeadership(ctxT(t, 10*time.Second), &coordinatorv1.TransferLeadershipRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.PreviousLeaderId != leader.id {
		t.Fatalf("previous leader %q, want %q", resp.PreviousLeaderId, leader.id)
	}
	next := c.leader()
	if next == leader {
		t.Fatalf("%s still leads after a transfer", leader.id)
	}

	// To a named node.
	target := c.followers(next)[0]
	if _, err := leader.client.TransferLeadership(ctxT(t, 10*time.Second), &coordinatorv1.TransferLeadershipRequest{Id: target.id}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, target.id+" to lead", target.srv.IsLeader)

	for _, tc := range []struct {
		id   string
		code codes.Code
	}{{target.id, codes.FailedPrecondition}, {"n9", codes.NotFound}} {
		_, err := next.client.TransferLeadership(ctxT(t, 10*time.Second), &coordinatorv1.TransferLeadershipRequest{Id: tc.id})
		if status.Code(err) != tc.code {
			t.Fatalf("transfer to %s: %v, want %v", tc.id, err, tc.code)
		}
	}
}

func TestHealthAndReflection(t *testing.T) {
	srv, conn := startNode(t, func(*Config) {})
	health := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", coordinatorv1.CoordinatorService_ServiceDesc.ServiceName} {
		resp, err := health.Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", svc, resp, err)
		}
	}

	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range r.GetListServicesResponse().GetService() {
		found = found || s.GetName() == coordinatorv1.CoordinatorService_ServiceDesc.ServiceName
	}
	if !found {
		t.Fatalf("reflection lists %v", r.GetListServicesResponse())
	}
	_ = refl.CloseSend()

	// Shutting down turns the status to NOT_SERVING before the server stops.
	watch, err := health.Watch(ctxT(t, 10*time.Second), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health watch: %v %v", r, err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		// Far longer than the wait below: a watch that held GracefulStop
		// would show as a Shutdown that does not return.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	// The watch sees NOT_SERVING or the end of the stream, and then ends.
	for range 3 {
		r, err := watch.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && status.Code(err) != codes.Unavailable {
				t.Fatalf("health watch ended with %v, want Unavailable", err)
			}
			break
		}
		if r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health during shutdown: %v", r)
		}
	}
	select {
	case <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("Shutdown waited for the health watch")
	}
}
