// Command bench-failover measures a failover end to end, against Raftinel
// and against real Redis Sentinel, with the same Redis topology, the same
// down-after and the same client.
//
// Each run starts a fresh topology on free 127.0.0.1 ports (a master and two
// replicas, real redis-server processes), three coordinator nodes or three
// redis-sentinel processes, and a writer: go-redis's FailoverClient, which
// speaks the Sentinel protocol to both systems, appending sequential values
// to a list as fast as it can. It then kills (SIGKILL) or freezes (SIGSTOP,
// or DEBUG SLEEP sent on a connection of its own) the master and measures
//
//   - first +sdown: from the fault to the first +sdown of the master heard
//     on any of the three Sentinel endpoints, and whether it fell within
//     [down-after, down-after + PING period + 100 ms] (the PING period is
//     Sentinel's min(down-after, 1 s), and for Raftinel -ping-period);
//   - announce: from the fault to the first +switch-master heard on any of
//     the three Sentinel endpoints;
//   - outage: from the fault to the first acknowledged write sent after it;
//   - lost: acknowledged writes missing from the new master afterwards.
//
// The restart-300ms fault checks the other side of down-after: the master
// gets SIGKILL and the same redis-server, with its data (appendonly yes), is
// started again on its port 300 ms later, while the writer goes on. The
// bench then watches the endpoints for down-after + 5 s and counts the runs
// with a +odown or a +switch-master of the master: false failovers.
//
// The switchover mode (-faults switchover) injects no fault: it asks for a
// planned switchover of the healthy master (Raftinel: the coordinated
// failover coordinatorctl failover runs; redis-sentinel: SENTINEL
// FAILOVER) while the writer goes on, and measures the longest gap between
// two acknowledged writes and the acknowledged writes lost.
//
// With -watch it also runs Raftinel with the writer following the master
// over gRPC WatchMaster (package client) instead of the Sentinel protocol.
//
// The leader-crash faults (leader-after-election, leader-after-promotion)
// kill the master the same way, with every decider armed to crash when it
// leads the failover: the coordinators start with --simulate-failure, the
// sentinels get SENTINEL SIMULATE-FAILURE. The leader exits with status 99
// right after the failover's start (or its promotion) and the bench
// measures, from that exit, the first +switch-master and the first
// +failover-end published by a surviving node. The kill fault's own
// +switch-master -> +failover-end is the uninterrupted reference for the
// rest of the failover.
//
// Every process it starts is in its own process group and is killed when the
// run ends, when the command is interrupted, or when the command dies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/raftinel/raftinel/internal/benchproc"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

