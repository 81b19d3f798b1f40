//go:build unix

package probe

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
)

// BenchmarkWatcherCost measures what watching costs one node at the
// automatic PING period: it watches real redis-server instances, each
// iteration for one second, and reports per monitored instance the PINGs
// per second the instances counted (INFO commandstats), this process's CPU
// time (getrusage: user + system, the whole test process, so an upper
// bound) and the CPU time the redis-server spent (INFO cpu) while watched
// and, for comparison, idle (for 3 s before watching starts: redis-server's
// own timers cost a few milliseconds per second), all in milliseconds per
// second. ns/op is the one-second window and means
// nothing. The INFO poll runs at its production period (10 s), so a window
// may or may not contain one; run several iterations (-benchtime 10x).
//
//	go test -run '^$' -bench WatcherCost -benchtime 10x ./probe/
func BenchmarkWatcherCost(b *testing.B) {
	const instances = 8
	for _, downAfter := range []time.Duration{500 * time.Millisecond, time.Second, 30 * time.Second} {
		period, _ := PingTiming(Target{DownAfter: downAfter}, 0)
		b.Run(fmt.Sprintf("down-after=%v/period=%v", downAfter, period), func(b *testing.B) {
			servers := make([]*redistest.Server, instances)
			targets := make([]Target, instances)
			for i := range servers {
				servers[i] = redistest.Start(b)
				targets[i] = Target{Addr: servers[i].Addr(), DownAfter: downAfter}
			}
			ctx := context.Background()
			_, idle0 := serverCounters(b, ctx, servers)
			idleStart := time.Now()
			time.Sleep(3 * time.Second)
			_, idle1 := serverCounters(b, ctx, servers)
			idlePerSec := (idle1 - idle0) / time.Since(idleStart).Seconds()

			w, err := NewWatcher(WatcherConfig{ClientName: testClientName, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			if err := w.SetTargets(targets); err != nil {
				b.Fatal(err)
			}
			// Let every loop connect and read its first INFO.
			time.Sleep(2 * period)

			pings0, redisCPU0 := serverCounters(b, ctx, servers)
			cpu0 := processCPU(b)
			start := time.Now()
			b.ResetTimer()
			for range b.N {
				time.Sleep(time.Second)
			}
			b.StopTimer()
			elapsed := time.Since(start).Seconds()
			cpu := (processCPU(b) - cpu0).Seconds()
			pings, redisCPU := serverCounters(b, ctx, servers)
			per := float64(instances) * elapsed
			b.ReportMetric(float64(pings-pings0)/per, "pings/s/instance")
			b.ReportMetric(1000*cpu/per, "probe-cpu-ms/s/instance")
			b.ReportMetric(1000*(redisCPU-redisCPU0)/per, "redis-cpu-ms/s/instance")
			b.ReportMetric(1000*idlePerSec/instances, "redis-idle-cpu-ms/s/instance")
		})
	}
}

// serverCounters sums, over the servers, the PINGs they served and the CPU
// seconds they used.
func serverCounters(b *testing.B, ctx context.Context, servers []*redistest.Server) (pings int, cpu float64) {
	b.Helper()
	for _, s := range servers {
		stats, err := s.Info(ctx, "commandstats", "cpu")
		if err != nil {
			b.Fatal(err)
		}
		stat := stats["cmdstat_ping"] // calls=N,usec=...
		if stat != "" {
			calls, _, _ := strings.Cut(strings.TrimPrefix(stat, "calls="), ",")
			n, err := strconv.Atoi(calls)
			if err != nil {
				b.Fatalf("cmdstat_ping %q: %v", stat, err)
			}
			pings += n
		}
		for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
			v, err := strconv.ParseFloat(stats[k], 64)
			if err != nil {
				b.Fatalf("%s %q: %v", k, stats[k], err)
			}
			cpu += v
		}
	}
	return pings, cpu
}

func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
