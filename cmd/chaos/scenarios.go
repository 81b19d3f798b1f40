package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"
)

// scenario injects one fault and returns when everything it did is undone
// (cuts healed, processes resumed). It returns the time of the fault.
type scenario struct {
	name string
	what string
	// clientTimeout is the clients' per-write timeout.
	clientTimeout time.Duration
	fault         func(ctx context.Context, w *world, o *observer) (time.Time, error)
}

func others(except ...string) []string {
	var out []string
	for _, h := range append(append(append([]string{}, redisHosts...), coordHosts...), "cl") {
		if !slices.Contains(except, h) {
			out = append(out, h)
		}
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// partition cuts side from everyone else for d, then heals.
func partition(side []string, d time.Duration) func(ctx context.Context, w *world, o *observer) (time.Time, error) {
	return func(ctx context.Context, w *world, o *observer) (time.Time, error) {
		err := w.lab.cut(ctx, side, others(side...), false)
		at := time.Now() // the cut is complete
		if err != nil {
			_ = w.lab.healAll(context.Background())
			return at, err
		}
		err = sleepCtx(ctx, d)
		if herr := w.lab.healAll(context.Background()); err == nil {
			err = herr
		}
		return at, err
	}
}

// waitTry waits (at most d) until some node published +try-failover.
func waitTry(ctx context.Context, o *observer, d time.Duration) (string, error) {
	var host string
	err := poll(ctx, d, "+try-failover", func() error {
		if host, _ = o.firstTry(); host == "" {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	return host, err
}

// leaderOf is the node running the failover: Raft's leader for Raftinel,
// the sentinel that published +try-failover first for Sentinel.
func leaderOf(ctx context.Context, w *world, tried string) string {
	if w.system == "raftinel" {
		if l := w.leader(ctx); l != "" {
			return l
		}
	}
	return tried
}

// midFailover cuts the old master off, waits for the failover to begin
// (+try-failover), applies hit to the node running it, and heals all 20
// s after the first cut: scenarios (d) and (g), which differ only in what
// hit does (a cut, a freeze). hit need not undo a cut (the heal removes
// every cut), but must end a freeze before it returns.
func midFailover(hit func(ctx context.Context, w *world, node string) error) func(ctx context.Context, w *world, o *observer) (time.Time, error) {
	return func(ctx context.Context, w *world, o *observer) (time.Time, error) {
		err := w.lab.cut(ctx, []string{"r1"}, others("r1"), false)
		at := time.Now()
		if err != nil {
			_ = w.lab.healAll(context.Background())
			return at, err
		}
		tried, err := waitTry(ctx, o, 10*time.Second)
		if err == nil {
			if l := leaderOf(ctx, w, tried); l != "" {
				err = hit(ctx, w, l)
			}
		}
		if serr := sleepCtx(ctx, time.Until(at.Add(20*time.Second))); err == nil {
			err = serr
		}
		if herr := w.lab.healAll(context.Background()); err == nil {
			err = herr
		}
		return at, err
	}
}

var scenarios = []scenario{
	{name: "a", what: "the old master and its clients cut off from everything else for 10 s", clientTimeout: 500 * time.Millisecond,
		fault: partition([]string{"r1", "cl"}, 10*time.Second)},
	{name: "a30", what: "as (a), for 30 s", clientTimeout: 500 * time.Millisecond,
		fault: partition([]string{"r1", "cl"}, 30*time.Second)},
	{name: "b", what: "the old master alone cut off for 10 s", clientTimeout: 500 * time.Millisecond,
		fault: partition([]string{"r1"}, 10*time.Second)},
	{name: "c", what: "one coordinator node cut off for 10 s", clientTimeout: 500 * time.Millisecond,
		fault: partition([]string{"c3"}, 10*time.Second)},
	{name: "d", what: "the old master cut off, then the node running the failover cut off as it begins; healed 20 s after the first cut", clientTimeout: 500 * time.Millisecond,
		fault: midFailover(func(ctx context.Context, w *world, node string) error {
			return w.lab.cut(ctx, []string{node}, others(node, "r1"), false)
		})},
	{name: "e", what: "asymmetric: the replicas cannot reach the master, the coordinators reach everything, 10 s", clientTimeout: 500 * time.Millisecond,
		fault: func(ctx context.Context, w *world, o *observer) (time.Time, error) {
			err := w.lab.cut(ctx, []string{"r1"}, []string{"r2", "r3"}, false)
			at := time.Now()
			if serr := sleepCtx(ctx, 10*time.Second); err == nil {
				err = serr
			}
			if herr := w.lab.healAll(context.Background()); err == nil {
				err = herr
			}
			return at, err
		}},
	{name: "f", what: "the old master and its clients cut off and healed every 500 ms for 30 s", clientTimeout: 500 * time.Millisecond,
		fault: func(ctx context.Context, w *world, o *observer) (time.Time, error) {
			at := time.Now()
			side := []string{"r1", "cl"}
			for i := 0; i < 60 && ctx.Err() == nil; i++ {
				var err error
				if i%2 == 0 {
					err = w.lab.cut(ctx, side, others(side...), false)
				} else {
					err = w.lab.healAll(ctx)
				}
				if err != nil {
					_ = w.lab.healAll(context.Background())
					return at, err
				}
				_ = sleepCtx(ctx, time.Until(at.Add(time.Duration(i+1)*500*time.Millisecond)))
			}
			return at, w.lab.healAll(context.Background())
		}},
	{name: "g", what: "the old master cut off, then the node running the failover SIGSTOPped for 10 s as it begins", clientTimeout: 500 * time.Millisecond,
		fault: midFailover(func(ctx context.Context, w *world, node string) error {
			w.procs[node].signal(syscall.SIGSTOP)
			defer w.procs[node].signal(syscall.SIGCONT)
			return sleepCtx(ctx, 10*time.Second)
		})},
	{name: "k", what: "a replica killed (SIGKILL) and restarted 5 s later", clientTimeout: 500 * time.Millisecond,
		fault: func(ctx context.Context, w *world, o *observer) (time.Time, error) {
			at := time.Now()
			w.procs["r3"].stop()
			err := sleepCtx(ctx, 5*time.Second)
			if rerr := w.restartRedis("r3"); err == nil {
				err = rerr
			}
			return at, err
		}},
	{name: "i", what: "the master frozen (SIGSTOP) for 4 s, less than the clients' 6 s timeout, then resumed", clientTimeout: 6 * time.Second,
		fault: func(ctx context.Context, w *world, o *observer) (time.Time, error) {
			at := time.Now()
			w.procs["r1"].signal(syscall.SIGSTOP)
			err := sleepCtx(ctx, 4*time.Second)
			w.procs["r1"].signal(syscall.SIGCONT)
			return at, err
		}},
}
