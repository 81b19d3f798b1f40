// Command bench-scale measures Raftinel against redis-sentinel at scale:
// N groups of real redis-server processes (a master and two replicas
// each), watched either by a 3-node Raftinel cluster or by three
// redis-sentinel processes, one system after the other on fresh groups. For
// each it reports steady-state CPU and memory per coordinator process,
// connections to Redis, Raft log entries per second, the latency of
// SENTINEL MASTERS and of one master's read at that size, and a mass
// failure: SIGKILL of a fraction of the masters at once, timed to each
// group's +switch-master, with writers on a sample of the killed groups
// counting acknowledged writes lost.
//
// It ends with one line per system:
//
//	scale: system=... groups=N instances=I cpu_pct_per_node=C rss_mb=R raft_entries_per_s=E mass_kill=K all_switched_ms=T unfinished=U
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	systemRaftinel        = "raftinel"         // ping-period set to Sentinel's 1 s
	systemRaftinelDefault = "raftinel-default" // the node's own ping period (down-after/10)
	systemSentinel        = "sentinel"
)

type options struct {
	groups          int
	steady          time.Duration
	systems         []string
	downAfter       time.Duration
	failoverTimeout time.Duration
	killFraction    float64
	writers         int
	massTimeout     time.Duration
	redisHz         int
	redisNice       int
	fence           bool
	pprofDir        string
	logDir          string
	nodeLogLevel    string
	nodeArgs        []string
	basePort        int

	coordinator   string
	redisServer   string
	redisSentinel string
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench-scale", flag.ContinueOnError)
	o := &options{}
	systems := fs.String("systems", systemRaftinel+","+systemRaftinelDefault+","+systemSentinel,
		"systems to measure, comma-separated: raftinel (ping-period 1 s, as Sentinel's), raftinel-default (the node's own ping period), sentinel")
	fs.IntVar(&o.groups, "groups", 300, "Redis groups (1 master + 2 replicas each); 0 measures the coordinators with nothing to watch, which is what the cluster itself costs (for Raftinel: Raft's leader, its heartbeats and the staleness watch)")
	fs.DurationVar(&o.steady, "steady", 60*time.Second, "steady-state measurement window")
	fs.DurationVar(&o.downAfter, "down-after", 5*time.Second, "down-after for every master")
	fs.DurationVar(&o.failoverTimeout, "failover-timeout", 60*time.Second, "failover-timeout for every master")
	fs.Float64Var(&o.killFraction, "kill-fraction", 0.1, "fraction of the masters SIGKILLed at once (0 skips the mass failure)")
	fs.IntVar(&o.writers, "writers", 5, "killed groups that get a writer counting lost acknowledged writes")
	fs.DurationVar(&o.massTimeout, "mass-timeout", 3*time.Minute, "how long to wait for every killed group's +switch-master")
	fs.IntVar(&o.redisHz, "redis-hz", 1, "hz of every redis-server, low so that Redis leaves the CPU to the coordinators")
	fs.IntVar(&o.redisNice, "redis-nice", 10, "nice value of every redis-server (0 to 19, 0 to leave them as they start): on a machine too small for thousands of them and the coordinators, a positive value lets the kernel run the coordinators first, as if on hosts of their own (as -redis-hz, the same for both systems)")
	fs.BoolVar(&o.fence, "fence", true, "Raftinel fences every master (its default); -fence=false turns it off, as Sentinel has no fence: the leader then makes no fence reads")
	fs.StringVar(&o.pprofDir, "pprof-dir", "", "when set, save a CPU profile of every Raftinel node over the steady window (NAME.cpu.pprof), a heap profile after it, and a CPU profile from the mass kill on, down-after + 10 s long (NAME-kill.cpu.pprof), into this folder")
	fs.StringVar(&o.logDir, "log-dir", "", "when set, copy every Raftinel node's log into this folder at the end of each system's run (SYSTEM-gN-nI.log)")
	fs.StringVar(&o.nodeLogLevel, "node-log-level", "warn", "--log-level of the Raftinel nodes (info shows each failover's steps)")
	nodeArgs := fs.String("node-args", "", "more flags for every Raftinel node, separated by spaces, for example \"--raft-heartbeat-timeout 3s --raft-election-timeout 3s --raft-lease-timeout 1500ms\" (the bench already sets --id, --data-dir, the addresses, --bootstrap, --log-level, and --ping-period for -systems raftinel)")
	fs.IntVar(&o.basePort, "base-port", 20000, "first port to use (the bench takes 3 x groups + 12 free ports from here up; keep below the kernel's ephemeral range)")
	fs.StringVar(&o.coordinator, "coordinator", "bin/coordinator", "coordinator binary (make build)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*systems, ",") {
		switch s {
		case systemRaftinel, systemRaftinelDefault, systemSentinel:
			o.systems = append(o.systems, s)
		default:
			return nil, fmt.Errorf("-systems: unknown system %q (raftinel, raftinel-default, sentinel)", s)
		}
	}
	switch {
	case o.groups < 0:
		return nil, fmt.Errorf("-groups must not be negative, got %d", o.groups)
	case o.steady < 5*time.Second:
		return nil, fmt.Errorf("-steady must be at least 5s, got %v", o.steady)
	case o.killFraction < 0 || o.killFraction > 1:
		return nil, fmt.Errorf("-kill-fraction must be within [0, 1], got %v", o.killFraction)
	case o.writers < 0:
		return nil, fmt.Errorf("-writers must not be negative, got %d", o.writers)
	case o.basePort < 1024 || o.basePort > 65535:
		return nil, fmt.Errorf("-base-port must be within [1024, 65535], got %d", o.basePort)
	case o.redisHz < 1 || o.redisHz > 500:
		return nil, fmt.Errorf("-redis-hz must be within [1, 500], got %d", o.redisHz)
	case o.redisNice < 0 || o.redisNice > 19:
		return nil, fmt.Errorf("-redis-nice must be within [0, 19], got %d", o.redisNice)
	}
	o.nodeArgs = strings.Fields(*nodeArgs)
	if len(o.nodeArgs) > 0 && !strings.HasPrefix(o.nodeArgs[0], "-") {
		return nil, fmt.Errorf("-node-args must start with a flag, got %q", o.nodeArgs[0])
	}
	var err error
	for _, b := range []struct {
		path *string
		name string
	}{{&o.redisServer, "redis-server"}, {&o.redisSentinel, "redis-sentinel"}} {
		if *b.path, err = exec.LookPath(b.name); err != nil {
			return nil, fmt.Errorf("%s not found (make redis installs it): %w", b.name, err)
		}
	}
	if slices.ContainsFunc(o.systems, func(s string) bool { return s != systemSentinel }) {
		if _, err := os.Stat(o.coordinator); err != nil {
			return nil, fmt.Errorf("coordinator binary: %w (make build)", err)
		}
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(2)
	}
	// go-redis logs every failed dial of the writers' clients while a
	// killed master is being replaced: expected, and not a measurement.
	redis.SetLogger(quietLog{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func run(ctx context.Context, o *options) error {
	fmt.Printf("bench-scale: %d groups (%d redis-server), down-after %v, failover-timeout %v, steady %v, redis hz %d, redis nice %d, Raftinel fence %v\n",
		o.groups, 3*o.groups, o.downAfter, o.failoverTimeout, o.steady, o.redisHz, o.redisNice, o.fence)
	if len(o.nodeArgs) > 0 {
		fmt.Printf("bench-scale: every Raftinel node also runs with %s\n", strings.Join(o.nodeArgs, " "))
	}
	var results []result
	for _, sys := range o.systems {
		r, err := measureSystem(ctx, o, sys)
		if err != nil {
			return fmt.Errorf("%s: %w", sys, err)
		}
		fmt.Println(r.detail())
		results = append(results, r)
	}
	fmt.Println()
	fmt.Print(compare(results))
	for _, r := range results {
		fmt.Println(r.line())
	}
	return nil
}
