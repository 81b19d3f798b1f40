package orchestrator

import (
	"testing"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// steadyCase builds a steady master (addrM with replicas addrR1 and
// addrR2, all answering and following it) and its observations at t0.
func steadyCase() (*fsmv1.Master, map[string]probe.Observation) {
	m := &fsmv1.Master{Name: masterName, Address: addrM, MasterRunId: "run-m",
		Settings: &fsmv1.MasterSettings{Quorum: 2, DownAfterMs: 5000},
		Replicas: []*fsmv1.Replica{{Address: addrR1}, {Address: addrR2}}}
	obs := map[string]probe.Observation{
		addrM: {Addr: addrM, Gen: 1, ChangeGen: 1, LinkUp: true, LastPingAt: t0, Info: &probe.Info{Role: probe.RoleMaster, RunID: "run-m",
			ConnectedReplicas: []probe.ReplicaInfo{{IP: "10.0.0.2", Port: 6379}, {IP: "10.0.0.3", Port: 6379}}}},
	}
	for i, a := range []string{addrR1, addrR2} {
		obs[a] = probe.Observation{Addr: a, Gen: uint64(2 + i), ChangeGen: uint64(2 + i), LinkUp: true, LastPingAt: t0,
			Info: &probe.Info{Role: probe.RoleSlave, MasterHost: "10.0.0.1", MasterPort: 6379}}
	}
	return m, obs
}

func TestSteadyUntil(t *testing.T) {
	downAfter := 5 * time.Second
	for _, tc := range []struct {
		name   string
		edit   func(m *fsmv1.Master, obs map[string]probe.Observation)
		steady bool
		until  time.Time
	}{
		{name: "steady, no fence: until the first SDOWN clock could run out", steady: true, until: t0.Add(downAfter + 1)},
		{name: "a PING in flight: its SDOWN clock counts from its start", steady: true, until: t0.Add(-time.Second + downAfter + 1),
			edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
				o := obs[addrR2]
				o.FailingSince = t0.Add(-time.Second)
				obs[addrR2] = o
			}},
		{name: "failover in progress", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			m.Failover = &fsmv1.Failover{Candidate: addrR1}
		}},
		{name: "odown", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) { m.Odown = true }},
		{name: "a down vote", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			m.Votes = []*fsmv1.Vote{{NodeId: "n2", Address: addrM, Down: true, AtUnixNanos: t0.UnixNano()}}
		}},
		{name: "an up vote is no obstacle", steady: true, until: t0.Add(downAfter + 1),
			edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
				m.Votes = []*fsmv1.Vote{{NodeId: "n2", Address: addrM, Down: false, AtUnixNanos: t0.UnixNano()}}
			}},
		{name: "max-lag: offsets are committed by age", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			m.Settings.MaxLagBytes = 1000
		}},
		{name: "master not observed", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) { delete(obs, addrM) }},
		{name: "master link down", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrM]
			o.LinkUp = false
			obs[addrM] = o
		}},
		{name: "master reports role slave", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrM]
			o.Info = &probe.Info{Role: probe.RoleSlave, RunID: "run-m", MasterHost: "10.0.0.2", MasterPort: 6379}
			obs[addrM] = o
		}},
		{name: "recorded role slave", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) { m.MasterRole = "slave" }},
		{name: "master's run id not the recorded one", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) { m.MasterRunId = "run-old" }},
		{name: "master restarted within the empty-restart window", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrM]
			o.RebootedAt, o.LastPong = t0.Add(-failover.EmptyRestartWindow), t0
			obs[addrM] = o
		}},
		{name: "master restarted long ago", steady: true, until: t0.Add(downAfter + 1),
			edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
				o := obs[addrM]
				o.RebootedAt, o.LastPong = t0.Add(-failover.EmptyRestartWindow-time.Second), t0
				obs[addrM] = o
			}},
		{name: "master restarted, no PONG since, reboot-down-after set", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			m.Settings.MasterRebootDownAfterPeriodMs = 10000
			o := obs[addrM]
			o.RebootedAt, o.LastPong = t0.Add(-failover.EmptyRestartWindow-time.Second), t0.Add(-failover.EmptyRestartWindow-2*time.Second)
			obs[addrM] = o
		}},
		{name: "master lists a replica not on record", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrM]
			in := *o.Info
			in.ConnectedReplicas = append(in.ConnectedReplicas, probe.ReplicaInfo{IP: "10.0.0.9", Port: 6379})
			o.Info = &in
			obs[addrM] = o
		}},
		{name: "replica recorded sdown", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) { m.Replicas[0].Sdown = true }},
		{name: "replica recorded disconnected", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) { m.Replicas[1].Disconnected = true }},
		{name: "replica not observed", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) { delete(obs, addrR1) }},
		{name: "replica link down", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrR1]
			o.LinkUp = false
			obs[addrR1] = o
		}},
		{name: "replica without INFO", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrR1]
			o.Info = nil
			obs[addrR1] = o
		}},
		{name: "replica reports role master", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrR1]
			o.Info = &probe.Info{Role: probe.RoleMaster}
			obs[addrR1] = o
		}},
		{name: "replica follows another master", edit: func(m *fsmv1.Master, obs map[string]probe.Observation) {
			o := obs[addrR2]
			o.Info = &probe.Info{Role: probe.RoleSlave, MasterHost: "10.0.0.2", MasterPort: 6379}
			obs[addrR2] = o
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, obs := steadyCase()
			if tc.edit != nil {
				tc.edit(m, obs)
			}
			until, steady := steadyUntil(m, lookIn(obs), t0)
			if steady != tc.steady || (steady && !until.Equal(tc.until)) {
				t.Fatalf("steadyUntil = %v, %v; want %v, %v", until.Sub(t0), steady, tc.until.Sub(t0), tc.steady)
			}
		})
	}
}

