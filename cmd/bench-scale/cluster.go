package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftinel/raftinel/internal/benchproc"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// group is one monitored Redis group: its master first, then two replicas.
type group struct {
	name  string
	procs []*benchproc.Proc
	addrs []string
}

// fleet is one system's run: the Redis groups and the three deciders
// (coordinator nodes or sentinels), each with a Sentinel-protocol endpoint.
type fleet struct {
	dir           string
	groups        []group
	redisPorts    map[int]bool
	all           []*benchproc.Proc
	deciders      []*benchproc.Proc
	sentinelAddrs []string
	grpcAddrs     []string          // Raftinel only
	metricsAddrs  []string          // Raftinel with -pprof-dir only
	nodes         []*benchproc.Proc // Raftinel only
}

// keepLogs copies the Raftinel nodes' logs into o.logDir.
func (f *fleet) keepLogs(o *options, sys string) error {
	if o.logDir == "" || len(f.nodes) == 0 {
		return nil
	}
	if err := os.MkdirAll(o.logDir, 0o755); err != nil {
		return err
	}
	for i, p := range f.nodes {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.logDir, fmt.Sprintf("%s-g%d-n%d.log", sys, o.groups, i+1)), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (f *fleet) close() {
	for _, p := range f.all {
		p.Kill()
	}
	_ = os.RemoveAll(f.dir)
}

func groupName(i int) string { return fmt.Sprintf("g%04d", i) }

// startFleet starts the groups and the system, and returns once every
// endpoint lists every master with two replicas and two peers.
func startFleet(ctx context.Context, o *options, sys string) (f *fleet, err error) {
	dir, err := os.MkdirTemp("", "raftinel-bench-scale-")
	if err != nil {
		return nil, err
	}
	f = &fleet{dir: dir, redisPorts: map[int]bool{}}
	// The error returns below set f to nil: close what was started
	// through a copy of the pointer.
	started := f
	defer func() {
		if err != nil {
			started.close()
		}
	}()
	ports, err := benchproc.PortsFrom(o.basePort, 3*o.groups+12)
	if err != nil {
		return nil, err
	}
	begun := time.Now()
	if err := f.startGroups(ctx, o, ports[:3*o.groups]); err != nil {
		return nil, err
	}
	fmt.Printf("  %s: %d redis-server up in %v\n", sys, 3*o.groups, time.Since(begun).Round(time.Second))
	rest := ports[3*o.groups:]
	if sys == systemSentinel {
		err = f.startSentinels(ctx, o, rest[:3])
	} else {
		err = f.startRaftinel(ctx, o, sys, rest)
	}
	if err != nil {
		return nil, err
	}
	begun = time.Now()
	if err := f.waitReady(ctx, o); err != nil {
		return nil, err
	}
	fmt.Printf("  %s: every endpoint sees %d masters with 2 replicas and 2 peers after %v\n", sys, o.groups, time.Since(begun).Round(time.Second))
	return f, nil
}

func (f *fleet) startGroups(ctx context.Context, o *options, ports []int) error {
	for i := range o.groups {
		g := group{name: groupName(i)}
		for j := range 3 {
			port := ports[3*i+j]
			f.redisPorts[port] = true
			d := filepath.Join(f.dir, "redis-"+strconv.Itoa(port))
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", d, "--save", "", "--appendonly", "no",
				"--daemonize", "no", "--hz", strconv.Itoa(o.redisHz), "--loglevel", "warning"}
			if j > 0 {
				args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(ports[3*i]))
			}
			p, err := benchproc.Start(f.dir, "redis-"+strconv.Itoa(port), o.redisServer, args...)
			if err != nil {
				return err
			}
			f.all = append(f.all, p)
			if o.redisNice > 0 {
				if err := syscall.Setpriority(syscall.PRIO_PROCESS, p.Pid(), o.redisNice); err != nil {
					return fmt.Errorf("nice %d for redis-server on port %d: %w", o.redisNice, port, err)
				}
			}
			g.procs = append(g.procs, p)
			g.addrs = append(g.addrs, benchproc.Addr(port))
		}
		f.groups = append(f.groups, g)
	}
	for _, g := range f.groups {
		for j, p := range g.procs {
			port, _ := strconv.Atoi(strings.TrimPrefix(g.addrs[j], "127.0.0.1:"))
			if err := benchproc.WaitListening(ctx, p, port); err != nil {
				return err
			}
		}
	}
	// Every replica online at its master before anyone watches it.
	for _, g := range f.groups {
		c := redis.NewClient(&redis.Options{Addr: g.addrs[0], MaxRetries: -1})
		err := benchproc.Poll(ctx, time.Minute, func() error {
			info, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if strings.Count(info, "state=online") != 2 {
				return fmt.Errorf("%s: replicas not online yet", g.name)
			}
			return nil
		})
		_ = c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (f *fleet) startSentinels(ctx context.Context, o *options, ports []int) error {
	set := benchproc.SentinelSettings{Masters: map[string]string{}, DownAfter: o.downAfter, FailoverTimeout: o.failoverTimeout, LogLevel: "warning"}
	for _, g := range f.groups {
		set.Masters[g.name] = g.addrs[0]
	}
	for _, port := range ports {
		p, err := benchproc.StartSentinel(ctx, f.dir, o.redisSentinel, port, set)
		if p != nil {
			f.all = append(f.all, p)
			f.deciders = append(f.deciders, p)
			f.sentinelAddrs = append(f.sentinelAddrs, benchproc.Addr(port))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// startRaftinel starts three nodes (ports: three Raft, three gRPC, three
// Sentinel) and monitors every group through the gRPC API.
func (f *fleet) startRaftinel(ctx context.Context, o *options, sys string, ports []int) error {
	var boot []string
	for i := range 3 {
		boot = append(boot, fmt.Sprintf("n%d=%s", i+1, benchproc.Addr(ports[i])))
	}
	for i := range 3 {
		id := fmt.Sprintf("n%d", i+1)
		args := []string{"--id", id, "--data-dir", filepath.Join(f.dir, id),
			"--raft-addr", benchproc.Addr(ports[i]), "--grpc-addr", benchproc.Addr(ports[3+i]), "--sentinel-addr", benchproc.Addr(ports[6+i]),
			"--bootstrap", strings.Join(boot, ","), "--log-level", o.nodeLogLevel}
		if sys == systemRaftinel {
			args = append(args, "--ping-period", "1s")
		}
		args = append(args, o.nodeArgs...)
		if o.pprofDir != "" {
			args = append(args, "--metrics-addr", benchproc.Addr(ports[9+i]), "--pprof")
			f.metricsAddrs = append(f.metricsAddrs, benchproc.Addr(ports[9+i]))
		}
		p, err := benchproc.Start(f.dir, id, o.coordinator, args...)
		if err != nil {
			return err
		}
		f.all = append(f.all, p)
		f.deciders = append(f.deciders, p)
		f.nodes = append(f.nodes, p)
		f.grpcAddrs = append(f.grpcAddrs, benchproc.Addr(ports[3+i]))
		f.sentinelAddrs = append(f.sentinelAddrs, benchproc.Addr(ports[6+i]))
		if err := benchproc.WaitListening(ctx, p, ports[6+i]); err != nil {
			return err
		}
	}
	api, conn, err := dialNode(f.grpcAddrs[0])
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, g := range f.groups {
		req := &coordinatorv1.MonitorRequest{Name: g.name, Address: g.addrs[0], Settings: &coordinatorv1.MasterSettings{
			Quorum: 2, DownAfter: durationpb.New(o.downAfter), FailoverTimeout: durationpb.New(o.failoverTimeout), ParallelSyncs: 1,
			Fence: proto.Bool(o.fence)}}
		// The first write waits for the cluster's first leader.
		err := benchproc.Poll(ctx, 30*time.Second, func() error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := api.Monitor(cctx, req)
			if status.Code(err) == codes.AlreadyExists {
				// An earlier try was committed but its answer timed out.
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("monitor %s: %w", g.name, err)
		}
	}
	return nil
}

// waitReady polls SENTINEL MASTERS on every endpoint until each lists every
// group with two replicas and two other deciders: both systems can then
// fail any of them over.
func (f *fleet) waitReady(ctx context.Context, o *options) error {
	timeout := 2*time.Minute + time.Duration(o.groups)*200*time.Millisecond
	for _, addr := range f.sentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 30 * time.Second})
		err := benchproc.Poll(ctx, timeout, func() error {
			masters, err := sentinelMasters(ctx, sc)
			if err != nil {
				return err
			}
			if len(masters) != o.groups {
				return fmt.Errorf("%s lists %d masters of %d", addr, len(masters), o.groups)
			}
			for _, m := range masters {
				if m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
					return fmt.Errorf("%s: %s has num-slaves %s, num-other-sentinels %s", addr, m["name"], m["num-slaves"], m["num-other-sentinels"])
				}
			}
			return nil
		})
		_ = sc.Close()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", addr, err)
		}
	}
	return nil
}

// sentinelMasters is SENTINEL MASTERS as one map per master.
func sentinelMasters(ctx context.Context, sc *redis.SentinelClient) ([]map[string]string, error) {
	v, err := sc.Masters(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, e := range v {
		m := map[string]string{}
		switch e := e.(type) {
		case []any: // RESP2: a flat list of field, value
			for i := 0; i+1 < len(e); i += 2 {
				m[fmt.Sprint(e[i])] = fmt.Sprint(e[i+1])
			}
		case map[any]any: // RESP3
			for k, val := range e {
				m[fmt.Sprint(k)] = fmt.Sprint(val)
			}
		}
		out = append(out, m)
	}
	return out, nil
}
