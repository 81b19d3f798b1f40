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
	runs                          int
	commitMed, commitMax          time.Duration
	announceMed, announceMax      time.Duration
	outageMed, outageMax          time.Duration
	lostMed, lostMax, ackedMedian int
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
	return s
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
	b.WriteString("\n| system | fault | runs | promoted commit median | promoted commit max | announce median | announce max | write outage median | write outage max | lost writes median | lost writes max |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	sums := map[key]summary{}
	for _, fault := range o.faults {
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
			fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %d | %d |\n", sys, faultName(fault), s.runs,
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
			ratios = append(ratios, fmt.Sprintf("| %s / sentinel | %s | %s | %s | %s | %s |", sys, faultName(fault),
				ratio(s.announceMed, base.announceMed), ratio(s.announceMax, base.announceMax),
				ratio(s.outageMed, base.outageMed), ratio(s.outageMax, base.outageMax)))
		}
	}
	if len(ratios) > 0 {
		b.WriteString("\n| ratio | fault | announce median | announce max | write outage median | write outage max |\n|---|---|---|---|---|---|\n")
		b.WriteString(strings.Join(ratios, "\n") + "\n")
	}
	return b.String()
}

func faultName(f string) string {
	if f == "stop" {
		return "SIGSTOP master"
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