func TestPassInputsSame(t *testing.T) {
	m, obs := steadyCase()
	in := steadyInputs(m, obs)
	if !in.same(m) {
		t.Fatal("the same record and observations are not the same")
	}
	// PING times alone do not change the ChangeGen: still the same.
	o := obs[addrR1]
	o.LastPingAt, o.FailingSince = t0.Add(time.Second), t0.Add(time.Second)
	obs[addrR1] = o
	if !in.same(m) {
		t.Fatal("PING times alone made the inputs differ")
	}
	// Nor does an INFO read that shows nothing new (a new Gen, new
	// offsets and lags).
	o = obs[addrM]
	info := *o.Info
	info.MasterReplOffset = 1000
	o.Gen, o.Info, o.InfoAt = 10, &info, t0.Add(time.Second)
	obs[addrM] = o
	if !in.same(m) {
		t.Fatal("an INFO read with new offsets alone made the inputs differ")
	}
	for name, edit := range map[string]func(m *fsmv1.Master, obs map[string]probe.Observation) *fsmv1.Master{
		"another record (a commit)": func(m *fsmv1.Master, obs map[string]probe.Observation) *fsmv1.Master {
			return proto.Clone(m).(*fsmv1.Master)
		},
		"a replica's observation changed": func(m *fsmv1.Master, obs map[string]probe.Observation) *fsmv1.Master {
			o := obs[addrR2]
			o.Gen, o.ChangeGen = 9, 9
			obs[addrR2] = o
			return m
		},
		"the master's observation changed": func(m *fsmv1.Master, obs map[string]probe.Observation) *fsmv1.Master {
			o := obs[addrM]
			o.Gen, o.ChangeGen = 9, 9
			obs[addrM] = o
			return m
		},
		"a replica no longer observed": func(m *fsmv1.Master, obs map[string]probe.Observation) *fsmv1.Master {
			delete(obs, addrR1)
			return m
		},
	} {
		t.Run(name, func(t *testing.T) {
			m, obs := steadyCase()
			in := steadyInputs(m, obs)
			if m2 := edit(m, obs); in.same(m2) {
				t.Fatal("still the same")
			}
		})
	}
	// ChangeGen 0 (an observer without Gens) is never the same.
	m, obs = steadyCase()
	for a, o := range obs {
		o.ChangeGen = 0
		obs[a] = o
	}
	if steadyInputs(m, obs).same(m) {
		t.Fatal("observations without Gens counted as unchanged")
	}
}

