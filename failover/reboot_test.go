package failover

import (
	"strings"
	"testing"
	"time"
)

func TestRebootRule(t *testing.T) {
	const (
		downAfter = 30 * time.Second
		period    = 5 * time.Second
	)
	now := at(time.Hour)
	// loading: the master restarted rebootedAgo ago and has answered every
	// PING since with LOADING (valid, not PONG); before the restart it
	// answered PONG.
	loading := func(rebootedAgo time.Duration) Probe {
		return Probe{Since: now.Add(-time.Hour), LinkUp: true, LastValidReply: now.Add(-100 * ms),
			LastPong: now.Add(-rebootedAgo - time.Second), RebootedAt: now.Add(-rebootedAgo), RebootDownAfter: period,
			InfoAt: now.Add(-100 * ms), Role: RoleMaster}
	}
	with := func(p Probe, f func(*Probe)) Probe { f(&p); return p }
	tests := []struct {
		name         string
		p            Probe
		expectMaster bool
		down         bool
		reason       string
		rebooting    bool
	}{
		{"loading exactly the period", loading(period), true, false, "", true},
		{"loading just over the period", loading(period + ms), true, true,
			"no PONG for 5.001s since the master restarted (master-reboot-down-after-period 5s)", true},
		{"rule off (period 0)", with(loading(time.Minute), func(p *Probe) { p.RebootDownAfter = 0 }), true, false, "", false},
		{"a PONG after the reboot clears it", with(loading(time.Minute), func(p *Probe) { p.LastPong = p.RebootedAt.Add(ms) }), true, false, "", false},
		// Sentinel sets the flag when INFO shows the new run id, even if a
		// PONG of the new process came just before: it waits for the next.
		{"a PONG at the reboot instant does not", with(loading(time.Minute), func(p *Probe) { p.LastPong = p.RebootedAt }), true, true,
			"no PONG for 60s since the master restarted (master-reboot-down-after-period 5s)", true},
		{"never rebooted", with(loading(time.Minute), func(p *Probe) { p.RebootedAt = time.Time{} }), true, false, "", false},
		{"only for the recorded master", loading(time.Minute), false, false, "", true},
		// Rule 1 still speaks first when the master is silent as well.
		{"silent and rebooting: rule 1's reason", with(loading(time.Minute), func(p *Probe) { p.FailingSince = now.Add(-downAfter - ms) }), true, true,
			"no valid reply for 30.001s (down-after 30s)", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			down, reason := SubjectivelyDown(tc.p, tc.expectMaster, downAfter, now)
			if down != tc.down || reason != tc.reason {
				t.Fatalf("SubjectivelyDown = (%v, %q), want (%v, %q)", down, reason, tc.down, tc.reason)
			}
			if got := MasterRebooting(tc.p); got != tc.rebooting {
				t.Fatalf("MasterRebooting = %v, want %v", got, tc.rebooting)
			}
		})
	}

	// SDOWN by rule 3 began the period after the reboot was seen.
	p := loading(time.Minute)
	if got := SDownSince(p, downAfter, now); !got.Equal(p.RebootedAt.Add(period)) {
		t.Fatalf("SDownSince = %v, want %v", got, p.RebootedAt.Add(period))
	}
	// After a pause, the reboot clock restarts at the resume like the
	// others: a period must pass again after it.
	resumed := now.Add(-3 * time.Second)
	tilt := Tilt{Period: time.Second, EnteredAt: resumed}
	if down, reason := DownOpinion(p, true, downAfter, tilt, now); down {
		t.Fatalf("down right after a pause on pre-pause evidence: %q", reason)
	}
	if down, _ := DownOpinion(p, true, downAfter, tilt, resumed.Add(period+ms)); !down {
		t.Fatal("not down a period after the pause")
	}
}

const (
	oldID = "1111111111111111111111111111111111111111"
	newID = "2222222222222222222222222222222222222222"
)

