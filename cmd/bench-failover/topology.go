package main

import (
	"context"
	"fmt"
	"github.com/raftinel/raftinel/internal/benchproc"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

const masterName = "benchmaster"

const (
	systemRaftinel = "raftinel"
	systemSentinel = "sentinel"
	systemWatch    = "raftinel-watch"
)

// topology is one run's processes: three redis-server (the master first)
// and three failover deciders, each with a Sentinel-protocol endpoint.
type topology struct {
	dir           string
	redis         []*benchproc.Proc
	redisAddrs    []string
	redisArgs     [][]string // each redis-server's arguments, for a restart
	procs         []*benchproc.Proc
	deciders      []*benchproc.Proc // the coordinators or sentinels, in sentinelAddrs' order
	sentinelAddrs []string
	grpcAddrs     []string // Raftinel only
}

func (t *topology) close() {
	for _, p := range t.procs {
		p.Kill()
	}
	_ = os.RemoveAll(t.dir)
}

// startTopology starts the Redis group and the system under test, and
// returns when every Sentinel endpoint sees both replicas linked. For a
// leader-crash fault every decider is armed to crash at its point.
func startTopology(ctx context.Context, o *options, sys, fault string) (t *topology, err error) {
	dir, err := os.MkdirTemp("", "raftinel-bench-")
	if err != nil {
		return nil, err
	}
	t = &topology{dir: dir}
	// The error returns below set t to nil: close what was started
	// through a copy of the pointer.
	started := t
	defer func() {
		if err != nil {
			started.close()
		}
	}()
	ports, err := benchproc.FreePorts(12)
	if err != nil {
		return nil, err
	}
	if err := t.startRedis(ctx, o, ports[:3], fault); err != nil {
		return nil, err
	}
	if sys == systemSentinel {
		err = t.startSentinels(ctx, o, ports[3:6])
	} else {
		err = t.startRaftinel(ctx, o, ports[3:12], crashPoint(fault))
	}
	if err != nil {
		return nil, err
	}
	if err := t.waitReady(ctx); err != nil {
		return nil, err
	}
	if sys == systemSentinel && isLeaderCrash(fault) {
		// Armed only now that the sentinels monitor the master; the
		// coordinators got --simulate-failure at start.
		if err := t.setSentinelCrash(ctx, t.sentinelAddrs, crashPoint(fault)); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// setSentinelCrash sends SENTINEL SIMULATE-FAILURE to each sentinel and
// checks the flags INFO reports: 1 for crash-after-election, 2 for
// crash-after-promotion. An empty point disarms: redis-sentinel clears its
// flags before it reads the arguments and has no "none", so the bench
// sends "help", which leaves the flags cleared (checked in INFO as 0).
func (t *topology) setSentinelCrash(ctx context.Context, addrs []string, point string) error {
	args, want := []any{"SENTINEL", "SIMULATE-FAILURE", point}, "1"
	switch point {
	case "":
		args[2], want = "help", "0"
	case crashAfterPromotion:
		want = "2"
	}
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		err := c.Do(ctx, args...).Err()
		var info string
		if err == nil {
			info, err = c.Info(ctx, "sentinel").Result()
		}
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("SENTINEL SIMULATE-FAILURE %s on %s: %w", args[2], addr, err)
		}
		if got := infoField(info, "sentinel_simulate_failure_flags"); got != want {
			return fmt.Errorf("SENTINEL SIMULATE-FAILURE %s on %s: INFO reports sentinel_simulate_failure_flags %q, want %s", args[2], addr, got, want)
		}
	}
	return nil
}

func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// startRedis starts the master and its two replicas, without
// persistence, except for the restart fault's master, which keeps its data
// in an append-only file so that it comes back with every acknowledged
// write. For the debug-sleep fault they accept DEBUG from 127.0.0.1
// (Redis 7 refuses it by default).
func (t *topology) startRedis(ctx context.Context, o *options, ports []int, fault string) error {
	for i, port := range ports {
		d := filepath.Join(t.dir, "redis-"+strconv.Itoa(port))
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", d, "--save", "", "--daemonize", "no"}
		if fault == faultRestart && i == 0 {
			// appendfsync no: every write reaches the file (the page
			// cache) before its reply, which is all a SIGKILL needs.
			// everysec would postpone the write while a background
			// fsync is slow, and acknowledged writes die with the process.
			args = append(args, "--appendonly", "yes", "--appendfsync", "no")
		} else {
			args = append(args, "--appendonly", "no")
		}
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
		}
		if fault == faultDebugSleep {
			args = append(args, "--enable-debug-command", "local")
		}
		p, err := benchproc.Start(t.dir, "redis-"+strconv.Itoa(port), o.redisServer, args...)
		if err != nil {
			return err
		}
		t.procs = append(t.procs, p)
		t.redis = append(t.redis, p)
		t.redisAddrs = append(t.redisAddrs, benchproc.Addr(port))
		t.redisArgs = append(t.redisArgs, args)
		if err := benchproc.WaitListening(ctx, p, port); err != nil {
			return err
		}
	}
	master := redis.NewClient(&redis.Options{Addr: t.redisAddrs[0], MaxRetries: -1})
	defer master.Close()
	return benchproc.Poll(ctx, 30*time.Second, func() error {
		info, err := master.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "connected_slaves:2") || strings.Count(info, "state=online") != 2 {
			return fmt.Errorf("replicas not online yet:\n%s", info)
		}
		return nil
	})
}

