package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

type key struct{ system, fault string }

// summary is the median and the worst of each measure over a set of runs.
type summary struct {
	runs int
	// First +sdown, over the runs that heard one (sdownRuns of them).
	sdownRuns                     int
	sdownMin, sdownMed, sdownMax  time.Duration
	commitMed, commitMax          time.Duration
	announceMed, announceMax      time.Duration
	outageMed, outageMax          time.Duration
	lostMed, lostMax, ackedMedian int

	endMed, endMax         time.Duration // -> +failover-end
	restMed, restMax       time.Duration // +switch-master -> +failover-end
	exitedMed              time.Duration // leader crash: master's SIGKILL -> leader's exit
	electedMed, electedMax time.Duration // Raftinel leader crash: exit -> new Raft leader
	endTimedOut            int           // runs whose failover ended for timeout
}

func summarize(rs []result) summary {
	pick := func(f func(result) int64) (int64, int64) {
		v := make([]int64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return median(v), v[len(v)-1]
	}
	s := summary{runs: len(rs)}
	cm, cx := pick(func(r result) int64 { return int64(r.commit) })
	s.commitMed, s.commitMax = time.Duration(cm), time.Duration(cx)
	am, ax := pick(func(r result) int64 { return int64(r.announce) })
	om, ox := pick(func(r result) int64 { return int64(r.outage) })
	lm, lx := pick(func(r result) int64 { return int64(r.lost) })
	ak, _ := pick(func(r result) int64 { return int64(r.acked) })
	s.announceMed, s.announceMax = time.Duration(am), time.Duration(ax)
	s.outageMed, s.outageMax = time.Duration(om), time.Duration(ox)
	s.lostMed, s.lostMax, s.ackedMedian = int(lm), int(lx), int(ak)
	dur := func(f func(result) time.Duration) (time.Duration, time.Duration) {
		m, x := pick(func(r result) int64 { return int64(f(r)) })
		return time.Duration(m), time.Duration(x)
	}
	s.endMed, s.endMax = dur(func(r result) time.Duration { return r.end })
	s.restMed, s.restMax = dur(func(r result) time.Duration { return r.end - r.announce })
	s.exitedMed, _ = dur(func(r result) time.Duration { return r.exited })
	s.electedMed, s.electedMax = dur(func(r result) time.Duration { return r.elected })
	for _, r := range rs {
		if r.endTimedOut {
			s.endTimedOut++
		}
	}
	var sdowns []int64
	for _, r := range rs {
		if r.sdownHeard {
			sdowns = append(sdowns, int64(r.sdown))
		}
	}
	if len(sdowns) > 0 {
		slices.Sort(sdowns)
		s.sdownRuns = len(sdowns)
		s.sdownMin, s.sdownMed, s.sdownMax = time.Duration(sdowns[0]), time.Duration(median(sdowns)), time.Duration(sdowns[len(sdowns)-1])
	}
	return s
}

// sdownMs renders a first +sdown figure, "-" when no run heard one.
func (s summary) sdownMs(d time.Duration) string {
	if s.sdownRuns == 0 {
		return "-"
	}
	return ms(d)
}

// sdownRatio is a ratio of first +sdown figures, "n/a" when either side
// heard none.
func sdownRatio(a, b summary, pick func(summary) time.Duration) string {
	if a.sdownRuns == 0 || b.sdownRuns == 0 {
		return "n/a"
	}
	return ratio(pick(a), pick(b))
}

// median of sorted values; the mean of the middle two for an even count.
func median(sorted []int64) int64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// report renders a Markdown table: one row per system and fault, then the
// ratio of each Raftinel row to Sentinel's row for the same fault.
func report(o *options, results map[key][]result) string {
	var b strings.Builder
	if slices.ContainsFunc(o.faults, inMainTable) {
		b.WriteString("\n| system | fault | runs | first +sdown median | first +sdown max | promoted commit median | promoted commit max | announce median | announce max | write outage median | write outage max | lost writes median | lost writes max |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	}
	sums := map[key]summary{}
	for _, fault := range o.faults {
		if !inMainTable(fault) {
			continue // in leaderCrashReport or restartReport
		}
		for _, sys := range o.systems {
			k := key{sys, fault}
			if len(results[k]) == 0 {
				continue
			}
			s := summarize(results[k])
			sums[k] = s
			commitMed, commitMax := "-", "-"
			if sys != systemSentinel {
				commitMed, commitMax = ms(s.commitMed), ms(s.commitMax)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d |\n", sys, faultName(fault), s.runs,
				s.sdownMs(s.sdownMed), s.sdownMs(s.sdownMax),
				commitMed, commitMax, ms(s.announceMed), ms(s.announceMax), ms(s.outageMed), ms(s.outageMax), s.lostMed, s.lostMax)
		}
	}
	var ratios []string
	for _, fault := range o.faults {
		base, ok := sums[key{systemSentinel, fault}]
		if !ok {
			continue
		}
		for _, sys := range o.systems {
			s, ok := sums[key{sys, fault}]
			if !ok || sys == systemSentinel {
				continue
			}
			ratios = append(ratios, fmt.Sprintf("| %s / sentinel | %s | %s | %s | %s | %s | %s | %s |", sys, faultName(fault),
				sdownRatio(s, base, func(s summary) time.Duration { return s.sdownMed }),
				sdownRatio(s, base, func(s summary) time.Duration { return s.sdownMax }),
				ratio(s.announceMed, base.announceMed), ratio(s.announceMax, base.announceMax),
				ratio(s.outageMed, base.outageMed), ratio(s.outageMax, base.outageMax)))
		}
	}
	if len(ratios) > 0 {
		b.WriteString("\n| ratio | fault | first +sdown median | first +sdown max | announce median | announce max | write outage median | write outage max |\n|---|---|---|---|---|---|---|---|\n")
		b.WriteString(strings.Join(ratios, "\n") + "\n")
	}
	b.WriteString(detectionReport(o, results))
	if slices.ContainsFunc(o.faults, isLeaderCrash) {
		b.WriteString(leaderCrashReport(o, results))
	}
	if slices.Contains(o.faults, faultRestart) {
		b.WriteString(restartReport(o, results))
	}
	if slices.Contains(o.faults, faultSwitchover) {
		b.WriteString(switchoverReport(o, results))
	}
	return b.String()
}

// inMainTable: the faults that end in a failover and are timed from the
// fault on any endpoint.
func inMainTable(fault string) bool {
	return !isLeaderCrash(fault) && fault != faultRestart && fault != faultSwitchover
}

// restartReport renders the restart fault: one row per system, then the
// false failovers of each.
func restartReport(o *options, results map[key][]result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nRestart: the master gets SIGKILL and the same redis-server, with its data (appendonly yes), is started again on its port %v later; "+
		"the writer goes on and the endpoints are watched for down-after + %v after the restart. "+
		"\"back\": from the SIGKILL to the restarted master's first PONG. A run with a +odown or a +switch-master of the master is a false failover: the master was unreachable for less than down-after (%v).\n",
		restartDelay, restartWatch, o.downAfter)
	b.WriteString("\n| system | runs | back median | back max | +sdown heard | +odown heard | +switch-master heard | false failovers | write outage median | write outage max | lost writes max |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	var lines []string
	for _, sys := range o.systems {
		rs := results[key{sys, faultRestart}]
		if len(rs) == 0 {
			continue
		}
		var backs, outages []int64
		var sdown, odown, switched, falseFailovers, lostMax int
		for _, r := range rs {
			backs = append(backs, int64(r.back))
			if r.acknowledged {
				outages = append(outages, int64(r.outage))
			}
			if r.sdownHeard {
				sdown++
			}
			if r.odownHeard {
				odown++
			}
			if r.switchHeard {
				switched++
			}
			if r.odownHeard || r.switchHeard {
				falseFailovers++
			}
			lostMax = max(lostMax, r.lost)
		}
		slices.Sort(backs)
		slices.Sort(outages)
		outMed, outMax := "-", "-"
		if len(outages) > 0 {
			outMed, outMax = ms(time.Duration(median(outages))), ms(time.Duration(outages[len(outages)-1]))
			if n := len(rs) - len(outages); n > 0 {
				outMax += fmt.Sprintf(" (%d runs without an acknowledged write)", n)
			}
		}
		n := len(rs)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d of %d | %d of %d | %d of %d | %d of %d | %s | %s | %d |\n", sys, n,
			ms(time.Duration(median(backs))), ms(time.Duration(backs[len(backs)-1])),
			sdown, n, odown, n, switched, n, falseFailovers, n, outMed, outMax, lostMax)
		lines = append(lines, fmt.Sprintf("- %s: false failovers: %d of %d runs (+odown in %d, +switch-master in %d)%s", sys, falseFailovers, n, odown, switched, tilts(rs)))
	}
	b.WriteString("\n" + strings.Join(lines, "\n") + "\n")
	return b.String()
}

// leaderCrashReport renders the leader-crash faults, with the kill fault
// as the uninterrupted reference: one row per system and fault, the
// Raftinel / Sentinel ratios, and each crash's rest of the failover
// (+switch-master -> +failover-end) against the kill fault's.
func leaderCrashReport(o *options, results map[key][]result) string {
	var b strings.Builder
	b.WriteString("\nLeader crash: the master gets SIGKILL, then the failover's leader exits (status 99) at its crash point. ")
	b.WriteString("Times count from that exit, and only the surviving nodes' events count; the kill rows count from the master's SIGKILL, on any node. ")
	b.WriteString("\"for timeout\": runs whose failover ended with +failover-end-for-timeout (failover-timeout passed before every replica was re-pointed).")
	if slices.Contains(o.systems, systemWatch) {
		fmt.Fprintf(&b, " %s is not run for these faults (its writer does not use the Sentinel endpoints' events).", systemWatch)
	}
	b.WriteString("\n\n| system | fault | runs | from | leader exit after SIGKILL median | new Raft leader median | new Raft leader max | +switch-master median | +switch-master max | +failover-end median | +failover-end max | for timeout | +switch-master -> +failover-end median | +switch-master -> +failover-end max | lost writes max |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	sums := map[key]summary{}
	var faults []string
	for _, fault := range o.faults {
		if fault == faultKill || isLeaderCrash(fault) {
			faults = append(faults, fault)
		}
	}
	for _, fault := range faults {
		for _, sys := range o.systems {
			k := key{sys, fault}
			if len(results[k]) == 0 {
				continue
			}
			s := summarize(results[k])
			sums[k] = s
			from, exited, electedMed, electedMax := "master SIGKILL", "-", "-", "-"
			if isLeaderCrash(fault) {
				from, exited = "leader exit", ms(s.exitedMed)
				if sys != systemSentinel {
					electedMed, electedMax = ms(s.electedMed), ms(s.electedMax)
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %d |\n", sys, faultName(fault), s.runs, from,
				exited, electedMed, electedMax, ms(s.announceMed), ms(s.announceMax), ms(s.endMed), ms(s.endMax), s.endTimedOut,
				ms(s.restMed), ms(s.restMax), s.lostMax)
		}
	}
	var ratios, rests []string
	for _, fault := range faults {
		base, ok := sums[key{systemSentinel, fault}]
		for _, sys := range o.systems {
			s, mine := sums[key{sys, fault}]
			if !mine || sys == systemSentinel || !ok {
				continue
			}
			ratios = append(ratios, fmt.Sprintf("| %s / sentinel | %s | %s | %s | %s | %s |", sys, faultName(fault),
				ratio(s.announceMed, base.announceMed), ratio(s.announceMax, base.announceMax),
				ratio(s.endMed, base.endMed), ratio(s.endMax, base.endMax)))
		}
		if !isLeaderCrash(fault) {
			continue
		}
		for _, sys := range o.systems {
			s, mine := sums[key{sys, fault}]
			ref, hasRef := sums[key{sys, faultKill}]
			if !mine || !hasRef {
				continue
			}
			rests = append(rests, fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |", sys, faultName(fault),
				ms(s.restMed), ms(ref.restMed), ratio(s.restMed, ref.restMed), ms(s.restMax), ms(ref.restMax)))
		}
	}
	if len(ratios) > 0 {
		b.WriteString("\n| ratio | fault | +switch-master median | +switch-master max | +failover-end median | +failover-end max |\n|---|---|---|---|---|---|\n")
		b.WriteString(strings.Join(ratios, "\n") + "\n")
	}
	if len(rests) > 0 {
		b.WriteString("\nThe rest of the failover after a leader crash against an uninterrupted one (the kill rows): +switch-master -> +failover-end.\n")
		b.WriteString("\n| system | fault | rest median | uninterrupted median | ratio | rest max | uninterrupted max |\n|---|---|---|---|---|---|---|\n")
		b.WriteString(strings.Join(rests, "\n") + "\n")
	} else {
		fmt.Fprintf(&b, "\n(add %s to -faults for the uninterrupted reference of the rest of the failover)\n", faultKill)
	}
	return b.String()
}

// detectionReport is one line per fault and system: whether each run's
// first +sdown of the master fell within the detection window.
func detectionReport(o *options, results map[key][]result) string {
	var lines []string
	for _, fault := range o.faults {
		if fault == faultRestart || fault == faultSwitchover {
			continue // no +sdown is due: the master is back before down-after, or never down
		}
		for _, sys := range o.systems {
			rs := results[key{sys, fault}]
			if len(rs) == 0 {
				continue
			}
			lo, hi := o.detectionWindow(sys)
			held := 0
			for _, r := range rs {
				if r.sdownHeard && r.sdown >= lo && r.sdown <= hi {
					held++
				}
			}
			s := summarize(rs)
			seen := "none heard"
			if s.sdownRuns > 0 {
				seen = fmt.Sprintf("%s to %s", ms(s.sdownMin), ms(s.sdownMax))
				if s.sdownRuns < len(rs) {
					seen += fmt.Sprintf(", none heard in %d", len(rs)-s.sdownRuns)
				}
			}
			lines = append(lines, fmt.Sprintf("- %s, %s: window [%s, %s]: window held in %d of %d runs (first +sdown %s)%s",
				faultName(fault), sys, ms(lo), ms(hi), held, len(rs), seen, tilts(rs)))
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return "\nDetection: the first +sdown of the master on any endpoint, from the fault (the leader-crash faults: from the master's SIGKILL), " +
		"against [down-after, down-after + PING period + 100 ms].\n\n" + strings.Join(lines, "\n") + "\n"
}

// tilts notes the runs in which a decider entered TILT mode, if any.
func tilts(rs []result) string {
	n := 0
	for _, r := range rs {
		if r.tilt {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; +tilt heard in %d of %d runs (its timer ran over 2 s late or its clock jumped: the machine, more than the system)", n, len(rs))
}

func faultName(f string) string {
	switch f {
	case faultStop:
		return "SIGSTOP master"
	case faultDebugSleep:
		return "DEBUG SLEEP master"
	case faultRestart:
		return "SIGKILL master, restart 300 ms later"
	case faultLeaderElection:
		return "leader crash after election"
	case faultLeaderPromotion:
		return "leader crash after promotion"
	case faultSwitchover:
		return "planned switchover"
	}
	return "SIGKILL master"
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}