func TestContinues(t *testing.T) {
	m := Probe{ReplID: newID, ReplID2: oldID, ReplID2Offset: 1001, Offset: 1500}
	for _, tc := range []struct {
		name string
		r    Probe
		want bool
	}{
		{"same id, behind", Probe{ReplID: newID, Offset: 1400}, true},
		{"same id, level", Probe{ReplID: newID, Offset: 1500}, true},
		{"same id, ahead", Probe{ReplID: newID, Offset: 1501}, false},
		{"previous id up to the switch", Probe{ReplID: oldID, Offset: 1000}, true},
		{"previous id past the switch", Probe{ReplID: oldID, Offset: 1001}, false},
		{"another id", Probe{ReplID: "3333", Offset: 10}, false},
	} {
		if got := Continues(m, tc.r); got != tc.want {
			t.Errorf("%s: Continues = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A master without a previous history (all zeros, -1 in INFO) continues
	// nothing but its own.
	fresh := Probe{ReplID: newID, ReplID2: "0000000000000000000000000000000000000000", ReplID2Offset: -1, Offset: 14}
	if Continues(fresh, Probe{ReplID: oldID, Offset: 0}) {
		t.Fatal("a fresh master continues an old history")
	}
}

func TestEmptyRestart(t *testing.T) {
	const downAfter = 5 * time.Second
	now := at(time.Hour)
	// The master restarted a second ago without persistence: new id,
	// offset 14, no key.
	master := Probe{Since: now.Add(-time.Hour), LastValidReply: now, LastPong: now, LinkUp: true, InfoAt: now,
		Role: RoleMaster, RunID: "run-new", RebootedAt: now.Add(-time.Second), ReplID: newID,
		ReplID2: "0000000000000000000000000000000000000000", ReplID2Offset: -1, Offset: 14, KeysKnown: true}
	// replica: still holding the old history (keys, offset), link to the
	// master down while it retries the sync.
	replica := func(addr string, priority int, offset, keys int64) Candidate {
		return Candidate{Addr: addr, Probe: Probe{Since: now.Add(-time.Hour), LastValidReply: now, LastPong: now, LinkUp: true,
			InfoAt: now, Role: RoleReplica, MasterHost: "10.0.0.1", MasterPort: 6379, MasterLinkDownFor: time.Second,
			Priority: priority, Offset: offset, RunID: "run-" + addr, ReplID: oldID, KeysKnown: true, Keys: keys}}
	}
	resynced := func(c Candidate) Candidate {
		c.Probe.ReplID, c.Probe.Offset, c.Probe.Keys, c.Probe.MasterLinkUp = newID, 14, 0, true
		return c
	}
	base := func() EmptyRestartInput {
		return EmptyRestartInput{MasterHost: "10.0.0.1", MasterPort: 6379, Master: master, RecordedRunID: "run-old", DownAfter: downAfter, Now: now,
			Replicas: []Candidate{replica("r1", 100, 5000, 1000), replica("r2", 100, 5100, 1000)}}
	}
	edit := func(f func(*EmptyRestartInput)) EmptyRestartInput { in := base(); f(&in); return in }
	tests := []struct {
		name     string
		in       EmptyRestartInput
		failover bool
		winner   string
		holding  string
		reason   string
	}{
		{"empty restart behind two replicas: the one furthest ahead", base(), true, "r2", "r1 r2",
			"the master restarted empty with a new replication history; r2 holds 1000 keys up to offset 5100"},
		{"priority still ranks first", edit(func(in *EmptyRestartInput) { in.Replicas[0].Probe.Priority = 10 }), true, "r1", "r1 r2", ""},
		{"seen only as a new run id against the record", edit(func(in *EmptyRestartInput) { in.Master.RebootedAt = time.Time{} }), true, "r2", "r1 r2", ""},
		{"no restart", edit(func(in *EmptyRestartInput) { in.Master.RebootedAt, in.RecordedRunID = time.Time{}, "run-new" }), false, "", "", "no restart seen"},
		{"restart at the window's end", edit(func(in *EmptyRestartInput) {
			in.Master.RebootedAt, in.RecordedRunID = now.Add(-EmptyRestartWindow), "run-new"
		}), true, "r2", "r1 r2", ""},
		{"restart longer ago than the window", edit(func(in *EmptyRestartInput) {
			in.Master.RebootedAt, in.RecordedRunID = now.Add(-EmptyRestartWindow-ms), "run-new"
		}), false, "", "", "the last restart was 60.001s ago"},
		{"an old reboot but a new run id against the record", edit(func(in *EmptyRestartInput) {
			in.Master.RebootedAt = now.Add(-time.Hour)
		}), true, "r2", "r1 r2", ""},
		{"a replica following another master is not at risk", edit(func(in *EmptyRestartInput) {
			in.Replicas[1].Probe.MasterPort = 6380
		}), true, "r1", "r1", ""},
		{"host names compare case-insensitively", edit(func(in *EmptyRestartInput) {
			in.MasterHost = "Redis-A"
			in.Replicas[0].Probe.MasterHost, in.Replicas[1].Probe.MasterHost = "redis-a", "REDIS-A"
		}), true, "r2", "r1 r2", ""},
		{"no restart, no record yet", edit(func(in *EmptyRestartInput) { in.Master.RebootedAt, in.RecordedRunID = time.Time{}, "" }), false, "", "", "no restart seen"},
		{"restarted with its data (persistence)", edit(func(in *EmptyRestartInput) { in.Master.Keys = 1 }), false, "", "",
			"the master restarted with 1 keys: kept"},
		{"still loading from disk", edit(func(in *EmptyRestartInput) { in.Master.Loading = true }), false, "", "", "the master is still loading its data"},
		{"keyspace not read", edit(func(in *EmptyRestartInput) { in.Master.KeysKnown = false }), false, "", "", "the master's keyspace is unknown"},
		{"master reports slave", edit(func(in *EmptyRestartInput) { in.Master.Role = RoleReplica }), false, "", "", "no INFO of the master as master"},
		{"no INFO of the master", edit(func(in *EmptyRestartInput) { in.Master.InfoAt = time.Time{} }), false, "", "", "no INFO of the master as master"},
		// A master restarted from an RDB file with no key keeps its old
		// history as its previous one: replicas not past it continue it.
		{"replicas continue the master's previous history", edit(func(in *EmptyRestartInput) {
			in.Master.ReplID2, in.Master.ReplID2Offset, in.Master.Offset = oldID, 5101, 5114
		}), false, "", "", "the master restarted empty, but no replica holds data it cannot continue"},
		{"too late: both resynced from the empty master", edit(func(in *EmptyRestartInput) {
			in.Replicas = []Candidate{resynced(in.Replicas[0]), resynced(in.Replicas[1])}
		}), false, "", "", "the master restarted empty, but no replica holds data it cannot continue"},
		{"one resynced, the other still holds its data", edit(func(in *EmptyRestartInput) {
			in.Replicas[1] = resynced(in.Replicas[1])
		}), true, "r1", "r1", ""},
		{"replicas without keys have nothing to lose", edit(func(in *EmptyRestartInput) {
			in.Replicas[0].Probe.Keys, in.Replicas[1].Probe.Keys = 0, 0
		}), false, "", "", "the master restarted empty, but no replica holds data it cannot continue"},
		{"replica keyspace unknown", edit(func(in *EmptyRestartInput) {
			in.Replicas[0].Probe.KeysKnown, in.Replicas[1].Probe.KeysKnown = false, false
		}), false, "", "", "the master restarted empty, but no replica holds data it cannot continue"},
		{"replication id unknown", edit(func(in *EmptyRestartInput) { in.Master.ReplID = "" }), false, "", "",
			"the master restarted empty, but no replica holds data it cannot continue"},
		{"holders cannot be promoted", edit(func(in *EmptyRestartInput) {
			in.Replicas[0].Probe.Priority, in.Replicas[1].SDown = 0, true
		}), false, "", "r1 r2", "the master restarted empty behind its replicas, but none of those holding data can be promoted"},
		{"stale INFO of a holder rejects it", edit(func(in *EmptyRestartInput) {
			in.Replicas[1].Probe.InfoAt = now.Add(-31 * time.Second)
		}), true, "r1", "r1 r2", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := EmptyRestart(tc.in)
			if d.Failover != tc.failover || (tc.failover && d.Choice.Winner != tc.winner) {
				t.Fatalf("failover %v winner %q (%s), want %v %q", d.Failover, d.Choice.Winner, d.Reason, tc.failover, tc.winner)
			}
			if got := strings.Join(d.Holding, " "); got != tc.holding {
				t.Fatalf("holding %q, want %q", got, tc.holding)
			}
			if tc.reason != "" && d.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", d.Reason, tc.reason)
			}
		})
	}
}