type options struct {
	runs            int
	restartRuns     int // of the restart fault, instead of runs
	downAfter       time.Duration
	failoverTimeout time.Duration
	faults          []string
	systems         []string
	coordinator     string
	redisServer     string
	redisSentinel   string
	runTimeout      time.Duration // 0: derived per fault, see runTimeoutFor
	raftTimeout     time.Duration // 0: the coordinator's defaults
	keepWriting     time.Duration
	debugSleep      time.Duration
	verbose         bool
	// pingPeriod is Raftinel's PING period for the detection window (0:
	// down-after/10 within [50ms, 1s]). It is passed to the coordinators
	// as --ping-period only when pingPeriodFlag: their --help lists it.
	pingPeriod     time.Duration
	pingPeriodFlag bool
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench-failover", flag.ContinueOnError)
	o := &options{}
	var faults, systems string
	fs.IntVar(&o.runs, "runs", 10, "runs of each system and fault (but restart-300ms)")
	fs.IntVar(&o.restartRuns, "restart-runs", 20, "runs of each system for the restart-300ms fault")
	fs.DurationVar(&o.downAfter, "down-after", time.Second, "down-after-milliseconds of the monitored master, for both systems")
	fs.DurationVar(&o.failoverTimeout, "failover-timeout", 10*time.Second, "failover-timeout of the monitored master, for both systems")
	fs.StringVar(&faults, "faults", "kill,stop", "faults to inject, comma-separated: kill (SIGKILL the master), stop (SIGSTOP it), "+
		"debug-sleep (DEBUG SLEEP it for -debug-sleep), restart-300ms (SIGKILL it, restart it with its data 300ms later, count false failovers), "+
		"leader-after-election and leader-after-promotion (SIGKILL the master; the failover's leader then exits right after it commits the start of the failover, resp. the promotion), "+
		"switchover (no fault: a planned switchover of the healthy master, coordinatorctl failover against SENTINEL FAILOVER; measures the longest gap between acknowledged writes and the lost ones)")
	fs.StringVar(&systems, "systems", "raftinel,sentinel,raftinel-watch", "systems to run, comma-separated: raftinel (Sentinel protocol client), sentinel (redis-sentinel), raftinel-watch (gRPC WatchMaster client)")
	fs.StringVar(&o.coordinator, "coordinator", "bin/coordinator", "the coordinator binary (make build)")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "the redis-server binary")
	fs.StringVar(&o.redisSentinel, "redis-sentinel", "redis-sentinel", "the redis-sentinel binary")
	fs.DurationVar(&o.runTimeout, "run-timeout", 0, "give up on one run after this long (0: 90s, and for the leader-crash faults 90s plus 6 x failover-timeout, for Sentinel's retry after 2 x failover-timeout and a split vote)")
	fs.DurationVar(&o.raftTimeout, "raft-timeout", 0, "coordinators' --raft-heartbeat-timeout and --raft-election-timeout, and half of it as --raft-lease-timeout (0: the coordinator's defaults)")
	fs.DurationVar(&o.debugSleep, "debug-sleep", 10*time.Second, "how long the debug-sleep fault freezes the master (DEBUG SLEEP): long enough for the failover")
	fs.DurationVar(&o.keepWriting, "keep-writing", time.Second, "how long the writer goes on after its first write to the new master")
	fs.DurationVar(&o.pingPeriod, "ping-period", 0, "Raftinel's PING period: the detection window's period for raftinel, and the coordinators' --ping-period if they have that flag (0: down-after/10 within [50ms, 1s]); redis-sentinel's is min(down-after, 1s)")
	fs.BoolVar(&o.verbose, "v", false, "print each run as it ends")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.runs < 1 || o.runs > 1000 {
		return nil, fmt.Errorf("-runs %d: want 1 to 1000", o.runs)
	}
	if o.restartRuns < 1 || o.restartRuns > 1000 {
		return nil, fmt.Errorf("-restart-runs %d: want 1 to 1000", o.restartRuns)
	}
	if o.downAfter < 100*time.Millisecond {
		return nil, fmt.Errorf("-down-after %v: want at least 100ms", o.downAfter)
	}
	if o.failoverTimeout < o.downAfter {
		return nil, fmt.Errorf("-failover-timeout %v: want at least -down-after", o.failoverTimeout)
	}
	if o.debugSleep < o.downAfter {
		return nil, fmt.Errorf("-debug-sleep %v: want at least -down-after", o.debugSleep)
	}
	if o.runTimeout < 0 {
		return nil, fmt.Errorf("-run-timeout %v: want 0 (derived) or more", o.runTimeout)
	}
	if o.pingPeriod != 0 && o.pingPeriod < 10*time.Millisecond {
		return nil, fmt.Errorf("-ping-period %v: want 0 (derived from -down-after) or at least 10ms", o.pingPeriod)
	}
	if o.raftTimeout != 0 && o.raftTimeout < 10*time.Millisecond {
		return nil, fmt.Errorf("-raft-timeout %v: want 0 (the coordinator's defaults) or at least 10ms", o.raftTimeout)
	}
	var err error
	if o.faults, err = splitChoice("-faults", faults, faultKill, faultStop, faultDebugSleep, faultRestart, faultLeaderElection, faultLeaderPromotion, faultSwitchover); err != nil {
		return nil, err
	}
	if o.systems, err = splitChoice("-systems", systems, systemRaftinel, systemSentinel, systemWatch); err != nil {
		return nil, err
	}
	return o, nil
}

