package main

import (
	"fmt"
	"strings"
	"time"
)

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func maxOf(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func (r result) entries() string {
	if r.entriesPS < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", r.entriesPS)
}

// detail is the system's full report.
func (r result) detail() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %d groups (%d instances):\n", r.system, r.groups, 3*r.groups)
	for i := range r.cpuPct {
		fmt.Fprintf(&b, "  process %d: cpu %.2f%% of one core, rss %.0f MB, %d connections to Redis\n", i+1, r.cpuPct[i], r.rssMB[i], r.redisConn[i])
	}
	fmt.Fprintf(&b, "  raft log entries per second: %s\n", r.entries())
	fmt.Fprintf(&b, "  SENTINEL MASTERS: p50 %s, max %s (20 calls)\n", ms(percentile(r.mastersLatency, 0.5)), ms(maxOf(r.mastersLatency)))
	one := "SENTINEL MASTER"
	if r.entriesPS >= 0 {
		one = "GetMaster"
	}
	if r.oneLatency != nil {
		fmt.Fprintf(&b, "  %s: p50 %s, p99 %s (%d calls)\n", one, ms(percentile(r.oneLatency, 0.5)), ms(percentile(r.oneLatency, 0.99)), len(r.oneLatency))
	}
	if r.snapshotRestore != nil {
		fmt.Fprintf(&b, "  FSM snapshot: %.1f KB, taken in %s (SnapshotSave); restored into a new FSM in p50 %s, max %s (%d times)\n",
			float64(r.snapshotBytes)/1024, ms(r.snapshotTake), ms(percentile(r.snapshotRestore, 0.5)), ms(maxOf(r.snapshotRestore)), len(r.snapshotRestore))
	}
	if r.killed > 0 {
		fmt.Fprintf(&b, "  mass kill of %d masters: +switch-master p50 %s, max %s, unfinished %d; writers on %d groups: %d of %d acknowledged writes lost\n",
			r.killed, ms(percentile(r.switched, 0.5)), ms(maxOf(r.switched)), r.unfinished, r.writers, r.lost, r.acked)
		fmt.Fprintf(&b, "  mass kill, each step's time from the kill over the killed groups (p50 / max, groups that reached it):\n")
		for _, s := range r.steps {
			fmt.Fprintf(&b, "    %-42s %10s / %10s  (%d)\n", s.step, ms(s.p50), ms(s.max), s.groups)
		}
	}
	return b.String()
}

// line is the one-line summary the issue asks for.
func (r result) line() string {
	return fmt.Sprintf("scale: system=%s groups=%d instances=%d cpu_pct_per_node=%.1f rss_mb=%.0f raft_entries_per_s=%s mass_kill=%d all_switched_ms=%d unfinished=%d",
		r.system, r.groups, 3*r.groups, mean(r.cpuPct), mean(r.rssMB), r.entries(), r.killed, maxOf(r.switched).Milliseconds(), r.unfinished)
}

// compare prints each Raftinel run's CPU and memory against Sentinel's.
func compare(rs []result) string {
	var sentinel *result
	for i := range rs {
		if rs[i].system == systemSentinel {
			sentinel = &rs[i]
		}
	}
	if sentinel == nil {
		return ""
	}
	var b strings.Builder
	for _, r := range rs {
		if r.system == systemSentinel {
			continue
		}
		fmt.Fprintf(&b, "%s / sentinel: cpu %.2fx, rss %.2fx, all switched %s\n", r.system,
			mean(r.cpuPct)/mean(sentinel.cpuPct), mean(r.rssMB)/mean(sentinel.rssMB), ratio(maxOf(r.switched), maxOf(sentinel.switched)))
	}
	return b.String()
}

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}
