package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func monitorReq(name, addr string) *coordinatorv1.MonitorRequest {
	return &coordinatorv1.MonitorRequest{Name: name, Address: addr, Settings: &coordinatorv1.MasterSettings{
		Quorum: 2, DownAfter: durationpb.New(time.Second),
	}}
}

func TestWritesOnAnyNodeAreServedEverywhere(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	follower := c.followers(leader)[0]

	// A write sent to a follower is forwarded to the leader.
	resp, err := follower.client.Monitor(ctxT(t, 5*time.Second), monitorReq("mymaster", "127.0.0.1:6379"))
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes {
		got, err := nd.client.GetMaster(ctxT(t, 5*time.Second), &coordinatorv1.GetMasterRequest{
			Name: "mymaster", Consistency: &coordinatorv1.ReadConsistency{MinIndex: resp.Index},
		})
		if err != nil {
			t.Fatalf("%s: %v", nd.id, err)
		}
		if got.Master.Address != "127.0.0.1:6379" || got.Master.Settings.DownAfter.AsDuration() != time.Second || got.Index < resp.Index {
			t.Fatalf("%s served %v at %d", nd.id, got.Master, got.Index)
		}
		if got.Master.Settings.PingPeriod != nil {
			t.Fatalf("%s: ping-period %v, want unset (automatic)", nd.id, got.Master.Settings.PingPeriod)
		}
	}
	if _, err := follower.client.Set(ctxT(t, 5*time.Second), &coordinatorv1.SetRequest{Name: "mymaster",
		Options: []*coordinatorv1.Option{{Key: "auth-pass", Value: "secret"}, {Key: "ping-period", Value: "200ms"},
			{Key: "master-reboot-down-after-period", Value: "30s"}}}); err != nil {
		t.Fatal(err)
	}
	list, err := leader.client.ListMasters(ctxT(t, 5*time.Second), &coordinatorv1.ListMastersRequest{})
	if err != nil || len(list.Masters) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	if s := list.Masters[0].Settings; s.AuthPass != "" || !s.AuthPassSet {
		t.Fatalf("a read must not reveal the password: %v", s)
	}
	if p := list.Masters[0].Settings.PingPeriod.AsDuration(); p != 200*time.Millisecond {
		t.Fatalf("ping-period %v after SET, want 200ms", p)
	}
	if s := list.Masters[0].Settings; s.GetMasterRebootDownAfterPeriod().AsDuration() != 30*time.Second {
		t.Fatalf("master-reboot-down-after-period not served: %v", s)
	}
	// Monitor takes it too, and a negative period is refused, not read as off.
	if _, err := follower.client.Monitor(ctxT(t, 5*time.Second), &coordinatorv1.MonitorRequest{Name: "rebooting", Address: "127.0.0.1:6390",
		Settings: &coordinatorv1.MasterSettings{Quorum: 2, MasterRebootDownAfterPeriod: durationpb.New(-time.Second)}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("negative master-reboot-down-after-period: %v", err)
	}
	mon, err := follower.client.Monitor(ctxT(t, 5*time.Second), &coordinatorv1.MonitorRequest{Name: "rebooting", Address: "127.0.0.1:6390",
		Settings: &coordinatorv1.MasterSettings{Quorum: 2, MasterRebootDownAfterPeriod: durationpb.New(5 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := follower.client.GetMaster(ctxT(t, 5*time.Second), &coordinatorv1.GetMasterRequest{Name: "rebooting",
		Consistency: &coordinatorv1.ReadConsistency{MinIndex: mon.Index}})
	if err != nil || got.Master.Settings.GetMasterRebootDownAfterPeriod().AsDuration() != 5*time.Second {
		t.Fatalf("monitor with master-reboot-down-after-period: %v %v", got, err)
	}
	if _, err := follower.client.Remove(ctxT(t, 5*time.Second), &coordinatorv1.RemoveRequest{Name: "mymaster"}); err != nil {
		t.Fatal(err)
	}
}

func TestErrorCodes(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	follower := c.followers(leader)[0]
	if _, err := follower.client.Monitor(ctxT(t, 5*time.Second), monitorReq("m", "127.0.0.1:6379")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"unknown master read", func() error {
			_, err := follower.client.GetMaster(ctxT(t, 5*time.Second), &coordinatorv1.GetMasterRequest{Name: "nope"})
			return err
		}, codes.NotFound, `unknown master "nope"`},
		{"unknown master write", func() error {
			_, err := follower.client.Remove(ctxT(t, 5*time.Second), &coordinatorv1.RemoveRequest{Name: "nope"})
			return err
		}, codes.NotFound, `unknown master "nope"`},
		{"invalid address", func() error {
			_, err := follower.client.Monitor(ctxT(t, 5*time.Second), monitorReq("x", "127.0.0.1:99999"))
			return err
		}, codes.InvalidArgument, "invalid port"},
		{"duplicate", func() error {
			_, err := leader.client.Monitor(ctxT(t, 5*time.Second), monitorReq("m", "127.0.0.1:6380"))
			return err
		}, codes.AlreadyExists, "Duplicate master name"},
		{"bad option", func() error {
			_, err := follower.client.Set(ctxT(t, 5*time.Second), &coordinatorv1.SetRequest{Name: "m",
				Options: []*coordinatorv1.Option{{Key: "quorum", Value: "0"}}})
			return err
		}, codes.InvalidArgument, "Invalid argument '0' for SENTINEL SET 'quorum'"},
		{"remove unknown node", func() error {
			_, err := follower.client.RemoveNode(ctxT(t, 5*time.Second), &coordinatorv1.RemoveNodeRequest{Id: "n9"})
			return err
		}, codes.NotFound, `unknown node "n9"`},
		{"min_index beyond the log", func() error {
			_, err := follower.client.ListMasters(ctxT(t, 300*time.Millisecond), &coordinatorv1.ListMastersRequest{
				Consistency: &coordinatorv1.ReadConsistency{MinIndex: 1 << 40}})
			return err
		}, codes.DeadlineExceeded, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.msg) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}

func TestLeaderLossElectsANewLeaderThatTakesWrites(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader()
	c.registered()
	if _, err := old.client.Monitor(ctxT(t, 5*time.Second), monitorReq("before", "127.0.0.1:6379")); err != nil {
		t.Fatal(err)
	}
	c.partition(old)
	c.stop(old)
	rest := c.followers(old)
	next := c.leader(rest...)
	if next == old {
		t.Fatal("stopped node still leads")
	}
	other := rest[0]
	if other == next {
		other = rest[1]
	}
	resp, err := other.client.Monitor(ctxT(t, 5*time.Second), monitorReq("after", "127.0.0.1:6380"))
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range rest {
		if err := nd.srv.FSM().WaitForIndex(ctxT(t, 5*time.Second), resp.Index); err != nil {
			t.Fatal(err)
		}
		if ms, _ := nd.srv.FSM().Masters(); len(ms) != 2 {
			t.Fatalf("%s has %d masters", nd.id, len(ms))
		}
	}
}

// A leader cut off from the majority cannot commit; the majority elects a
// leader of its own and commits; after healing the old leader catches up.
func TestMinorityPartitionCannotCommit(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	old := c.leader()
	c.registered()
	c.partition(old)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := old.srv.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
		Name: "lost", Address: "127.0.0.1:6379", Settings: &fsmv1.MasterSettings{Quorum: 1}}}})
	if err == nil {
		t.Fatal("an isolated leader committed a write")
	}
	if st := status.Convert(toStatus(err)); st.Code() != codes.Unavailable && st.Code() != codes.DeadlineExceeded {
		t.Fatalf("isolated write: %v", st)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("isolated write took %v, past its deadline", time.Since(start))
	}

	rest := c.followers(old)
	next := c.leader(rest...)
	resp, err := next.client.Monitor(ctxT(t, 5*time.Second), monitorReq("kept", "127.0.0.1:6380"))
	if err != nil {
		t.Fatal(err)
	}
	c.heal(old)
	if err := old.srv.FSM().WaitForIndex(ctxT(t, 10*time.Second), resp.Index); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := old.srv.FSM().Master("lost"); ok {
		t.Fatal("the uncommitted write survived the heal")
	}
	if _, _, ok := old.srv.FSM().Master("kept"); !ok {
		t.Fatal("the old leader did not catch up")
	}
}

func TestLaggingFollowerInstallsSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(rc *raft.Config) {
		rc.SnapshotThreshold = 5
		rc.TrailingLogs = 2
	})
	leader := c.leader()
	c.registered()
	lagging := c.followers(leader)[0]
	c.partition(lagging)
	var last uint64
	for i := range 20 {
		resp, err := leader.client.Monitor(ctxT(t, 5*time.Second), monitorReq(fmt.Sprintf("m%d", i), "127.0.0.1:6379"))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Index
	}
	if err := leader.srv.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.heal(lagging)
	if err := lagging.srv.FSM().WaitForIndex(ctxT(t, 10*time.Second), last); err != nil {
		t.Fatal(err)
	}
	// The snapshot index is recorded just after the restore wakes readers.
	testwait.Until(t, 5*time.Second, "the follower to record an installed snapshot", func() bool {
		return lagging.srv.Raft().Stats()["last_snapshot_index"] != "0"
	})
	if !proto.Equal(mastersOnly(leader.srv.FSM().State()), mastersOnly(lagging.srv.FSM().State())) {
		t.Fatal("states differ after catch-up")
	}
}