// setGens gives every observation a Gen of its own, as a Watcher does.
func (e *env) setGens() {
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	g := uint64(100)
	for a, o := range e.obs.obs {
		g++
		o.Gen, o.ChangeGen = g, g
		e.obs.obs[a] = o
	}
}

// editObs changes addr's observation in place, and when bump its Gen and
// ChangeGen as well, as a change the probe signals does.
func (e *env) editObs(addr string, bump bool, f func(o *probe.Observation)) {
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	o := e.obs.obs[addr]
	f(&o)
	if bump {
		o.Gen += 1000
		o.ChangeGen = o.Gen
	}
	e.obs.obs[addr] = o
}

// A steady master's pass runs again only when its record or an
// observation changed, or a deadline came: here a replica whose PING goes
// unanswered, with no new observation, is recorded SDOWN at the same tick
// as a leader that runs every pass would record it.
func TestLeaderSkipsSteadyPassesUntilADeadline(t *testing.T) {
	e := newEnv(t, nil)
	e.setGens()
	step := func() { e.leader.Step(e.fsm.View()) }
	step()
	ran := e.leader.passesRun.Load()
	if ran != 1 {
		t.Fatalf("%d passes at the first step, want 1", ran)
	}
	for range 10 {
		e.clock.Advance(100 * time.Millisecond)
		step()
	}
	if got := e.leader.passesRun.Load(); got != ran {
		t.Fatalf("%d passes over 10 unchanged ticks, want none", got-ran)
	}

	// A routine INFO read of a replica (a new Gen, offsets and INFO time,
	// the same ChangeGen): no pass.
	e.editObs(addrR2, false, func(o *probe.Observation) {
		in := *o.Info
		in.SlaveReplOffset += 1000
		o.Gen, o.Info, o.InfoAt = o.Gen+1, &in, e.clock.Now()
	})
	e.clock.Advance(100 * time.Millisecond)
	step()
	if got := e.leader.passesRun.Load(); got != ran {
		t.Fatalf("%d passes after a routine INFO read, want none", got-ran)
	}

	// A new observation of one instance: one pass.
	e.editObs(addrR3, true, func(o *probe.Observation) {})
	e.clock.Advance(100 * time.Millisecond)
	step()
	step()
	if got := e.leader.passesRun.Load(); got != ran+1 {
		t.Fatalf("%d passes after one changed observation, want 1", got-ran)
	}

	// R1's PING goes unanswered from now on: the SDOWN clock runs with no
	// new Gen (the Watcher signals only when the PING times out).
	frozeAt := e.clock.Now()
	e.editObs(addrR1, false, func(o *probe.Observation) { o.FailingSince = frozeAt })
	var sdownAt time.Time
	for range 80 {
		e.clock.Advance(100 * time.Millisecond)
		step()
		if r, _ := findReplica(e.master(), addrR1); r.GetSdown() {
			sdownAt = e.clock.Now()
			break
		}
	}
	// The first tick with more than down-after since the clock started.
	if want := frozeAt.Add(5*time.Second + 100*time.Millisecond); !sdownAt.Equal(want) {
		t.Fatalf("R1 recorded SDOWN at %v, want %v (the first tick past down-after)\n%s", sdownAt.Sub(t0), want.Sub(t0), e.dump(0))
	}
	if got := e.leader.passesRun.Load() - ran; got > 5 {
		t.Fatalf("%d passes over %v of ticks every 100 ms, want a few", got, sdownAt.Sub(frozeAt))
	}
}

