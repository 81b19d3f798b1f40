package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// faultSwitchover is not a fault: a planned switchover of a healthy master,
// Raftinel's coordinated failover (what coordinatorctl failover sends)
// against redis-sentinel's SENTINEL FAILOVER.
const faultSwitchover = "switchover"

// switchoverCatchUp is the catch-up time Raftinel's switchover is given:
// coordinatorctl failover's default.
const switchoverCatchUp = 5 * time.Second

// runSwitchover is the rest of a switchover run, once the writer is going:
// it asks for the switchover at requestAt, waits for +switch-master and
// +failover-end, lets the writer go on for -keep-writing, and measures the
// longest gap between two acknowledged writes from the request on, and
// the acknowledged writes missing on the new master.
func runSwitchover(ctx context.Context, o *options, sys string, topo *topology, ev *events, w *writer, stopWriting func()) (result, error) {
	requestAt := time.Now()
	var r result
	switch sys {
	case systemSentinel:
		c := redis.NewClient(&redis.Options{Addr: topo.sentinelAddrs[0], MaxRetries: -1})
		err := c.Do(ctx, "SENTINEL", "FAILOVER", masterName).Err()
		_ = c.Close()
		if err != nil {
			return result{}, fmt.Errorf("SENTINEL FAILOVER: %w", err)
		}
	default:
		// What coordinatorctl failover NAME sends, to any node (a follower
		// forwards it); it returns with the outcome.
		conn, err := grpc.NewClient(topo.grpcAddrs[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return result{}, err
		}
		resp, err := coordinatorv1.NewCoordinatorServiceClient(conn).Failover(ctx, &coordinatorv1.FailoverRequest{
			Name: masterName, Timeout: durationpb.New(switchoverCatchUp)})
		_ = conn.Close()
		if err != nil {
			return result{}, fmt.Errorf("coordinated failover: %w", err)
		}
		out := resp.GetOutcome()
		if out.GetResult() != "promoted" {
			return result{}, fmt.Errorf("coordinated failover ended %q (%s): %s", out.GetResult(), out.GetEvent(), out.GetDetail())
		}
		r.handover = out.GetHandover()
		if r.handover == "" {
			r.handover = "unknown"
		}
	}
	all := func(int) bool { return true }
	alive := func() error {
		for _, p := range topo.deciders {
			if p.Exited() {
				return fmt.Errorf("%s exited with status %d: %s", p.Name, p.ExitCode, p.Tail())
			}
		}
		return nil
	}
	if err := ev.wait(ctx, chanSwitch, all, alive); err != nil {
		return result{}, fmt.Errorf("no +switch-master after %v: %w", time.Since(requestAt).Round(time.Millisecond), err)
	}
	if err := ev.wait(ctx, chanEnd, all, alive); err != nil {
		return result{}, fmt.Errorf("no +failover-end after %v: %w", time.Since(requestAt).Round(time.Millisecond), err)
	}
	sw, lost, acked, err := countLost(ctx, o, ev, w, stopWriting, all)
	if err != nil {
		return result{}, err
	}
	r.switchover = true
	r.announce, r.lost, r.acked = sw.at.Sub(requestAt), lost, acked
	if e, ok := ev.first(chanEnd, all); ok {
		r.end, r.ended = e.at.Sub(requestAt), true
	}
	r.gap, r.gapAt = w.longestGap(requestAt)
	r.switchGap = w.gapAcross(sw.at)
	return r, nil
}

// gapAcross is the time between the last acknowledgement before at and the
// first one after it: the pause the switch itself cost the writer, where
// the longest gap may also be a stall of the machine elsewhere in the run.
func (w *writer) gapAcross(at time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 1; i < len(w.acks); i++ {
		if w.acks[i].received.After(at) {
			if w.acks[i-1].received.After(at) {
				return 0
			}
			return w.acks[i].received.Sub(w.acks[i-1].received)
		}
	}
	return 0
}

// longestGap is the longest time between two consecutive acknowledgements
// of which the second came after from, and when (from from) that gap
// began. A writer stopped for the whole switchover shows it here.
func (w *writer) longestGap(from time.Time) (gap, at time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 1; i < len(w.acks); i++ {
		prev, cur := w.acks[i-1].received, w.acks[i].received
		if cur.Before(from) {
			continue
		}
		if d := cur.Sub(prev); d > gap {
			gap, at = d, prev.Sub(from)
		}
	}
	return gap, at
}

// switchoverReport renders the switchover rows: per system the longest
// gap between acknowledged writes (median, max), the lost acknowledged
// writes, the announcement, and for Raftinel how each handover was made.
func switchoverReport(o *options, results map[key][]result) string {
	var b strings.Builder
	b.WriteString("\nSwitchover: a planned failover of the healthy master while the writer appends as fast as it can through the Sentinel endpoints " +
		"(raftinel: a coordinated failover, what coordinatorctl failover sends, catch-up time " + switchoverCatchUp.String() + "; sentinel: SENTINEL FAILOVER). " +
		"\"longest gap\": the longest time between two consecutive acknowledged writes, from the request on; " +
		"\"lost\": acknowledged writes missing on the new master once the writer stopped.\n")
	b.WriteString("\"gap across the switch\": the gap between acknowledged writes that spans the first +switch-master heard, the pause the switch itself cost.\n")
	b.WriteString("\n| system | runs | longest gap median | longest gap max | gap across the switch median | gap across the switch max | announce median | announce max | lost writes median | lost writes max | acknowledged median | handover |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	gaps := map[string][2]time.Duration{}
	for _, sys := range o.systems {
		rs := results[key{sys, faultSwitchover}]
		if len(rs) == 0 {
			continue
		}
		s := summarize(rs)
		var g, sg []int64
		methods := map[string]int{}
		for _, r := range rs {
			g = append(g, int64(r.gap))
			sg = append(sg, int64(r.switchGap))
			if r.handover != "" {
				methods[r.handover]++
			}
		}
		slices.Sort(g)
		slices.Sort(sg)
		gm, gx := time.Duration(median(g)), time.Duration(g[len(g)-1])
		sgm, sgx := time.Duration(median(sg)), time.Duration(sg[len(sg)-1])
		gaps[sys] = [2]time.Duration{gm, gx}
		how := "-"
		if len(methods) > 0 {
			var parts []string
			for _, m := range slices.Sorted(func(yield func(string) bool) {
				for k := range methods {
					if !yield(k) {
						return
					}
				}
			}) {
				parts = append(parts, fmt.Sprintf("%s %d of %d", m, methods[m], len(rs)))
			}
			how = strings.Join(parts, ", ")
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %d | %d | %d | %s |\n", sys, s.runs, ms(gm), ms(gx), ms(sgm), ms(sgx),
			ms(s.announceMed), ms(s.announceMax), s.lostMed, s.lostMax, s.ackedMedian, how)
	}
	base, ok := gaps[systemSentinel]
	if ok {
		var lines []string
		for _, sys := range o.systems {
			g, mine := gaps[sys]
			if !mine || sys == systemSentinel {
				continue
			}
			lines = append(lines, fmt.Sprintf("| %s / sentinel | %s | %s |", sys, ratio(g[0], base[0]), ratio(g[1], base[1])))
		}
		if len(lines) > 0 {
			b.WriteString("\n| ratio | longest gap median | longest gap max |\n|---|---|---|\n")
			b.WriteString(strings.Join(lines, "\n") + "\n")
		}
	}
	return b.String()
}
