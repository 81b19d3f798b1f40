package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// group is one monitored master with two replicas, all real redis-server
// processes.
type group struct {
	name           string
	master, r1, r2 *redistest.Server
}

func startGroup(t testing.TB, name string, r1Opts, r2Opts []redistest.Option) *group {
	t.Helper()
	m := redistest.Start(t)
	g := &group{name: name, master: m,
		r1: redistest.Start(t, append([]redistest.Option{redistest.ReplicaOf(m.Addr())}, r1Opts...)...),
		r2: redistest.Start(t, append([]redistest.Option{redistest.ReplicaOf(m.Addr())}, r2Opts...)...),
	}
	redistest.WaitReplicating(t, g.r1, m)
	redistest.WaitReplicating(t, g.r2, m)
	return g
}

func (g *group) byAddr(addr string) *redistest.Server {
	for _, s := range []*redistest.Server{g.master, g.r1, g.r2} {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// monitor registers the group with the settings the failover tests use:
// down-after 1 s as the issue asks, and a short failover-timeout so the
// anti-flap window and the repair waits stay short.
func (g *group) monitor(t testing.TB, c *cluster, quorum int, failoverTimeout time.Duration) {
	t.Helper()
	mustCtl(t, "--addr", addrs(c.nodes...), "monitor", g.name, g.master.Addr(), "--quorum", fmt.Sprint(quorum),
		"--down-after", "1s", "--failover-timeout", failoverTimeout.String())
	testwait.For(t, waitTimeout, "both replicas discovered", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		if len(d.GetReplicas()) != 2 {
			return fmt.Errorf("replicas %v", d.GetReplicas())
		}
		return nil
	})
}

// detail reads GetMasterDetail from one node over gRPC.
func detail(n *node, name string) (*coordinatorv1.MasterDetail, error) {
	conn, err := grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := coordinatorv1.NewCoordinatorServiceClient(conn).GetMasterDetail(ctx, &coordinatorv1.GetMasterDetailRequest{Name: name})
	if err != nil {
		return nil, err
	}
	return resp.GetDetail(), nil
}

// waitServed waits until every given node serves a master other than old
// at an epoch of at least minEpoch, all the same one, and returns it.
func waitServed(t testing.TB, nodes []*node, name, old string, minEpoch uint64) (string, uint64) {
	t.Helper()
	var addr string
	var epoch uint64
	testwait.For(t, waitTimeout, "every node serving a new master of "+name, func() error {
		addr, epoch = "", 0
		for _, n := range nodes {
			d, err := detail(n, name)
			if err != nil {
				return err
			}
			m := d.GetMaster()
			if m.GetAddress() == old || m.GetEpoch() < minEpoch {
				return fmt.Errorf("%s serves %s at epoch %d", n.id, m.GetAddress(), m.GetEpoch())
			}
			if addr != "" && (m.GetAddress() != addr || m.GetEpoch() != epoch) {
				return fmt.Errorf("%s serves %s@%d, another node %s@%d", n.id, m.GetAddress(), m.GetEpoch(), addr, epoch)
			}
			addr, epoch = m.GetAddress(), m.GetEpoch()
		}
		return nil
	})
	return addr, epoch
}

// roleOf reads an instance's role and, for a replica, its master and link.
func roleOf(s *redistest.Server) (role, master string, linkUp bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	info, err := s.Info(ctx, "replication")
	if err != nil {
		return "", "", false, err
	}
	return info["role"], info["master_host"] + ":" + info["master_port"], info["master_link_status"] == "up", nil
}

// waitFollows waits until replica replicates from master with its link up.
func waitFollows(t testing.TB, replica *redistest.Server, master string) {
	t.Helper()
	testwait.For(t, waitTimeout, replica.Addr()+" following "+master, func() error {
		role, m, up, err := roleOf(replica)
		if err != nil {
			return err
		}
		if role != "slave" || m != master || !up {
			return fmt.Errorf("role %s master %s link up %v", role, m, up)
		}
		return nil
	})
}

// eventTypes lists the event types of a master's history, oldest first.
func eventTypes(d *coordinatorv1.MasterDetail) []string {
	var out []string
	for _, e := range d.GetEvents() {
		out = append(out, e.GetType())
	}
	return out
}

func findEvent(d *coordinatorv1.MasterDetail, typ string) *coordinatorv1.Event {
	for _, e := range d.GetEvents() {
		if e.GetType() == typ {
			return e
		}
	}
	return nil
}

// checkFailedOver checks the end state of a failover away from old: every
// node serves the promoted instance, it reports master, and the other
// replica follows it. It returns the promoted instance.
func checkFailedOver(t testing.TB, c *cluster, g *group, old string) *redistest.Server {
	t.Helper()
	addr, epoch := waitServed(t, c.nodes, g.name, old, 1)
	if epoch != 1 {
		t.Fatalf("epoch %d after one failover", epoch)
	}
	promoted := g.byAddr(addr)
	if promoted == nil || promoted == g.byAddr(old) {
		t.Fatalf("promoted %s is not one of the replicas", addr)
	}
	other := g.r1
	if promoted == g.r1 {
		other = g.r2
	}
	if role, _, _, err := roleOf(promoted); err != nil || role != "master" {
		t.Fatalf("promoted %s reports role %q (%v)", addr, role, err)
	}
	waitFollows(t, other, addr)
	testwait.For(t, waitTimeout, "the failover journal closed", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		if d.GetFailover() != nil {
			return fmt.Errorf("failover still in phase %s", d.GetFailover().GetPhase())
		}
		if findEvent(d, "+failover-end") == nil {
			return fmt.Errorf("no +failover-end yet: %v", eventTypes(d))
		}
		return nil
	})
	d, err := detail(c.nodes[1], g.name)
	if err != nil {
		t.Fatal(err)
	}
	oh, op, _ := strings.Cut(old, ":")
	nh, np, _ := strings.Cut(addr, ":")
	sw := findEvent(d, "+switch-master")
	if want := fmt.Sprintf("%s %s %s %s %s", g.name, oh, op, nh, np); sw == nil || sw.GetPayload() != want {
		t.Fatalf("+switch-master %v, want payload %q", sw, want)
	}
	return promoted
}

