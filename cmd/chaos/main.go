// Command chaos runs Jepsen-style partition scenarios against Raftinel and
// redis-sentinel on the same topology, inside Linux network namespaces it
// creates (and removes) itself, and reports acknowledged writes lost,
// double masters, failovers no committed promotion explains, and the
// write outage. It must run as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	names := fs.String("scenario", "all", "comma-separated scenarios ("+scenarioNames()+") or all")
	runs := fs.Int("runs", 1, "runs of each scenario for each system (1 to 100)")
	systems := fs.String("systems", "raftinel,sentinel", "systems to run: raftinel, sentinel or both")
	bin := fs.String("bin", "bin", "directory holding the coordinator and coordinatorctl binaries")
	keep := fs.Bool("keep", false, "keep the run directories (logs) instead of removing them")
	staleGrace := fs.Duration("stale-grace", time.Second, "how long after the last +switch-master every endpoint and the FailoverClient may still name another master before it counts as stale")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *staleGrace < 0 {
		return fmt.Errorf("-stale-grace %v: want 0 or more", *staleGrace)
	}
	if *runs < 1 || *runs > 100 {
		return fmt.Errorf("-runs %d: want 1 to 100", *runs)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root: it creates network namespaces")
	}
	var chosen []scenario
	for _, s := range scenarios {
		if *names == "all" || slices.Contains(strings.Split(*names, ","), s.name) {
			chosen = append(chosen, s)
		}
	}
	if len(chosen) == 0 {
		return fmt.Errorf("-scenario %q: want some of %s, or all", *names, scenarioNames())
	}
	sys := strings.Split(*systems, ",")
	for _, s := range sys {
		if s != "raftinel" && s != "sentinel" {
			return fmt.Errorf("-systems: unknown system %q", s)
		}
	}
	// Found up front: started inside a namespace, a missing program would
	// only show as a run that never settles.
	need := []string{"redis-server", "ip"}
	if slices.Contains(sys, "sentinel") {
		need = append(need, "redis-sentinel")
	}
	for _, b := range need {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found (make redis and make chaos-deps install what is missing): %w", b, err)
		}
	}
	binDir, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if slices.Contains(sys, "raftinel") {
		for _, b := range []string{"coordinator", "coordinatorctl"} {
			if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
				return fmt.Errorf("%s: %w (run make build)", b, err)
			}
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	top, err := os.MkdirTemp("", "raftinel-chaos-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(top)
	} else {
		fmt.Println("chaos: logs in", top)
	}
	l, err := newLab(ctx, os.Getpid(), append(append(append([]string{}, redisHosts...), coordHosts...), "cl", "obs"))
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	defer l.destroy()
	redis.SetLogger(quietLogger{})

	started := time.Now()
	var lines []string
	for _, sc := range chosen {
		for _, system := range sys {
			var rs []result
			for i := range *runs {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				dir := filepath.Join(top, fmt.Sprintf("%s-%s-%d", sc.name, system, i))
				r := runOnce(ctx, l, dir, binDir, system, sc, *staleGrace)
				if r.err != nil {
					fmt.Printf("chaos-run: scenario=%s system=%s run=%d error: %v\n", sc.name, system, i, r.err)
				} else {
					fmt.Printf("chaos-run: scenario=%s system=%s run=%d acked=%d lost=%d lost_window_ms=%d detach_ms=%d lost_window_detach_ms=%d double_master=%v minority_failovers=%d switched_to=%d stale_answers=%d stale_endpoints=%d stale_client_acks=%d outage_ms=%d settled=%v old_master_role=%s final_master_sync_full=%s\n",
						sc.name, system, i, r.acked, r.lost, r.lostWindow.Milliseconds(), detachMs(r.detach), r.lostWindowDetach.Milliseconds(), r.doubleMaster, r.minorityFailovr, r.switches,
						r.staleAnswers, r.staleEndpoints, r.staleClientAcks, r.outage.Milliseconds(), r.settled, r.oldMasterRole, r.fullSyncs)
				}
				rs = append(rs, r)
			}
			lines = append(lines, summary(sc.name, system, rs))
		}
	}
	for _, s := range lines {
		fmt.Println(s)
	}
	fmt.Printf("chaos: %d scenarios x %d systems x %d runs in %v\n", len(chosen), len(sys), *runs, time.Since(started).Round(time.Second))
	return nil
}

// detachMs is the detachment time in milliseconds, -1 when no replica
// turned master.
func detachMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

