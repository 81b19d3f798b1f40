package server

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// monitorForManual monitors g with a down-after long enough that a replica
// frozen on purpose stays eligible while the test names it, and waits until
// the leader has INFO from both replicas and a link to each (the selection
// rules want both; INFO may arrive before the first PONG).
func (c *testCluster) monitorForManual(t *testing.T, name string, g *group) {
	t.Helper()
	_, err := c.leader().client.Monitor(ctxT(t, 5*time.Second), &coordinatorv1.MonitorRequest{Name: name, Address: g.master.Addr(),
		Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(5 * time.Second), FailoverTimeout: durationpb.New(30 * time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 30*time.Second, "both replicas observed by the leader", func() bool {
		m, _, ok := c.leader().srv.FSM().Master(name)
		if !ok || len(m.Replicas) != 2 {
			return false
		}
		for _, r := range m.Replicas {
			if r.Role != "slave" || r.Sdown || r.Disconnected {
				return false
			}
		}
		return true
	})
}

// currentMaster reads the master's address from any running node's state,
// as a client that follows the coordinator would.
func (c *testCluster) currentMaster(name string) string {
	for _, nd := range c.nodes {
		if nd.srv != nil {
			if m, _, ok := nd.srv.FSM().Master(name); ok {
				return m.Address
			}
		}
	}
	return ""
}

// writer appends 1, 2, 3, ... to a Redis list with a plain go-redis client,
// re-resolving the master on any error (READONLY, a killed connection, a
// timeout), and remembers which values were acknowledged.
type writer struct {
	mu     sync.Mutex
	acked  []int
	maxGap time.Duration
	errs   int
	stop   chan struct{}
	done   chan struct{}
}

func startWriter(t *testing.T, resolve func() string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(resolve)
	t.Cleanup(w.finish)
	return w
}

func (w *writer) run(resolve func() string) {
	defer close(w.done)
	clients := map[string]*redis.Client{}
	defer func() {
		for _, cl := range clients {
			_ = cl.Close()
		}
	}()
	addr := resolve()
	last := time.Now()
	giveUp := time.Now().Add(2 * time.Minute)
	for i := 1; i <= 1_000_000 && time.Now().Before(giveUp); {
		select {
		case <-w.stop:
			return
		default:
		}
		cl, ok := clients[addr]
		if !ok {
			cl = redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1,
				DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
				MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
			clients[addr] = cl
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := cl.RPush(ctx, "log", i).Err()
		cancel()
		if err != nil {
			w.mu.Lock()
			w.errs++
			w.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			addr = resolve()
			continue
		}
		now := time.Now()
		w.mu.Lock()
		w.acked = append(w.acked, i)
		w.maxGap = max(w.maxGap, now.Sub(last))
		w.mu.Unlock()
		last = now
		i++
	}
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) waitAcked(t *testing.T, n int) {
	t.Helper()
	testwait.Until(t, 30*time.Second, strconv.Itoa(n)+" acknowledged writes", func() bool { return w.count() >= n })
}

func (w *writer) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func serverAt(addr string, all ...*redistest.Server) *redistest.Server {
	for _, s := range all {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// A coordinated failover while a client writes: every write the old master
// acknowledged is on the new master, which the old one then follows.
func TestManualFailoverCoordinatedLosesNoWrite(t *testing.T) {
	redistest.Require(t)
	for _, tc := range []struct {
		name     string
		opts     []redistest.Option
		handover string
	}{
		{"write pause", nil, fsm.HandoverWritePause},
		// A master that refuses CLIENT UNPAUSE cannot pause writes: the
		// leader falls back to FAILOVER TO.
		{"FAILOVER TO fallback", []redistest.Option{redistest.Args(`user default on nopass ~* &* +@all -client|unpause`)}, fsm.HandoverFailoverTo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3, nil)
			c.leader()
			c.registered()
			m := redistest.Start(t, tc.opts...)
			g := &group{master: m,
				r1: redistest.Start(t, redistest.ReplicaOf(m.Addr())),
				r2: redistest.Start(t, redistest.ReplicaOf(m.Addr())),
			}
			redistest.WaitReplicating(t, g.r1, m)
			redistest.WaitReplicating(t, g.r2, m)
			c.monitorForManual(t, "mymaster", g)
			old := g.master.Addr()

			w := startWriter(t, func() string { return c.currentMaster("mymaster") })
			w.waitAcked(t, 200)
			// Through a follower: the request is forwarded and waits on the leader.
			follower := c.followers(c.leader())[0]
			resp, err := follower.client.Failover(ctxT(t, time.Minute), &coordinatorv1.FailoverRequest{
				Name: "mymaster", Timeout: durationpb.New(5 * time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			out := resp.GetOutcome()
			if out.GetResult() != fsm.ResultPromoted || out.GetEpoch() != 1 || !out.GetCoordinated() || out.GetOldMaster() != old ||
				out.GetNewMaster() != resp.GetCandidate() || out.GetNewMaster() == old || out.GetEvent() != "+failover-end" ||
				out.GetHandover() != tc.handover {
				t.Fatalf("outcome %v", out)
			}
			before := w.count()
			w.waitAcked(t, before+200) // the writer found the new master
			w.finish()

			newMaster := serverAt(out.GetNewMaster(), g.r1, g.r2)
			got, err := newMaster.Client().LRange(ctxT(t, 5*time.Second), "log", 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, v := range got {
				have[v] = true
			}
			w.mu.Lock()
			acked, maxGap, errs := append([]int(nil), w.acked...), w.maxGap, w.errs
			w.mu.Unlock()
			for _, v := range acked {
				if !have[strconv.Itoa(v)] {
					t.Fatalf("acknowledged write %d is missing on the new master %s (%d acknowledged, %d on the new master)",
						v, newMaster.Addr(), len(acked), len(got))
				}
			}
			t.Logf("%s: %d acknowledged writes all on the new master; longest writer pause %v; %d failed attempts",
				tc.name, len(acked), maxGap, errs)
			testwait.Until(t, 20*time.Second, "the old master following the new one", func() bool {
				r, mAddr := role(t, g.master)
				return r == "slave" && mAddr == newMaster.Addr()
			})
			d, err := follower.client.GetMasterDetail(ctxT(t, 5*time.Second), &coordinatorv1.GetMasterDetailRequest{Name: "mymaster"})
			if err != nil || d.GetDetail().GetLastFailover().GetResult() != fsm.ResultPromoted || d.GetDetail().GetMaster().GetEpoch() != 1 {
				t.Fatalf("detail on a follower: %v, %v", d, err)
			}
		})
	}
}

// A replica that cannot catch up: the handover is rolled back, the old
// master keeps serving at the same epoch. A second request meanwhile is
// refused as in progress.
func TestManualFailoverRollsBackWhenTheReplicaLags(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	g := startGroup(t, 100, 100)
	c.monitorForManual(t, "mymaster", g)
	old := g.master.Addr()

	g.r1.Pause()
	paused := true
	t.Cleanup(func() {
		if paused {
			g.r1.Resume()
		}
	})
	// Writes the frozen replica cannot have: without them its last
	// acknowledged offset could already match and Redis would go on to
	// the switch itself.
	for i := range 10 {
		if err := g.master.Client().Set(ctxT(t, 5*time.Second), "lag", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	type result struct {
		resp *coordinatorv1.FailoverResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		resp, err := c.leader().client.Failover(ctx, &coordinatorv1.FailoverRequest{
			Name: "mymaster", To: g.r1.Addr(), Timeout: durationpb.New(5 * time.Second)})
		done <- result{resp, err}
	}()
	testwait.Until(t, 20*time.Second, "the handover in the journal", func() bool {
		m, _, _ := c.leader().srv.FSM().Master("mymaster")
		return m.GetFailover() != nil
	})
	d, err := c.leader().client.GetMasterDetail(ctxT(t, 5*time.Second), &coordinatorv1.GetMasterDetailRequest{Name: "mymaster"})
	if j := d.GetDetail().GetFailover(); err != nil || j.GetPhase() != "handover" || !j.GetCoordinated() ||
		j.GetHandoverTimeout().AsDuration() != 5*time.Second || j.GetCandidate() != g.r1.Addr() {
		t.Fatalf("journal during the handover: %v, %v", j, err)
	}
	follower := c.followers(c.leader())[0]
	_, err = follower.client.Failover(ctxT(t, 10*time.Second), &coordinatorv1.FailoverRequest{Name: "mymaster", Force: true})
	if status.Code(err) != codes.FailedPrecondition || ReasonOf(err) != fsm.ReasonFailoverInProgress ||
		!strings.HasPrefix(status.Convert(err).Message(), `Failover already in progress for "mymaster"`) {
		t.Fatalf("second request: %v", err)
	}
	if err := follower.srv.StartFailover(ctxT(t, 10*time.Second), "mymaster"); ReasonOf(err) != fsm.ReasonFailoverInProgress {
		t.Fatalf("StartFailover during a failover: %v", err)
	}

	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Failover did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	out := r.resp.GetOutcome()
	if out.GetResult() != fsm.ResultAborted || out.GetEvent() != fsm.EventHandoverTimeout || out.GetEpoch() != 0 ||
		out.GetNewMaster() != old || out.GetCandidate() != g.r1.Addr() || !strings.Contains(out.GetDetail(), "keeps serving") {
		t.Fatalf("outcome %v", out)
	}
	t.Logf("rolled back: %s", out.GetDetail())
	testwait.Until(t, 10*time.Second, "every node to apply the rollback", func() bool {
		for _, nd := range c.nodes {
			if m, _, _ := nd.srv.FSM().Master("mymaster"); m.Failover != nil {
				return false
			}
		}
		return true
	})
	for _, nd := range c.nodes {
		if m, _, _ := nd.srv.FSM().Master("mymaster"); m.Epoch != 0 || m.Address != old || m.LastFailover.GetEvent() != fsm.EventHandoverTimeout {
			t.Fatalf("node %s after the rollback: epoch %d address %s outcome %v", nd.id, m.Epoch, m.Address, m.LastFailover)
		}
	}
	// The fence counted the frozen replica until its lag passed fence-lag:
	// the master refuses writes (NOREPLICAS) until the leader lowers
	// min-replicas-to-write for it.
	testwait.For(t, 15*time.Second, "the old master taking writes after the rollback", func() error {
		return g.master.Client().Set(ctxT(t, 5*time.Second), "after-rollback", "1", 0).Err()
	})
	if r, _ := role(t, g.master); r != "master" {
		t.Fatalf("old master reports %q", r)
	}

	g.r1.Resume()
	paused = false
	redistest.WaitReplicating(t, g.r1, g.master)
	testwait.Until(t, 30*time.Second, "the resumed replica healthy in the leader's view", func() bool {
		m, _, _ := c.leader().srv.FSM().Master("mymaster")
		for _, rep := range m.Replicas {
			if rep.Address == g.r1.Addr() {
				return !rep.Sdown && rep.Role == "slave"
			}
		}
		return false
	})
}

func TestManualFailoverRefusals(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	g := startGroup(t, 100, 100)
	c.monitorForManual(t, "mymaster", g)
	follower := c.followers(c.leader())[0]

	cases := []struct {
		name string
		req  *coordinatorv1.FailoverRequest
		code codes.Code
		msg  string
	}{
		{"unknown master", &coordinatorv1.FailoverRequest{Name: "nosuch"}, codes.NotFound, `unknown master "nosuch"`},
		{"bad name", &coordinatorv1.FailoverRequest{Name: "bad name"}, codes.InvalidArgument, "may only contain"},
		{"to an unknown instance", &coordinatorv1.FailoverRequest{Name: "mymaster", To: "127.0.0.1:1"}, codes.InvalidArgument, "not a known replica"},
		{"to the master itself", &coordinatorv1.FailoverRequest{Name: "mymaster", To: g.master.Addr()}, codes.InvalidArgument, "is the master"},
		{"to a malformed address", &coordinatorv1.FailoverRequest{Name: "mymaster", To: "nowhere"}, codes.InvalidArgument, "not host:port"},
		{"timeout with force", &coordinatorv1.FailoverRequest{Name: "mymaster", Force: true, Timeout: durationpb.New(time.Second)}, codes.InvalidArgument, "forced"},
		{"zero timeout", &coordinatorv1.FailoverRequest{Name: "mymaster", Timeout: durationpb.New(0)}, codes.InvalidArgument, "at least 1ms"},
		{"timeout beyond failover-timeout", &coordinatorv1.FailoverRequest{Name: "mymaster", Timeout: durationpb.New(31 * time.Second)}, codes.InvalidArgument, "failover-timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := follower.client.Failover(ctxT(t, time.Minute), tc.req)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tc.code, tc.msg)
			}
		})
	}
	t.Run("deadline shorter than the catch-up timeout", func(t *testing.T) {
		_, err := follower.client.Failover(ctxT(t, 2*time.Second), &coordinatorv1.FailoverRequest{Name: "mymaster", Timeout: durationpb.New(10 * time.Second)})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "deadline") {
			t.Fatalf("got %v", err)
		}
	})
	if err := follower.srv.StartFailover(ctxT(t, 5*time.Second), "nosuch"); ReasonOf(err) != fsm.ReasonUnknownMaster || status.Code(err) != codes.NotFound {
		t.Fatalf("StartFailover of an unknown master: %v", err)
	}
	for _, nd := range c.nodes {
		if m, _, _ := nd.srv.FSM().Master("mymaster"); m.LastFailoverAtUnixNanos != 0 {
			t.Fatalf("a refused request was committed on %s: %v", nd.id, m)
		}
	}
}

func TestManualFailoverWithoutEligibleReplica(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	g := startGroup(t, 0, 0) // replica-priority 0: never promoted
	c.monitorForManual(t, "mymaster", g)
	follower := c.followers(c.leader())[0]

	err := follower.srv.StartFailover(ctxT(t, 10*time.Second), "mymaster")
	if ReasonOf(err) != fsm.ReasonNoGoodReplica || status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "priority 0") {
		t.Fatalf("StartFailover: %v", err)
	}
	_, err = follower.client.Failover(ctxT(t, 10*time.Second), &coordinatorv1.FailoverRequest{Name: "mymaster", To: g.r1.Addr()})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "cannot be promoted: priority 0") {
		t.Fatalf("naming an ineligible replica: %v", err)
	}
	// As Sentinel, a refused request leaves nothing on record, so the
	// anti-flap wait of automatic failovers does not start.
	for _, nd := range c.nodes {
		m, _, _ := nd.srv.FSM().Master("mymaster")
		for _, e := range m.Events {
			if e.Type == "+try-failover" || e.Type == fsm.EventNoGoodReplica {
				t.Fatalf("event %v recorded on %s", e, nd.id)
			}
		}
		if m.LastFailoverAtUnixNanos != 0 || m.LastFailover != nil || m.Failover != nil {
			t.Fatalf("after NOGOODSLAVE on %s: %v", nd.id, m)
		}
	}
}

// StartFailover (SENTINEL FAILOVER) promotes without waiting for the
// replica, on a master that is up, and returns at once; the old master ends
// as a replica of the new one.
func TestStartFailoverForcesAPromotion(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	g := startGroup(t, 100, 100)
	c.monitorForManual(t, "mymaster", g)
	old := g.master.Addr()
	follower := c.followers(c.leader())[0]

	if err := follower.srv.StartFailover(ctxT(t, 10*time.Second), "mymaster"); err != nil {
		t.Fatal(err)
	}
	var out *coordinatorv1.FailoverOutcome
	testwait.Until(t, 30*time.Second, "the failover to end on every node", func() bool {
		for _, nd := range c.nodes {
			m, _, _ := nd.srv.FSM().Master("mymaster")
			if m.LastFailover == nil || m.Failover != nil {
				return false
			}
			out = publicOutcome(m.LastFailover)
		}
		return true
	})
	if out.GetResult() != fsm.ResultPromoted || out.GetCoordinated() || out.GetEpoch() != 1 || out.GetNewMaster() == old {
		t.Fatalf("outcome %v", out)
	}
	newMaster := serverAt(out.GetNewMaster(), g.r1, g.r2)
	for _, s := range []*redistest.Server{g.master, g.r1, g.r2} {
		if s == newMaster {
			continue
		}
		testwait.Until(t, 20*time.Second, s.Addr()+" following the new master", func() bool {
			r, mAddr := role(t, s)
			return r == "slave" && mAddr == newMaster.Addr()
		})
	}
	if r, _ := role(t, newMaster); r != "master" {
		t.Fatalf("new master reports %q", r)
	}
}

// A leader that stops while the old master is handing over: the next
// leader reads the handover's progress from the journal and INFO and
// finishes it, under the write pause (it pauses again to read the offset)
// or with FAILOVER TO (Redis runs it).
func TestManualFailoverResumesOnANewLeader(t *testing.T) {
	redistest.Require(t)
	for _, tc := range []struct {
		name string
		opts []redistest.Option
	}{
		{"write pause", nil},
		{"FAILOVER TO", []redistest.Option{redistest.Args(`user default on nopass ~* &* +@all -client|unpause`)}},
	} {
		t.Run(tc.name, func(t *testing.T) { resumesOnANewLeader(t, tc.opts) })
	}
}

func resumesOnANewLeader(t *testing.T, opts []redistest.Option) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	m := redistest.Start(t, opts...)
	g := &group{master: m,
		r1: redistest.Start(t, redistest.ReplicaOf(m.Addr())),
		r2: redistest.Start(t, redistest.ReplicaOf(m.Addr())),
	}
	redistest.WaitReplicating(t, g.r1, m)
	redistest.WaitReplicating(t, g.r2, m)
	c.monitorForManual(t, "mymaster", g)
	old := g.master.Addr()
	fallback := len(opts) > 0

	// A frozen candidate keeps the handover waiting for as long as the
	// test needs.
	g.r1.Pause()
	paused := true
	t.Cleanup(func() {
		if paused {
			g.r1.Resume()
		}
	})
	for i := range 10 {
		if err := g.master.Client().Set(ctxT(t, 5*time.Second), "lag", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	first := c.leader()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := first.client.Failover(ctx, &coordinatorv1.FailoverRequest{
			Name: "mymaster", To: g.r1.Addr(), Timeout: durationpb.New(20 * time.Second)})
		done <- err
	}()
	testwait.Until(t, 20*time.Second, "the old master waiting for the candidate", func() bool {
		if !fallback {
			m, _, _ := first.srv.FSM().Master("mymaster")
			return m.GetFailover().GetPause() != nil
		}
		info, err := g.master.Info(context.Background(), "replication")
		return err == nil && info["master_failover_state"] == "waiting-for-sync"
	})
	c.stop(first)
	select {
	case err := <-done:
		t.Logf("the request to the stopped leader ended with: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the request to the stopped leader did not end")
	}
	g.r1.Resume()
	paused = false

	second := c.leader()
	if second == first {
		t.Fatal("no new leader")
	}
	testwait.Until(t, 30*time.Second, "the new leader to finish the failover", func() bool {
		m, _, _ := second.srv.FSM().Master("mymaster")
		return m.GetLastFailover() != nil && m.GetFailover() == nil
	})
	st, _, _ := second.srv.FSM().Master("mymaster")
	if out := st.GetLastFailover(); out.GetResult() != fsm.ResultPromoted || st.Epoch != 1 || st.Address != g.r1.Addr() || out.GetOldMaster() != old {
		t.Fatalf("after the new leader: epoch %d address %s outcome %v", st.Epoch, st.Address, out)
	}
	if err := g.r1.Client().Set(ctxT(t, 5*time.Second), "after", "1", 0).Err(); err != nil {
		t.Fatalf("the new master does not take writes: %v", err)
	}
	testwait.Until(t, 20*time.Second, "the old master following the new one", func() bool {
		r, mAddr := role(t, g.master)
		return r == "slave" && mAddr == g.r1.Addr()
	})
}