// 1. SIGKILL the master: one replica is promoted, the other follows it,
// and the old master comes back as a replica of the new one.
func TestFailoverAfterMasterKill(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "mymaster", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)
	old := g.master.Addr()
	g.master.Kill()
	promoted := checkFailedOver(t, c, g, old)

	g.master.Restart()
	waitFollows(t, g.master, promoted.Addr())
	testwait.For(t, waitTimeout, "+convert-to-slave recorded", func() error {
		d, err := detail(c.nodes[2], g.name)
		if err != nil {
			return err
		}
		if findEvent(d, "+convert-to-slave") == nil {
			return fmt.Errorf("events %v", eventTypes(d))
		}
		return nil
	})
}

// 2. SIGSTOP the master: failover; after SIGCONT the old master is demoted
// and the cluster never serves two masters.
func TestFailoverAfterMasterFreeze(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "frozen", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)
	old := g.master.Addr()
	g.master.Pause()
	promoted := checkFailedOver(t, c, g, old)
	g.master.Resume()
	waitFollows(t, g.master, promoted.Addr())
	masters := 0
	for _, s := range []*redistest.Server{g.master, g.r1, g.r2} {
		if role, _, _, _ := roleOf(s); role == "master" {
			masters++
		}
	}
	if masters != 1 {
		t.Fatalf("%d instances report role master after healing", masters)
	}
}

// assertNoFailover watches for a bounded window that the master keeps its
// address and epoch and that no failover was tried.
func assertNoFailover(t testing.TB, n *node, g *group, window time.Duration) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		d, err := detail(n, g.name)
		if err != nil {
			t.Fatal(err)
		}
		if d.GetMaster().GetEpoch() != 0 || d.GetMaster().GetAddress() != g.master.Addr() || findEvent(d, "+try-failover") != nil {
			t.Fatalf("a failover happened: master %v events %v", d.GetMaster(), eventTypes(d))
		}
		time.Sleep(pollInterval)
	}
}