func scenarioNames() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func summary(name, system string, rs []result) string {
	lost, doubles, minority, errs, stale, staleAcks := 0, 0, 0, 0, 0, 0
	var window, windowDetach time.Duration
	var outages []time.Duration
	for _, r := range rs {
		if r.err != nil {
			errs++
			continue
		}
		lost += r.lost
		window = max(window, r.lostWindow)
		windowDetach = max(windowDetach, r.lostWindowDetach)
		stale += r.staleAnswers
		staleAcks += r.staleClientAcks
		if r.doubleMaster {
			doubles++
		}
		minority += r.minorityFailovr
		outages = append(outages, r.outage)
	}
	slices.Sort(outages)
	p50 := time.Duration(0)
	if len(outages) > 0 {
		p50 = outages[len(outages)/2]
	}
	s := fmt.Sprintf("chaos: scenario=%s system=%s runs=%d lost_acked=%d lost_window_ms=%d lost_window_detach_ms=%d double_masters=%d minority_failovers=%d stale_answers=%d stale_client_acks=%d outage_ms_p50=%d",
		name, system, len(rs)-errs, lost, window.Milliseconds(), windowDetach.Milliseconds(), doubles, minority, stale, staleAcks, p50.Milliseconds())
	if errs > 0 {
		s += fmt.Sprintf(" failed_runs=%d", errs)
	}
	return s
}

// runOnce sets up one system, runs the clients through the scenario,
// waits for the topology to settle and checks. Everything it starts is
// stopped before it returns.
func runOnce(ctx context.Context, l *lab, dir, bin, system string, sc scenario, staleGrace time.Duration) (r result) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return result{err: err}
	}
	// A cut an earlier run failed to remove would break this run's setup.
	if err := l.healAll(ctx); err != nil {
		return result{err: fmt.Errorf("setup: removing an earlier run's cuts: %w", err)}
	}
	w := &world{lab: l, dir: dir, system: system, bin: bin}
	defer func() { _ = l.healAll(context.Background()) }()
	defer w.stop()
	if err := w.start(ctx); err != nil {
		return result{err: fmt.Errorf("setup: %w", err)}
	}
	octx, ostop := context.WithCancel(ctx)
	defer ostop()
	o := &observer{}
	o.run(octx, w)

	cl := l.h("cl")
	failoverClient := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: masterName, SentinelAddrs: w.sentinelAddrs(),
		Dialer: l.dialer(cl), DialTimeout: 500 * time.Millisecond, ReadTimeout: sc.clientTimeout, WriteTimeout: sc.clientTimeout,
		MaxRetries: -1, PoolSize: 2})
	defer failoverClient.Close()
	plain := redis.NewClient(&redis.Options{Addr: w.addr("r1", redisPort), Dialer: l.dialer(cl), DialTimeout: 500 * time.Millisecond,
		ReadTimeout: sc.clientTimeout, WriteTimeout: sc.clientTimeout, MaxRetries: -1, PoolSize: 2})
	defer plain.Close()
	writers := []*writer{{name: "failover", c: failoverClient}, {name: "plain", c: plain}}
	wctx, wstop := context.WithCancel(ctx)
	defer wstop()
	done := make(chan struct{}, len(writers))
	for _, wr := range writers {
		go func() { wr.loop(wctx, sc.clientTimeout); done <- struct{}{} }()
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return result{err: err}
	}
	cut, err := sc.fault(ctx, w, o)
	if err != nil {
		return result{err: fmt.Errorf("fault: %w", err)}
	}
	final, settled := settle(ctx, w)
	_ = sleepCtx(ctx, time.Second)
	until := time.Now()
	wstop()
	for range writers {
		select {
		case <-done:
		case <-time.After(sc.clientTimeout + 2*time.Second):
		}
	}
	if final == "" {
		return result{err: errors.New("no master named after the heal")}
	}
	r = check(ctx, w, o, writers, cut, until, final, staleGrace)
	r.settled = settled
	r.oldMasterRole, r.fullSyncs = "?", "?"
	if v, err := w.obs["r1"].Do(ctx, "ROLE").Slice(); err == nil && len(v) > 0 {
		r.oldMasterRole = fmt.Sprint(v[0])
	}
	fc := w.obsClient(final)
	if info, err := fc.Info(ctx, "stats").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "sync_full:"); ok {
				r.fullSyncs = v
			}
		}
	}
	fc.Close()
	return r
}

// settle waits (at most 45 s) until the nodes name one master, it reports
// role master and the two others replicate it with their link up.
func settle(ctx context.Context, w *world) (string, bool) {
	final := ""
	err := poll(ctx, 45*time.Second, "settled", func() error {
		final = w.namedMaster(ctx)
		if final == "" {
			return errors.New("no master named")
		}
		for _, h := range redisHosts {
			addr := w.addr(h, redisPort)
			v, err := w.obs[h].Do(ctx, "ROLE").Slice()
			if err != nil || len(v) == 0 {
				return fmt.Errorf("%s: ROLE: %v", h, err)
			}
			role := fmt.Sprint(v[0])
			if addr == final {
				if role != "master" {
					return fmt.Errorf("%s named master but %s", h, role)
				}
				continue
			}
			if role != "slave" || len(v) < 4 || fmt.Sprint(v[1])+":"+fmt.Sprint(v[2]) != final || fmt.Sprint(v[3]) != "connected" {
				return fmt.Errorf("%s: %v", h, v)
			}
		}
		return nil
	})
	return final, err == nil
}