func mastersOnly(s *fsmv1.State) *fsmv1.State { return &fsmv1.State{Masters: s.Masters} }

func TestStatusAndMembers(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	st, err := c.followers(leader)[0].client.Status(ctxT(t, 5*time.Second), &coordinatorv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 3 {
		t.Fatalf("status lists %d nodes", len(st.Nodes))
	}
	leaders := 0
	for _, n := range st.Nodes {
		if n.State == "leader" {
			leaders++
		}
		if n.LeaderId != leader.id || !n.Voter || n.Term == 0 || n.AppliedIndex == 0 || n.GrpcAddress == "" {
			t.Fatalf("node status %v", n)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders in status", leaders)
	}
	// A stopped node is reported, not waited for.
	victim := c.followers(leader)[1]
	c.stop(victim)
	st, err = leader.client.Status(ctxT(t, 5*time.Second), &coordinatorv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.Nodes {
		if n.Id == victim.id && n.State != "unreachable" {
			t.Fatalf("stopped node reported as %q", n.State)
		}
	}
	m, err := leader.client.ListMembers(ctxT(t, 5*time.Second), &coordinatorv1.ListMembersRequest{})
	if err != nil || len(m.Members) != 3 || m.LeaderId != leader.id {
		t.Fatalf("members %v %v", m, err)
	}
}

func TestConfigValidation(t *testing.T) {
	boot, err := ParseBootstrap("n1=127.0.0.1:7001,n2=127.0.0.1:7002")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"no id", Config{RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d"}, "--id"},
		{"bad raft addr", Config{ID: "n1", RaftAddr: "x", GRPCAddr: "127.0.0.1:8001", DataDir: "d"}, "--raft-addr"},
		{"no data dir", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001"}, "--data-dir"},
		{"not in bootstrap", Config{ID: "n3", RaftAddr: "127.0.0.1:7003", GRPCAddr: "127.0.0.1:8003", DataDir: "d", Bootstrap: boot}, "does not list"},
		{"bootstrap address mismatch", Config{ID: "n1", RaftAddr: "127.0.0.1:7009", GRPCAddr: "127.0.0.1:8001", DataDir: "d", Bootstrap: boot}, "gives node"},
		{"bootstrap and join", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", Bootstrap: boot, Join: "127.0.0.1:8002"}, "exclude each other"},
		{"bad sentinel addr", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", SentinelAddr: "127.0.0.1:99999"}, "--sentinel-addr"},
		{"sentinel pass without addr", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", SentinelPass: "x"}, "--sentinel-pass"},
		{"lease beyond heartbeat", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", RaftLeaderLeaseTimeout: 2 * time.Second}, "--raft-lease-timeout 2s is longer than --raft-heartbeat-timeout 1s"},
		{"election below heartbeat", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", RaftHeartbeatTimeout: 500 * time.Millisecond, RaftElectionTimeout: 200 * time.Millisecond, RaftLeaderLeaseTimeout: 100 * time.Millisecond}, "--raft-election-timeout"},
		{"lease lapses between heartbeats", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", RaftHeartbeatTimeout: 3 * time.Second, RaftElectionTimeout: 3 * time.Second}, "--raft-lease-timeout 500ms is shorter than 2/5 of --raft-heartbeat-timeout 3s (1.2s)"},
		{"heartbeat too short", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", RaftHeartbeatTimeout: time.Millisecond}, "--raft-heartbeat-timeout 1ms: want at least 5ms"},
		{"ping period too short", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", PingPeriod: time.Millisecond}, "--ping-period 1ms: want 0"},
		{"negative ping period", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", PingPeriod: -time.Second}, "--ping-period -1s"},
		{"negative sentinel max clients", Config{ID: "n1", RaftAddr: "127.0.0.1:7001", GRPCAddr: "127.0.0.1:8001", DataDir: "d", SentinelAddr: "127.0.0.1:0", SentinelMaxClients: -1}, "--sentinel-max-clients"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %q", err, tc.msg)
			}
		})
	}
	for _, bad := range []string{"", "n1", "n1=", "=127.0.0.1:1", "n1=127.0.0.1:1,n1=127.0.0.1:2", "n1=127.0.0.1:1,n2=127.0.0.1:1", "n 1=127.0.0.1:1"} {
		if _, err := ParseBootstrap(bad); err == nil {
			t.Errorf("ParseBootstrap(%q) accepted", bad)
		}
	}
}

// applyInOrder proposes its commands one after the other and waits once:
// all of them are applied, in order, and the first rejection is what it
// returns.
func TestApplyInOrder(t *testing.T) {
	srv, _ := startNode(t, func(*Config) {})
	monitor := func(name string) *fsmv1.Command {
		return &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
			Name: name, Address: "127.0.0.1:1", Settings: &fsmv1.MasterSettings{Quorum: 1}}}}
	}
	remove := func(name string) *fsmv1.Command {
		return &fsmv1.Command{Kind: &fsmv1.Command_RemoveMaster{RemoveMaster: &fsmv1.RemoveMaster{Name: name}}}
	}
	// The removal of "first" succeeds only after its monitor.
	_, err := srv.applyInOrder(ctxT(t, 10*time.Second), monitor("first"), remove("missing"), monitor("last"), remove("first"))
	var rejected *fsm.Error
	if !errors.As(err, &rejected) {
		t.Fatalf("applyInOrder with a rejected command = %v, want its *fsm.Error", err)
	}
	_, _, kept := srv.FSM().Master("first")
	_, _, added := srv.FSM().Master("last")
	if kept || !added {
		t.Fatalf("first still monitored %v, last monitored %v: want every command applied, in order", kept, added)
	}
	idx, err := srv.applyInOrder(ctxT(t, 10*time.Second), monitor("a"), monitor("b"))
	if _, at, ok := srv.FSM().Master("b"); err != nil || !ok || idx == 0 || idx > at {
		t.Fatalf("applyInOrder = %d, %v; want b applied (%v) at that index (state at %d)", idx, err, ok, at)
	}
}