// setupAttempts is how many times a run whose topology did not come up is
// started.
const setupAttempts = 3

func splitChoice(flagName, value string, allowed ...string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(value, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(allowed, v) {
			return nil, fmt.Errorf("%s: unknown value %q (want %s)", flagName, v, strings.Join(allowed, ", "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-failover:", err)
		os.Exit(2)
	}
	if !o.verbose {
		// go-redis logs every failed dial of the dead master; the bench
		// expects those.
		redis.SetLogger(quietLog{})
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-failover:", err)
		os.Exit(1)
	}
}

type quietLog struct{}

func (quietLog) Printf(context.Context, string, ...any) {}

func run(ctx context.Context, o *options) error {
	env, err := environment(ctx, o)
	if err != nil {
		return err
	}
	fmt.Println(env)
	if slices.Contains(o.systems, systemWatch) && slices.ContainsFunc(o.faults, isLeaderCrash) {
		fmt.Printf("%s: not run for the leader-crash faults: they time the Sentinel endpoints' events, which %s's writer does not use\n\n", systemWatch, systemWatch)
	}
	results := map[key][]result{}
	rounds := 0
	for _, f := range o.faults {
		rounds = max(rounds, o.runsOf(f))
	}
	// Systems alternate within each round so that a change in the machine's
	// load over time affects both alike.
	for i := range rounds {
		for _, fault := range o.faults {
			if i >= o.runsOf(fault) {
				continue
			}
			for _, sys := range o.systems {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if sys == systemWatch && isLeaderCrash(fault) {
					continue
				}
				r, err := runOnce(ctx, o, sys, fault)
				for attempt := 2; attempt <= setupAttempts && errors.As(err, new(setupError)) && ctx.Err() == nil; attempt++ {
					fmt.Printf("%s, %s, run %d: the topology did not come up (%v); starting it again (attempt %d of %d)\n",
						sys, fault, i+1, err, attempt, setupAttempts)
					r, err = runOnce(ctx, o, sys, fault)
				}
				if err != nil {
					return fmt.Errorf("%s, %s, run %d: %w", sys, fault, i+1, err)
				}
				if o.verbose {
					fmt.Printf("%-15s %-22s run %2d: %s\n", sys, fault, i+1, r)
				}
				k := key{sys, fault}
				results[k] = append(results[k], r)
			}
		}
	}
	fmt.Print(report(o, results))
	return nil
}

func environment(ctx context.Context, o *options) (string, error) {
	var b strings.Builder
	for _, bin := range []string{o.redisServer, o.redisSentinel} {
		out, err := commandOutput(ctx, bin, "--version")
		if err != nil {
			return "", fmt.Errorf("%s --version: %w (install it: make redis)", bin, err)
		}
		fmt.Fprintf(&b, "%s: %s\n", bin, strings.TrimSpace(out))
	}
	if slices.ContainsFunc(o.systems, func(s string) bool { return s != systemSentinel }) {
		if _, err := os.Stat(o.coordinator); err != nil {
			return "", fmt.Errorf("coordinator binary: %w (build it: make build)", err)
		}
		found, err := hasFlag(ctx, o.coordinator, "ping-period")
		if err != nil {
			return "", err
		}
		o.pingPeriodFlag = found
	}
	fmt.Fprintf(&b, "cores: %d, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "down-after %v, failover-timeout %v, %d runs of each system and fault\n", o.downAfter, o.failoverTimeout, o.runs)
	if slices.Contains(o.faults, faultRestart) {
		fmt.Fprintf(&b, "restart-300ms: %d runs of each system; SIGKILL, the same redis-server (appendonly yes) started again on its port %v later, watched for down-after + %v after the restart\n",
			o.restartRuns, restartDelay, restartWatch)
	}
	if slices.Contains(o.faults, faultDebugSleep) {
		fmt.Fprintf(&b, "debug-sleep: DEBUG SLEEP %s (redis-server started with enable-debug-command local)\n", seconds(o.debugSleep))
	}
	if slices.ContainsFunc(o.systems, func(s string) bool { return s != systemSentinel }) {
		if o.raftTimeout > 0 {
			fmt.Fprintf(&b, "coordinators' Raft timeouts: heartbeat %v, election %v, lease %v\n", o.raftTimeout, o.raftTimeout, o.raftTimeout/2)
		} else {
			b.WriteString("coordinators' Raft timeouts: the coordinator's defaults\n")
		}
	}
	var periods []string
	if slices.ContainsFunc(o.systems, func(s string) bool { return s != systemSentinel }) {
		how := "passed to the coordinators as --ping-period (found in their --help)"
		if !o.pingPeriodFlag {
			how = "not passed: --ping-period not found in the coordinator's --help, so this is the target, not its own period"
		}
		periods = append(periods, fmt.Sprintf("raftinel %v, %s", o.pingPeriodOf(systemRaftinel), how))
	}
	if slices.Contains(o.systems, systemSentinel) {
		periods = append(periods, fmt.Sprintf("sentinel %v (min(down-after, 1s))", o.pingPeriodOf(systemSentinel)))
	}
	fmt.Fprintf(&b, "ping period for the detection window: %s\n", strings.Join(periods, "; "))
	var timeouts []string
	for _, f := range o.faults {
		timeouts = append(timeouts, fmt.Sprintf("%s %v", f, o.runTimeoutFor(f)))
	}
	fmt.Fprintf(&b, "run timeout: %s\n", strings.Join(timeouts, ", "))
	return b.String(), nil
}

// runsOf is the number of runs of each system for fault.
func (o *options) runsOf(fault string) int {
	if fault == faultRestart {
		return o.restartRuns
	}
	return o.runs
}

// pingPeriodOf is the PING period the detection window allows sys:
// Sentinel's min(down-after, 1s); for Raftinel -ping-period, or
// down-after/10 within [50ms, 1s].
func (o *options) pingPeriodOf(sys string) time.Duration {
	if sys == systemSentinel {
		return min(o.downAfter, time.Second)
	}
	if o.pingPeriod > 0 {
		return o.pingPeriod
	}
	return min(max(o.downAfter/10, 50*time.Millisecond), time.Second)
}

// detectionWindow is where the first +sdown should fall, counted from the
// fault: [down-after, down-after + the PING period + 100 ms of scheduling].
func (o *options) detectionWindow(sys string) (lo, hi time.Duration) {
	return o.downAfter, o.downAfter + o.pingPeriodOf(sys) + 100*time.Millisecond
}

// hasFlag reports whether bin's --help output lists -name (or --name).
func hasFlag(ctx context.Context, bin, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--help")
	cmd.Env = benchproc.ChildEnv()
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return false, fmt.Errorf("%s --help: %w", bin, err)
	}
	re := regexp.MustCompile(`(?m)^\s*--?` + regexp.QuoteMeta(name) + `(\s|$)`)
	return re.Match(out), nil
}

// runTimeoutFor is one run's limit: -run-timeout, or when it is 0, 90 s,
// plus for the leader-crash faults 6 x failover-timeout. A sentinel that
// voted for the crashed leader waits 2 x failover-timeout (plus up to 1 s)
// before it tries again; a split vote between the two survivors costs
// another min(10 s, failover-timeout) and 2 x failover-timeout.
func (o *options) runTimeoutFor(fault string) time.Duration {
	if o.runTimeout > 0 {
		return o.runTimeout
	}
	d := 90 * time.Second
	if isLeaderCrash(fault) {
		d += 6 * o.failoverTimeout
	}
	return d
}