// 3a. Quorum 3 with one coordinator stopped: two down votes are not ODOWN.
func TestNoFailoverBelowQuorum(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "quorum3", nil, nil)
	g.monitor(t, c, 3, 2*time.Second)
	leader := waitAgreedLeader(t, c.nodes...)
	var stopped *node
	for _, n := range c.nodes {
		if n.id != leader {
			stopped = n
			break
		}
	}
	stopped.kill()
	live := without(c.nodes, stopped)
	g.master.Kill()
	testwait.For(t, waitTimeout, "both live nodes voting the master down", func() error {
		d, err := detail(live[0], g.name)
		if err != nil {
			return err
		}
		down := 0
		for _, v := range d.GetVotes() {
			if v.GetDown() {
				down++
			}
		}
		if down != 2 {
			return fmt.Errorf("votes %v", d.GetVotes())
		}
		return nil
	})
	// Long enough for several rounds of the leader's loop and vote refreshes.
	assertNoFailover(t, live[0], g, 3*time.Second)
	if d, _ := detail(live[0], g.name); d.GetOdown() {
		t.Fatal("ODOWN with 2 votes and quorum 3")
	}
}

// 3b. Two of three coordinators stopped: the survivor cannot commit, so no
// failover, even with quorum 1. Once they return, the failover happens.
func TestNoFailoverWithoutMajority(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "minority", nil, nil)
	g.monitor(t, c, 1, 2*time.Second)
	c.nodes[1].kill()
	c.nodes[2].kill()
	g.master.Kill()
	// down-after, a probe period and several loop rounds.
	assertNoFailover(t, c.nodes[0], g, 4*time.Second)
	c.nodes[1].start()
	c.nodes[2].start()
	checkFailedOver(t, c, g, g.master.Addr())
}

// 4. The leader dies right after committing BeginFailover, or right after
// Promoted (Sentinel's SIMULATE-FAILURE); the next leader finishes.
func TestLeaderCrashMidFailover(t *testing.T) {
	redistest.Require(t)
	for _, point := range []string{"crash-after-election", "crash-after-promotion"} {
		t.Run(point, func(t *testing.T) {
			c := startClusterWith(t, 3, "--simulate-failure", point)
			g := startGroup(t, "crash", nil, nil)
			// Every node crashes at the point, so only a leader that
			// resumes the failover, not one that aborts it and begins
			// another, passes: the failover-timeout leaves room for a
			// slow election (3.6 s once with 3 s: a pre-vote refused,
			// then a full election timeout).
			g.monitor(t, c, 2, 15*time.Second)
			old := g.master.Addr()
			g.master.Kill()
			var crashed *node
			testwait.For(t, waitTimeout, "the leader exiting with status 99", func() error {
				for _, n := range c.nodes {
					if p := n.process(); p.exited() {
						if code := p.exitCode(); code != 99 {
							return testwait.Stop(fmt.Errorf("%s exited with %d", n.id, code))
						}
						crashed = n
						return nil
					}
				}
				return fmt.Errorf("no node exited")
			})
			live := without(c.nodes, crashed)
			addr, _ := waitServed(t, live, g.name, old, 1)
			promoted := g.byAddr(addr)
			other := g.r1
			if promoted == g.r1 {
				other = g.r2
			}
			waitFollows(t, other, addr)
			crashed.start()
			waitServed(t, c.nodes, g.name, old, 1)
			if role, _, _, _ := roleOf(promoted); role != "master" {
				t.Fatalf("promoted instance reports %s", role)
			}
		})
	}
}