// Step says until when it has nothing to do: a leader's loop that waits
// for that (the node's loop waits a second at most, and less when this
// says so) records SDOWN at the same deadline as one that steps every
// 100 ms, with a handful of steps.
func TestStepReportsItsNextDeadline(t *testing.T) {
	e := newEnv(t, nil)
	e.setGens()
	step := func() time.Time { return e.leader.Step(e.fsm.View()) }
	if next := step(); !next.Equal(t0) {
		t.Fatalf("Step after a pass ran = %v, want now", next.Sub(t0))
	}
	e.clock.Advance(100 * time.Millisecond)
	downAfter := 5 * time.Second
	if next, want := step(), t0.Add(downAfter+1); !next.Equal(want) {
		t.Fatalf("Step of a steady master = t0 + %v, want the first pass's SDOWN deadline, t0 + %v", next.Sub(t0), want.Sub(t0))
	}

	// R1's PING goes unanswered from now on, silently (no new Gen).
	e.clock.Advance(900 * time.Millisecond)
	frozeAt := e.clock.Now()
	e.editObs(addrR1, false, func(o *probe.Observation) { o.FailingSince = frozeAt })
	steps := 0
	for ; steps < 20; steps++ {
		next := step()
		if r, _ := findReplica(e.master(), addrR1); r.GetSdown() {
			break
		}
		if next.After(e.clock.Now()) {
			e.clock.Advance(next.Sub(e.clock.Now()))
		} else {
			e.clock.Advance(100 * time.Millisecond)
		}
	}
	if want := frozeAt.Add(downAfter + 1); !e.clock.Now().Equal(want) {
		t.Fatalf("R1 recorded SDOWN at t0 + %v, want t0 + %v, just past down-after\n%s", e.clock.Now().Sub(t0), want.Sub(t0), e.dump(0))
	}
	if steps > 5 {
		t.Fatalf("%d steps to find R1 down, want a few", steps)
	}
}

// With a fence, the next read is the deadline: a second after the PING
// that carried the last.
func TestStepReportsTheNextFenceRead(t *testing.T) {
	e, directReads, _ := fencedSteady(t)
	from := e.mark()
	next := e.leader.Step(e.fsm.View())
	for range 3 {
		if !next.After(e.clock.Now()) {
			t.Fatalf("next deadline %v, not after now %v", next.Sub(t0), e.clock.Now().Sub(t0))
		}
		e.clock.Advance(next.Sub(e.clock.Now()))
		carriedAt := e.clock.Now()
		in := e.info(addrM)
		e.editObs(addrM, false, func(o *probe.Observation) { o.Replication, o.ReplicationAt = &in, carriedAt })
		for _, d := range []time.Duration{0, 100 * time.Millisecond, 800 * time.Millisecond} {
			e.clock.Advance(d)
			if next, want := e.leader.Step(e.fsm.View()), carriedAt.Add(failover.FenceReadMax); !next.Equal(want) {
				t.Fatalf("Step %v after a PING carried INFO = PING + %v, want PING + %v", d, next.Sub(carriedAt), want.Sub(carriedAt))
			}
		}
		next = carriedAt.Add(failover.FenceReadMax)
	}
	if got := directReads(from); got != 0 {
		t.Fatalf("%d direct reads, want none: every read was carried", got)
	}
}

func findReplica(m *fsmv1.Master, addr string) (*fsmv1.Replica, bool) {
	for _, r := range m.GetReplicas() {
		if r.GetAddress() == addr {
			return r, true
		}
	}
	return nil, false
}

// lookIn looks observations up in obs.
func lookIn(obs map[string]probe.Observation) lookup {
	return func(addr string) (probe.Observation, bool) {
		o, ok := obs[addr]
		return o, ok
	}
}

// steadyInputs is what notePass records of m's pass on obs, reading obs
// afterwards as the live ChangeGens.
func steadyInputs(m *fsmv1.Master, obs map[string]probe.Observation) passInputs {
	in := inputsOf(m, groupAddrs(m), lookIn(obs))
	in.live = lookupGens{lookIn(obs), groupAddrs(m)}
	return in
}

// lookupGens reads ChangeGens and links by looking the observations up.
type lookupGens struct {
	look  lookup
	addrs []string
}

func (g lookupGens) ChangeGen(i int) uint64 {
	o, _ := g.look(g.addrs[i])
	return o.ChangeGen
}

func (g lookupGens) Link(i int) (probe.Link, bool) {
	o, ok := g.look(g.addrs[i])
	return o.Link(), ok
}
