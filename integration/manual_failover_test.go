package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/client"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protojson"
)

// monitorForManual registers the group with a down-after long enough that
// a replica frozen on purpose stays eligible while the test names it, and
// waits until the leader has INFO from both replicas.
func (g *group) monitorForManual(t testing.TB, c *cluster) {
	t.Helper()
	mustCtl(t, "--addr", addrs(c.nodes...), "monitor", g.name, g.master.Addr(), "--quorum", "2",
		"--down-after", "5s", "--failover-timeout", "30s")
	testwait.For(t, waitTimeout, "both replicas observed", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		if len(d.GetReplicas()) != 2 {
			return fmt.Errorf("replicas %v", d.GetReplicas())
		}
		for _, r := range d.GetReplicas() {
			if r.GetRole() != "slave" || r.GetSdown() {
				return fmt.Errorf("replica %v", r)
			}
		}
		return nil
	})
}

// coordinatorctl failover through a follower of the built binaries: a
// coordinated switchover, then a rollback when the named replica is frozen.
func TestCoordinatorctlFailover(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "mymaster", nil, nil)
	g.monitorForManual(t, c)
	old := g.master.Addr()

	// An application writes sequential values through package client's
	// go-redis helper during the switchover.
	w := startHelperWriter(t, c, g.name)
	r, err := ctl("--addr", addrs(c.nodes...), "-o", "json", "failover", g.name, "--timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	resp := &coordinatorv1.FailoverResponse{}
	if err := protojson.Unmarshal([]byte(r.stdout), resp); err != nil {
		t.Fatalf("%v: %v", r, err)
	}
	out := resp.GetOutcome()
	if out.GetResult() != "promoted" || !out.GetCoordinated() || out.GetEpoch() != 1 || out.GetOldMaster() != old || out.GetNewMaster() == old {
		t.Fatalf("outcome %v", out)
	}
	t.Logf("coordinated failover took %v end to end (%v in the journal)", r.elapsed.Round(time.Millisecond),
		out.GetFinishedAt().AsTime().Sub(out.GetStartedAt().AsTime()).Round(time.Millisecond))
	promoted := g.byAddr(out.GetNewMaster())
	waitFollows(t, g.master, promoted.Addr())
	w.checkNoLoss(t, promoted)

	// Now the replica that remains: freeze it and push writes it cannot
	// have, so it cannot catch up.
	other := g.r1
	if other == promoted {
		other = g.r2
	}
	waitFollows(t, other, promoted.Addr())
	testwait.For(t, waitTimeout, "the leader's view after the switch", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		for _, rep := range d.GetReplicas() {
			if rep.GetAddress() == other.Addr() && rep.GetRole() == "slave" && !rep.GetSdown() && rep.GetMasterAddress() == promoted.Addr() {
				return nil
			}
		}
		return fmt.Errorf("replicas %v", d.GetReplicas())
	})
	other.Pause()
	defer other.Resume()
	for i := range 10 {
		if err := promoted.Client().Set(t.Context(), "lag", i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	r, err = ctl("--addr", addrs(c.nodes...), "failover", g.name, "--to", other.Addr(), "--timeout", "1500ms")
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 5 || !strings.Contains(r.stdout, "result      aborted") || !strings.Contains(r.stderr, "-failover-abort-handover-timeout") {
		t.Fatalf("rollback: %v", r)
	}
	got := &coordinatorv1.GetMasterDetailResponse{}
	if err := ctlJSON(got, "--addr", c.nodes[2].grpcAddr, "master", g.name); err != nil {
		t.Fatal(err)
	}
	if m := got.GetDetail().GetMaster(); m.GetEpoch() != 1 || m.GetAddress() != promoted.Addr() {
		t.Fatalf("after the rollback: %v", got)
	}
	// The paused replica's lag passed fence-lag during the handover, when
	// the leader does not maintain the fence, so the master may refuse
	// writes (NOREPLICAS) until the leader's next pass lowers it, a round
	// trip or two after the abort is committed.
	testwait.For(t, waitTimeout, "the master takes writes after the rollback", func() error {
		return promoted.Client().Set(t.Context(), "after-rollback", "1", 0).Err()
	})
}

// helperWriter appends 1, 2, 3... to a list through client.NewRedisClient,
// recording what was acknowledged and the longest gap between two acks.
type helperWriter struct {
	rdb  *redis.Client
	stop context.CancelFunc
	done chan struct{}

	mu       sync.Mutex
	acked    []int
	longest  time.Duration
	failures int
}

func (w *helperWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func startHelperWriter(t *testing.T, c *cluster, name string) *helperWriter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cl, err := client.New(ctx, strings.Split(addrs(c.nodes...), ",")...)
	if err != nil {
		t.Fatal(err)
	}
	watch := cl.WatchMaster(ctx, name)
	w := &helperWriter{stop: cancel, done: make(chan struct{}),
		rdb: client.NewRedisClient(watch, &redis.Options{DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1})}
	t.Cleanup(func() { w.halt(); _ = w.rdb.Close(); watch.Close(); cl.Close() })
	go func() {
		defer close(w.done)
		last := time.Now()
		// Bounded: at most 200,000 writes, and it stops when the test does.
		for i := 1; i <= 200_000 && ctx.Err() == nil; i++ {
			if err := w.rdb.RPush(ctx, "zero-loss", i).Err(); err != nil {
				w.mu.Lock()
				w.failures++
				w.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				continue
			}
			now := time.Now()
			w.mu.Lock()
			w.longest = max(w.longest, now.Sub(last))
			w.acked = append(w.acked, i)
			w.mu.Unlock()
			last = now
		}
	}()
	testwait.For(t, waitTimeout, "the writer's first writes", func() error {
		if n := w.count(); n < 100 {
			return fmt.Errorf("%d values written", n)
		}
		return nil
	})
	return w
}

func (w *helperWriter) halt() {
	w.stop()
	<-w.done
}

// checkNoLoss lets the writer go on for 100 more writes after the switch,
// stops it and checks that every acknowledged value is on the new master.
func (w *helperWriter) checkNoLoss(t *testing.T, master *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	before := w.count()
	testwait.For(t, waitTimeout, "writes after the switchover", func() error {
		if n := w.count(); n < before+100 {
			return fmt.Errorf("%d writes since the switchover", n-before)
		}
		return nil
	})
	w.halt()
	vals, err := master.Client().LRange(ctx, "zero-loss", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]bool, len(vals))
	for _, v := range vals {
		have[v] = true
	}
	lost := 0
	for _, i := range w.acked {
		if !have[fmt.Sprint(i)] {
			lost++
		}
	}
	t.Logf("switchover under load: %d acknowledged writes, %d failed attempts, longest pause between acks %v", len(w.acked), w.failures, w.longest.Round(time.Millisecond))
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes are missing on the new master", lost, len(w.acked))
	}
}