// 5. Replica ranking.
func TestReplicaRanking(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	t.Run("priority 0 is never promoted", func(t *testing.T) {
		g := startGroup(t, "prio0", []redistest.Option{redistest.ReplicaPriority(0)}, nil)
		g.monitor(t, c, 2, 3*time.Second)
		g.master.Kill()
		if got, _ := waitServed(t, c.nodes, g.name, g.master.Addr(), 1); got != g.r2.Addr() {
			t.Fatalf("promoted %s, want %s (the other has priority 0)", got, g.r2.Addr())
		}
	})
	t.Run("lower priority wins", func(t *testing.T) {
		g := startGroup(t, "prio", []redistest.Option{redistest.ReplicaPriority(50)}, []redistest.Option{redistest.ReplicaPriority(10)})
		g.monitor(t, c, 2, 3*time.Second)
		g.master.Kill()
		if got, _ := waitServed(t, c.nodes, g.name, g.master.Addr(), 1); got != g.r2.Addr() {
			t.Fatalf("promoted %s, want %s (priority 10 beats 50)", got, g.r2.Addr())
		}
	})
	t.Run("higher offset wins on equal priority", func(t *testing.T) {
		g := startGroup(t, "offset", nil, nil)
		// Detach the replica that the run-id tie-break would prefer, so
		// only the offset rule can make the other one win.
		behind, ahead := g.r1, g.r2
		if runID(t, g.r2) < runID(t, g.r1) {
			behind, ahead = g.r2, g.r1
		}
		// A long failover-timeout keeps the repair of the detached replica
		// (+fix-slave-config) out of the way.
		g.monitor(t, c, 2, time.Minute)
		ctx := context.Background()
		if err := behind.Client().Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
			t.Fatal(err)
		}
		// The fence refuses writes (NOREPLICAS) until the leader lowers
		// min-replicas-to-write to the one replica left. A write accepted
		// before that proves nothing: the leader's first fence, decided
		// from a read taken before the detachment, may still arrive.
		testwait.For(t, waitTimeout, "the fence lowered to the one attached replica", func() error {
			got, err := g.master.Client().ConfigGet(ctx, "min-replicas-to-write").Result()
			if err != nil {
				return err
			}
			if got["min-replicas-to-write"] != "1" {
				return fmt.Errorf("min-replicas-to-write %q", got["min-replicas-to-write"])
			}
			return g.master.Client().Set(ctx, "k-first", "v", 0).Err()
		})
		for i := range 100 {
			if err := g.master.Client().Set(ctx, fmt.Sprint("k", i), "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		testwait.For(t, waitTimeout, "the attached replica catching up", func() error {
			mi, err := g.master.Info(ctx, "replication")
			if err != nil {
				return err
			}
			ai, err := ahead.Info(ctx, "replication")
			if err != nil {
				return err
			}
			if mi["master_repl_offset"] != ai["slave_repl_offset"] {
				return fmt.Errorf("master at %s, replica at %s", mi["master_repl_offset"], ai["slave_repl_offset"])
			}
			return nil
		})
		g.master.Kill()
		if got, _ := waitServed(t, c.nodes, g.name, g.master.Addr(), 1); got != ahead.Addr() {
			t.Fatalf("promoted %s, want %s (higher offset)", got, ahead.Addr())
		}
	})
	t.Run("no eligible replica aborts and retries", func(t *testing.T) {
		g := startGroup(t, "nogood", []redistest.Option{redistest.ReplicaPriority(0)}, []redistest.Option{redistest.ReplicaPriority(0)})
		ft := 2 * time.Second
		g.monitor(t, c, 2, ft)
		g.master.Kill()
		var aborts []*coordinatorv1.Event
		testwait.For(t, waitTimeout, "two no-good-slave aborts", func() error {
			d, err := detail(c.nodes[0], g.name)
			if err != nil {
				return err
			}
			if d.GetMaster().GetEpoch() != 0 || d.GetMaster().GetAddress() != g.master.Addr() {
				return testwait.Stop(fmt.Errorf("topology changed: %v", d.GetMaster()))
			}
			aborts = aborts[:0]
			for _, e := range d.GetEvents() {
				if e.GetType() == "-failover-abort-no-good-slave" {
					aborts = append(aborts, e)
				}
			}
			if len(aborts) < 2 {
				return fmt.Errorf("%d aborts: %v", len(aborts), eventTypes(d))
			}
			return nil
		})
		if gap := aborts[1].GetAt().AsTime().Sub(aborts[0].GetAt().AsTime()); gap < 2*ft {
			t.Fatalf("retried after %v, before the anti-flap window of %v", gap, 2*ft)
		}
	})
}

func runID(t testing.TB, s *redistest.Server) string {
	info, err := s.Info(context.Background(), "server")
	if err != nil {
		t.Fatal(err)
	}
	return info["run_id"]
}

// 6. A replica that is down during the failover is re-pointed when it
// returns.
func TestReplicaDownDuringFailoverIsRepointed(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "away", nil, nil)
	g.monitor(t, c, 2, 2*time.Second)
	g.r2.Kill()
	old := g.master.Addr()
	g.master.Kill()
	addr, _ := waitServed(t, c.nodes, g.name, old, 1)
	if addr != g.r1.Addr() {
		t.Fatalf("promoted %s, want the only live replica %s", addr, g.r1.Addr())
	}
	testwait.For(t, waitTimeout, "the failover journal closed", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		if d.GetFailover() != nil {
			return fmt.Errorf("failover in phase %s", d.GetFailover().GetPhase())
		}
		return nil
	})
	g.r2.Restart()
	waitFollows(t, g.r2, addr)
}

