package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// The mass failure's steps, in the order a failover takes them. Both
// systems publish each on their Sentinel endpoints; the breakdown times
// each from the kill, for every killed group, so that the slow step shows
// as a figure. +sdown is per decider (each publishes its own opinion of
// the master on its own endpoint, when it is committed on a Raftinel
// node): the breakdown gives the first, the second (the quorum of 2) and
// the third. Every other step is the first time any endpoint published it.
const (
	stepOdown        = "+odown"
	stepTryFailover  = "+try-failover"
	stepElected      = "+elected-leader"
	stepSelected     = "+selected-slave"
	stepWaitPromote  = "+failover-state-wait-promotion"
	stepFenceWait    = "+fence-wait"
	stepPromoted     = "+promoted-slave"
	stepReconfSlaves = "+failover-state-reconf-slaves"
	stepSwitch       = "+switch-master"
	stepSdown        = "+sdown"
)

// breakdownSteps are the rows of the breakdown after the three +sdown rows.
var breakdownSteps = []string{stepOdown, stepTryFailover, stepElected, stepSelected, stepWaitPromote, stepFenceWait,
	stepPromoted, stepReconfSlaves, stepSwitch}

// stepChannels are the channels the mass failure subscribes to.
var stepChannels = append([]string{stepSdown}, breakdownSteps...)

// stepTimes records, per group, when each step was first heard.
type stepTimes struct {
	mu        sync.Mutex
	endpoints int
	first     map[string]map[string]time.Time // group, step
	sdown     map[string][]time.Time          // group, by endpoint (zero: not yet)
	payload   map[string]string               // group: the first +switch-master's payload
}

func newStepTimes(endpoints int) *stepTimes {
	return &stepTimes{endpoints: endpoints, first: map[string]map[string]time.Time{}, sdown: map[string][]time.Time{},
		payload: map[string]string{}}
}

// eventMaster is the master an event is about, from its Sentinel
// payload, and whether the event is about the master instance itself.
func eventMaster(channel, payload string) (name string, ofMaster bool) {
	f := strings.Fields(payload)
	if channel == stepSwitch {
		if len(f) != 5 {
			return "", false
		}
		return f[0], true
	}
	if i := slices.Index(f, "@"); i >= 0 && i+1 < len(f) {
		return f[i+1], false
	}
	if len(f) >= 2 && f[0] == "master" {
		return f[1], true
	}
	return "", false
}

// record notes a message heard on endpoint ep at at.
func (s *stepTimes) record(ep int, channel, payload string, at time.Time) {
	name, ofMaster := eventMaster(channel, payload)
	if name == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if channel == stepSdown {
		if !ofMaster {
			return // a replica's
		}
		ts := s.sdown[name]
		if ts == nil {
			ts = make([]time.Time, s.endpoints)
			s.sdown[name] = ts
		}
		if ts[ep].IsZero() {
			ts[ep] = at
		}
		return
	}
	m := s.first[name]
	if m == nil {
		m = map[string]time.Time{}
		s.first[name] = m
	}
	if _, seen := m[channel]; !seen {
		m[channel] = at
		if channel == stepSwitch {
			s.payload[name] = payload
		}
	}
}

// switched is when name's first +switch-master was heard, and its payload.
func (s *stepTimes) switched(name string) (time.Time, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.first[name][stepSwitch]
	return at, s.payload[name], ok
}

// stepRow is one step of the breakdown: its time from the kill over the
// killed groups that reached it.
type stepRow struct {
	step     string
	p50, max time.Duration
	groups   int // killed groups that reached it
}

// breakdown is the per-step table over victims, from killedAt.
func (s *stepTimes) breakdown(victims []group, killedAt time.Time) []stepRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	var rows []stepRow
	row := func(step string, ds []time.Duration) {
		if len(ds) > 0 {
			rows = append(rows, stepRow{step: step, p50: percentile(ds, 0.5), max: maxOf(ds), groups: len(ds)})
		}
	}
	nth := make([][]time.Duration, s.endpoints)
	for _, g := range victims {
		var ts []time.Time
		for _, t := range s.sdown[g.name] {
			if !t.IsZero() {
				ts = append(ts, t)
			}
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		for i, t := range ts {
			nth[i] = append(nth[i], t.Sub(killedAt))
		}
	}
	for i, ds := range nth {
		row(fmt.Sprintf("%s (decider %d of %d)", stepSdown, i+1, s.endpoints), ds)
	}
	for _, step := range breakdownSteps {
		var ds []time.Duration
		for _, g := range victims {
			if t, ok := s.first[g.name][step]; ok {
				ds = append(ds, t.Sub(killedAt))
			}
		}
		row(step, ds)
	}
	// The gaps between the main steps, per group: which one grows.
	at := func(g group, step string) (time.Time, bool) {
		if step == quorumSdown {
			var ts []time.Time
			for _, t := range s.sdown[g.name] {
				if !t.IsZero() {
					ts = append(ts, t)
				}
			}
			if len(ts) < 2 {
				return time.Time{}, false
			}
			slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
			return ts[1], true
		}
		t, ok := s.first[g.name][step]
		return t, ok
	}
	chain := []string{quorumSdown, stepOdown, stepTryFailover, stepSwitch}
	for i := 1; i < len(chain); i++ {
		var ds []time.Duration
		for _, g := range victims {
			a, ok1 := at(g, chain[i-1])
			b, ok2 := at(g, chain[i])
			if ok1 && ok2 {
				ds = append(ds, b.Sub(a))
			}
		}
		row(fmt.Sprintf("gap %s -> %s", chain[i-1], chain[i]), ds)
	}
	return rows
}

// quorumSdown names the second decider's +sdown in the gaps: with quorum 2
// it is the vote that makes the master ODOWN.
const quorumSdown = "2nd +sdown"
