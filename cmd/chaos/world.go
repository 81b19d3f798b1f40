package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	masterName = "mymaster"
	redisPort  = 6379
	sentPort   = 26379
	grpcPort   = 7100
	raftPort   = 7000
	downAfter  = time.Second
)

var (
	redisHosts = []string{"r1", "r2", "r3"}
	coordHosts = []string{"c1", "c2", "c3"}
)

// world is one run: the processes of one system on the lab's hosts.
type world struct {
	lab    *lab
	dir    string
	system string
	bin    string // directory of coordinator and coordinatorctl
	procs  map[string]*proc
	args   map[string][]string      // redis-server's arguments, for restarts
	obs    map[string]*redis.Client // observer connections to each instance
}

func (w *world) addr(host string, port int) string {
	return w.lab.h(host).ip + ":" + strconv.Itoa(port)
}

func (w *world) sentinelAddrs() []string {
	var out []string
	for _, h := range coordHosts {
		out = append(out, w.addr(h, sentPort))
	}
	return out
}

// obsClient is a client in the observer's namespace, which no scenario cuts.
func (w *world) obsClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Dialer: w.lab.dialer(w.lab.h("obs")), DialTimeout: 500 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: -1, PoolSize: 2})
}

func (w *world) start(ctx context.Context) error {
	w.procs = map[string]*proc{}
	w.args = map[string][]string{}
	w.obs = map[string]*redis.Client{}
	for i, h := range redisHosts {
		d := filepath.Join(w.dir, h)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		args := []string{"--bind", w.lab.h(h).ip, "--port", strconv.Itoa(redisPort), "--protected-mode", "no", "--save", "",
			"--appendonly", "no", "--dir", d, "--repl-diskless-sync-delay", "0"}
		if i > 0 {
			args = append(args, "--replicaof", w.lab.h("r1").ip, strconv.Itoa(redisPort))
		}
		w.args[h] = args
		p, err := startIn(w.dir, w.lab.h(h), h, "redis-server", args...)
		if err != nil {
			return err
		}
		w.procs[h] = p
		w.obs[h] = w.obsClient(w.addr(h, redisPort))
	}
	if err := poll(ctx, 20*time.Second, "replicas in sync", func() error {
		for _, h := range redisHosts[1:] {
			info, err := w.obs[h].Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "master_link_status:up") {
				return fmt.Errorf("%s: link not up", h)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if w.system == "raftinel" {
		return w.startRaftinel(ctx)
	}
	return w.startSentinel(ctx)
}

func (w *world) startRaftinel(ctx context.Context) error {
	var boot []string
	for _, h := range coordHosts {
		boot = append(boot, h+"="+w.addr(h, raftPort))
	}
	for _, h := range coordHosts {
		p, err := startIn(w.dir, w.lab.h(h), h, filepath.Join(w.bin, "coordinator"), "--id", h, "--data-dir", filepath.Join(w.dir, h),
			"--raft-addr", w.addr(h, raftPort), "--grpc-addr", w.addr(h, grpcPort), "--sentinel-addr", w.addr(h, sentPort),
			"--bootstrap", strings.Join(boot, ","), "--raft-heartbeat-timeout", "500ms", "--raft-election-timeout", "500ms",
			"--raft-lease-timeout", "250ms")
		if err != nil {
			return err
		}
		w.procs[h] = p
	}
	if err := poll(ctx, 30*time.Second, "monitor", func() error {
		_, err := w.ctl(ctx, "monitor", masterName, w.addr("r1", redisPort), "--quorum", "2", "--down-after", downAfter.String(),
			"--failover-timeout", "15s")
		// Each run starts empty, so a duplicate is this loop's own earlier
		// attempt, committed after its client gave up (a loaded machine).
		if err != nil && (strings.Contains(err.Error(), "already") || strings.Contains(err.Error(), "Duplicate master name")) {
			return nil
		}
		return err
	}); err != nil {
		return err
	}
	return poll(ctx, 30*time.Second, "replicas known and fence set", func() error {
		if err := w.sentinelSees(ctx, 2, false); err != nil {
			return err
		}
		v, err := w.obs["r1"].ConfigGet(ctx, "min-replicas-to-write").Result()
		if err != nil {
			return err
		}
		if v["min-replicas-to-write"] != "2" {
			return fmt.Errorf("min-replicas-to-write %q", v["min-replicas-to-write"])
		}
		return nil
	})
}

// ctl runs coordinatorctl from the observer's namespace.
func (w *world) ctl(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var addrs []string
	for _, h := range coordHosts {
		addrs = append(addrs, w.addr(h, grpcPort))
	}
	full := append([]string{"netns", "exec", w.lab.h("obs").ns, filepath.Join(w.bin, "coordinatorctl"), "--addr", strings.Join(addrs, ",")}, args...)
	out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("coordinatorctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func (w *world) startSentinel(ctx context.Context) error {
	for _, h := range coordHosts {
		d := filepath.Join(w.dir, h)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		conf := fmt.Sprintf("port %d\nbind %s\nprotected-mode no\ndir %s\nsentinel monitor %s %s %d 2\n"+
			"sentinel down-after-milliseconds %s %d\nsentinel failover-timeout %s 15000\nsentinel parallel-syncs %s 1\n",
			sentPort, w.lab.h(h).ip, d, masterName, w.lab.h("r1").ip, redisPort, masterName, downAfter.Milliseconds(), masterName, masterName)
		path := filepath.Join(d, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			return err
		}
		p, err := startIn(w.dir, w.lab.h(h), h, "redis-sentinel", path)
		if err != nil {
			return err
		}
		w.procs[h] = p
	}
	return poll(ctx, 30*time.Second, "sentinels know the replicas and each other", func() error { return w.sentinelSees(ctx, 2, true) })
}

// sentinelSees checks every node's SENTINEL MASTER: 2 replicas, and (for
// Sentinel) 2 other sentinels.
func (w *world) sentinelSees(ctx context.Context, replicas int, peers bool) error {
	for _, a := range w.sentinelAddrs() {
		c := w.obsClient(a)
		m, err := c.Do(ctx, "SENTINEL", "MASTER", masterName).Result()
		c.Close()
		if err != nil {
			return err
		}
		fields := map[string]string{}
		switch v := m.(type) {
		case []any:
			for i := 0; i+1 < len(v); i += 2 {
				fields[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
			}
		case map[any]any:
			for k, x := range v {
				fields[fmt.Sprint(k)] = fmt.Sprint(x)
			}
		}
		if fields["num-slaves"] != strconv.Itoa(replicas) {
			return fmt.Errorf("%s: num-slaves %q", a, fields["num-slaves"])
		}
		if peers && fields["num-other-sentinels"] != "2" {
			return fmt.Errorf("%s: num-other-sentinels %q", a, fields["num-other-sentinels"])
		}
	}
	return nil
}

// leader is the coordinator host leading Raft (Raftinel), or "" when no
// node names one.
func (w *world) leader(ctx context.Context) string {
	out, err := w.ctl(ctx, "status", "-o", "json")
	if err != nil {
		return ""
	}
	var st struct {
		Nodes []struct {
			ID       string `json:"id"`
			LeaderID string `json:"leader_id"`
		} `json:"nodes"`
	}
	if json.Unmarshal(out, &st) != nil {
		return ""
	}
	for _, n := range st.Nodes {
		if n.LeaderID != "" {
			return n.LeaderID
		}
	}
	return ""
}

// namedMaster is what the nodes answer to GET-MASTER-ADDR-BY-NAME, by
// majority of those that answer.
func (w *world) namedMaster(ctx context.Context) string {
	count := map[string]int{}
	best := ""
	for _, a := range w.sentinelAddrs() {
		c := w.obsClient(a)
		v, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName).StringSlice()
		c.Close()
		if err != nil || len(v) != 2 {
			continue
		}
		addr := v[0] + ":" + v[1]
		count[addr]++
		if count[addr] > count[best] {
			best = addr
		}
	}
	return best
}

// restartRedis starts redis-server on h again with its first arguments.
func (w *world) restartRedis(h string) error {
	p, err := startIn(w.dir, w.lab.h(h), h+"-again", "redis-server", w.args[h]...)
	if err != nil {
		return err
	}
	w.procs[h] = p
	return nil
}

func (w *world) stop() {
	for _, c := range w.obs {
		c.Close()
	}
	var wg sync.WaitGroup
	for _, p := range w.procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

// poll calls f until it succeeds, every 100 ms, for at most d.
func poll(ctx context.Context, d time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(d)
	var err error
	for i := 0; i < int(d/(100*time.Millisecond))+1; i++ {
		if err = f(); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: not within %v: %w", what, d, errors.Join(err))
}