// 7. A coordinator frozen for longer than down-after must not vote the
// master down on the stale evidence it holds when it resumes.
func TestPausedCoordinatorCastsNoStaleVote(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "pause", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)
	leader := waitAgreedLeader(t, c.nodes...)
	var frozen *node
	for _, n := range c.nodes {
		if n.id != leader {
			frozen = n
			break
		}
	}
	p := frozen.process()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Frozen for three times down-after; the master stays healthy.
	time.Sleep(3 * time.Second) // the pause itself is the scenario, not a wait for a condition
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	other := without(c.nodes, frozen)[0]
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		d, err := detail(other, g.name)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range d.GetVotes() {
			if v.GetNodeId() == frozen.id && v.GetDown() {
				t.Fatalf("%s voted the healthy master down after its pause: %v", frozen.id, v)
			}
		}
		time.Sleep(pollInterval)
	}
	// It still votes when the master really fails.
	g.master.Kill()
	testwait.For(t, waitTimeout, frozen.id+" voting down", func() error {
		d, err := detail(other, g.name)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(d.GetVotes(), func(v *coordinatorv1.Vote) bool { return v.GetNodeId() == frozen.id && v.GetDown() }) &&
			d.GetMaster().GetEpoch() == 0 {
			return fmt.Errorf("votes %v", d.GetVotes())
		}
		return nil
	})
}

// 8. A master unreachable for well under down-after (1 s) is never failed
// over and no node ever holds it SDOWN: SIGKILLed and restarted on its port
// with its data (appendonly), frozen for 300 ms, and its clients'
// connections killed, 20 times each.
// The SDOWN clock starts at the first failed contact after the fault, and
// the restarted master is seen at the next ping period (100 ms).
func TestNoFailoverAfterShortOutages(t *testing.T) {
	redistest.Require(t)
	const (
		runs = 20
		// maxOutage: a loaded machine may take longer to restart
		// redis-server; such a run tests nothing and ends the loop.
		maxOutage = 600 * time.Millisecond
	)
	c := startCluster(t, 3)
	m := redistest.Start(t, redistest.Args("appendonly yes"))
	g := &group{name: "blip", master: m,
		r1: redistest.Start(t, redistest.ReplicaOf(m.Addr())),
		r2: redistest.Start(t, redistest.ReplicaOf(m.Addr())),
	}
	redistest.WaitReplicating(t, g.r1, m)
	redistest.WaitReplicating(t, g.r2, m)
	g.monitor(t, c, 2, 3*time.Second)

	noSDown := func(what string) {
		t.Helper()
		// down-after, a period and several rounds of votes and the
		// leader's loop.
		assertNoFailover(t, c.nodes[0], g, 2*time.Second)
		for _, n := range c.nodes {
			d, err := detail(n, g.name)
			if err != nil {
				t.Fatal(err)
			}
			if e := findEvent(d, "+sdown"); e != nil || d.GetOdown() {
				t.Fatalf("%s: %s held the master SDOWN (%v); events %v", what, e.GetNodeId(), e, eventTypes(d))
			}
		}
	}
	counted := 0
	for i := range runs {
		start := time.Now()
		g.master.Kill()
		time.Sleep(time.Until(start.Add(100 * time.Millisecond))) // the outage is the scenario
		g.master.Restart()
		if outage := time.Since(start); outage > maxOutage {
			t.Logf("kill %d: redis-server took %v to come back, more than %v: stopping here", i, outage, maxOutage)
			break
		}
		noSDown(fmt.Sprintf("kill and restart %d", i))
		counted++
	}
	if counted < 2 {
		t.Fatalf("only %d kill-and-restart runs came back within %v", counted, maxOutage)
	}
	for i := range runs {
		g.master.Pause()
		time.Sleep(300 * time.Millisecond) // the outage is the scenario
		g.master.Resume()
		noSDown(fmt.Sprintf("freeze %d", i))
	}
	for i := range runs {
		// Every normal client, the coordinators' probes among them.
		if err := g.master.Client().Do(context.Background(), "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
			t.Fatal(err)
		}
		noSDown(fmt.Sprintf("client connections killed %d", i))
	}
}