// restartMaster starts the master again at the time at (or at once if
// that has passed), once its killed process is reaped: the same arguments,
// so the same port and data directory. The new process joins t.procs, so
// close kills it like the others.
func (t *topology) restartMaster(ctx context.Context, o *options, at time.Time) (*benchproc.Proc, error) {
	old := t.redis[0]
	select {
	case <-old.Done:
	case <-time.After(5 * time.Second):
		return nil, fmt.Errorf("%s has not exited 5s after SIGKILL", old.Name)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-time.After(time.Until(at)):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p, err := benchproc.Start(t.dir, old.Name+"-restarted", o.redisServer, t.redisArgs[0]...)
	if err != nil {
		return nil, err
	}
	t.procs = append(t.procs, p)
	t.redis[0] = p
	return p, nil
}

func (t *topology) startSentinels(ctx context.Context, o *options, ports []int) error {
	set := benchproc.SentinelSettings{Masters: map[string]string{masterName: t.redisAddrs[0]}, DownAfter: o.downAfter, FailoverTimeout: o.failoverTimeout}
	for _, port := range ports {
		p, err := benchproc.StartSentinel(ctx, t.dir, o.redisSentinel, port, set)
		if p != nil {
			t.procs = append(t.procs, p)
			t.deciders = append(t.deciders, p)
			t.sentinelAddrs = append(t.sentinelAddrs, benchproc.Addr(port))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// startRaftinel starts three coordinator nodes (ports: three Raft, three
// gRPC, three Sentinel) and monitors the master with the bench's settings.
// A non-empty crash point is passed as --simulate-failure.
func (t *topology) startRaftinel(ctx context.Context, o *options, ports []int, crash string) error {
	var boot []string
	for i := range 3 {
		boot = append(boot, fmt.Sprintf("n%d=%s", i+1, benchproc.Addr(ports[i])))
	}
	var extra []string
	if o.raftTimeout > 0 {
		extra = append(extra, "--raft-heartbeat-timeout", o.raftTimeout.String(),
			"--raft-election-timeout", o.raftTimeout.String(), "--raft-lease-timeout", (o.raftTimeout / 2).String())
	}
	if crash != "" {
		extra = append(extra, "--simulate-failure", crash)
	}
	if o.pingPeriodFlag {
		extra = append(extra, "--ping-period", o.pingPeriodOf(systemRaftinel).String())
	}
	for i := range 3 {
		id := fmt.Sprintf("n%d", i+1)
		args := append([]string{"--id", id, "--data-dir", filepath.Join(t.dir, id),
			"--raft-addr", benchproc.Addr(ports[i]), "--grpc-addr", benchproc.Addr(ports[3+i]), "--sentinel-addr", benchproc.Addr(ports[6+i]),
			"--bootstrap", strings.Join(boot, ","), "--log-level", "warn"}, extra...)
		p, err := benchproc.Start(t.dir, id, o.coordinator, args...)
		if err != nil {
			return err
		}
		t.procs = append(t.procs, p)
		t.deciders = append(t.deciders, p)
		t.grpcAddrs = append(t.grpcAddrs, benchproc.Addr(ports[3+i]))
		t.sentinelAddrs = append(t.sentinelAddrs, benchproc.Addr(ports[6+i]))
		if err := benchproc.WaitListening(ctx, p, ports[6+i]); err != nil {
			if p.Exited() && p.ExitCode == 2 && len(extra) > 0 {
				// Status 2 is the coordinator's answer to a flag it does
				// not know.
				return fmt.Errorf("%s rejected its flags %q (exit status 2: is it older than this bench? rebuild it with make build): %w",
					o.coordinator, extra, err)
			}
			return err
		}
	}
	conn, err := grpc.NewClient(t.grpcAddrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	api := coordinatorv1.NewCoordinatorServiceClient(conn)
	req := &coordinatorv1.MonitorRequest{Name: masterName, Address: t.redisAddrs[0], Settings: &coordinatorv1.MasterSettings{
		Quorum: 2, DownAfter: durationpb.New(o.downAfter), FailoverTimeout: durationpb.New(o.failoverTimeout), ParallelSyncs: 1}}
	// The first write waits for the cluster's first leader. On a loaded
	// machine an attempt can time out after its commit: the retry then
	// finds the master monitored already.
	return benchproc.Poll(ctx, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := api.Monitor(cctx, req)
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return err
	})
}

// waitReady returns when every Sentinel endpoint lists the master with two
// linked replicas and two peers: both systems can then fail over.
func (t *topology) waitReady(ctx context.Context) error {
	for _, addr := range t.sentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		err := benchproc.Poll(ctx, 60*time.Second, func() error {
			m, err := sc.Master(ctx, masterName).Result()
			if err != nil {
				return err
			}
			if m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("%s: num-slaves %s, num-other-sentinels %s", addr, m["num-slaves"], m["num-other-sentinels"])
			}
			replicas, err := sc.Replicas(ctx, masterName).Result()
			if err != nil {
				return err
			}
			for _, r := range replicas {
				if r["flags"] != "slave" || r["master-link-status"] != "ok" {
					return fmt.Errorf("%s: replica %s flags %q link %q", addr, r["name"], r["flags"], r["master-link-status"])
				}
			}
			return nil
		})
		_ = sc.Close()
		if err != nil {
			return fmt.Errorf("waiting for %s to be ready: %w", addr, err)
		}
	}
	return nil
}
