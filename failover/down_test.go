package failover

import (
	"strings"
	"testing"
	"time"
)

func TestSubjectivelyDown(t *testing.T) {
	const downAfter = 30 * time.Second
	now := at(time.Hour)
	// replied: the latest contact was answered validly ago.
	replied := func(ago time.Duration) Probe {
		return Probe{Since: now.Add(-time.Hour), LastValidReply: now.Add(-ago), LinkUp: true}
	}
	// failing: the first contact without a valid reply began ago, a ping
	// period after the last valid reply.
	failing := func(ago time.Duration) Probe {
		return Probe{Since: now.Add(-time.Hour), LastValidReply: now.Add(-ago - time.Second), FailingSince: now.Add(-ago)}
	}
	slaveFor := func(ago time.Duration) Probe {
		p := replied(time.Second)
		p.InfoAt = now.Add(-time.Second)
		p.Role = RoleReplica
		p.RoleSince = now.Add(-ago)
		return p
	}
	tests := []struct {
		name         string
		p            Probe
		expectMaster bool
		down         bool
		reason       string
	}{
		{"fresh reply", replied(time.Second), true, false, ""},
		{"answered, nothing failing: up whatever the reply's age", replied(time.Hour), true, false, ""},
		{"failing exactly down-after", failing(downAfter), true, false, ""},
		{"failing just over down-after", failing(downAfter + ms), true, true, "no valid reply for 30.001s (down-after 30s)"},
		{"replica failing too", failing(downAfter + ms), false, true, "no valid reply for 30.001s (down-after 30s)"},
		// The last valid reply is down-after+1s old, but the clock is the
		// first failed contact: the fault came after that reply.
		{"clock is the first failed contact, not the last reply", failing(downAfter - ms), true, false, ""},
		{"link state does not matter", func() Probe { p := failing(downAfter + ms); p.LinkUp = true; return p }(), true, true, "no valid reply for 30.001s (down-after 30s)"},
		{"never replied, failing longer", Probe{Since: now.Add(-time.Hour), FailingSince: now.Add(-downAfter - ms)}, true, true, "no valid reply for 30.001s (down-after 30s)"},
		{"observed, no contact recorded yet", Probe{Since: now.Add(-time.Hour)}, true, false, ""},
		{"no observation window", Probe{}, true, false, "not probed yet"},
		{"master reports slave exactly down-after+20s", slaveFor(50 * time.Second), true, false, ""},
		{"master reports slave just over", slaveFor(50*time.Second + ms), true, true, "master reports role slave for 50.001s (limit 50s)"},
		{"replica reporting slave is fine", slaveFor(time.Hour), false, false, ""},
		{"role slave without info ignored", func() Probe { p := slaveFor(time.Hour); p.InfoAt = time.Time{}; return p }(), true, false, ""},
		{"role since falls back to Since", func() Probe { p := slaveFor(0); p.RoleSince = time.Time{}; return p }(), true, true, "master reports role slave for 3600s (limit 50s)"},
		{"master reporting master", func() Probe { p := slaveFor(time.Hour); p.Role = RoleMaster; return p }(), true, false, ""},
		// A replica promoted 10 s ago still reports slave until its next
		// INFO: its long time as a replica does not count against it.
		{"just promoted, still reports slave", func() Probe { p := slaveFor(time.Hour); p.MasterSince = now.Add(-10 * time.Second); return p }(), true, false, ""},
		{"promoted long ago, still reports slave", func() Probe { p := slaveFor(time.Hour); p.MasterSince = now.Add(-50*time.Second - ms); return p }(), true, true, "master reports role slave for 50.001s (limit 50s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			down, reason := SubjectivelyDown(tc.p, tc.expectMaster, downAfter, now)
			if down != tc.down || reason != tc.reason {
				t.Fatalf("got (%v, %q), want (%v, %q)", down, reason, tc.down, tc.reason)
			}
		})
	}
}

// TestSDownClockPerFault plays each kind of failed contact on a timeline,
// as the probe records it, with down-after 1 s and a ping period of 100 ms:
// the instance last answered at 0, the fault happens at 50 ms, and the
// clock is the start of the first contact that went wrong after it. It is
// never the last valid reply, so an instance unreachable for less than
// down-after is never down, and every fault is detected within down-after
// plus one period of the fault.
func TestSDownClockPerFault(t *testing.T) {
	const (
		downAfter = time.Second
		period    = 100 * time.Millisecond
	)
	lastReply := at(0)
	fault := at(50 * ms)
	nextContact := at(period) // the first contact the fault can spoil
	tests := []struct {
		name string
		// p is the probe after the first failed contact; its FailingSince
		// is the clock.
		p Probe
	}{
		// A frozen or hung instance: the PING sent at 100 ms waits, then
		// times out; its send time is the clock, answered or not.
		{"unanswered PING", Probe{Since: t0, LastValidReply: lastReply, LinkUp: false, FailingSince: nextContact}},
		// The PING in flight when the timeout came is replaced by later
		// ones on a new connection; the clock stays at the first.
		{"unanswered PING, still in flight", Probe{Since: t0, LastValidReply: lastReply, LinkUp: true, FailingSince: nextContact}},
		// A killed instance: the dial at 100 ms is refused at once.
		{"refused connection", Probe{Since: t0, LastValidReply: lastReply, FailingSince: nextContact}},
		// The instance died with the PING in flight: the connection is
		// reset and the redial refused. The PING went out at 100 ms.
		{"connection reset mid-PING", Probe{Since: t0, LastValidReply: lastReply, FailingSince: nextContact}},
		// A host that vanished from the network: the dial at 100 ms hangs
		// until its timeout.
		{"timed-out dial", Probe{Since: t0, LastValidReply: lastReply, FailingSince: nextContact}},
		// An instance that answers, but not validly (MISCONF, NOAUTH).
		{"error reply", Probe{Since: t0, LastValidReply: lastReply, LinkUp: true, FailingSince: nextContact}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := tc.p.FailingSince
			if down, _ := SubjectivelyDown(tc.p, true, downAfter, clock.Add(downAfter)); down {
				t.Fatal("down exactly down-after after the first failed contact")
			}
			// The old rule counted from the last valid reply and called this
			// down, 950 ms after the fault.
			if down, _ := SubjectivelyDown(tc.p, true, downAfter, lastReply.Add(downAfter+ms)); down {
				t.Fatal("down down-after after the last valid reply: the clock started before the fault")
			}
			if down, _ := SubjectivelyDown(tc.p, true, downAfter, fault.Add(downAfter)); down {
				t.Fatal("down after exactly down-after of unreachability")
			}
			down, reason := SubjectivelyDown(tc.p, true, downAfter, clock.Add(downAfter+ms))
			if !down || reason != "no valid reply for 1.001s (down-after 1s)" {
				t.Fatalf("just past down-after: (%v, %q)", down, reason)
			}
			if late := clock.Add(downAfter + ms).Sub(fault); late > downAfter+period {
				t.Fatalf("detected %v after the fault, more than down-after + period", late)
			}
			if got := SDownSince(tc.p, downAfter, clock.Add(2*downAfter)); !got.Equal(clock.Add(downAfter)) {
				t.Fatalf("SDownSince = %v, want %v", got, clock.Add(downAfter))
			}
			// A valid reply clears the clock: the probe zeroes FailingSince.
			back := tc.p
			back.FailingSince, back.LastValidReply, back.LinkUp = time.Time{}, clock.Add(300*ms), true
			if down, _ := SubjectivelyDown(back, true, downAfter, clock.Add(time.Hour)); down {
				t.Fatal("down after a valid reply")
			}
		})
	}
}

func TestEvidenceFreshAndDownOpinion(t *testing.T) {
	const downAfter = 60 * time.Second
	// The instance last answered just before t0 and has refused connections
	// since t0; this node was stopped from t0+10s and noticed the gap at
	// t0+40s.
	p := Probe{Since: at(-time.Hour), LastValidReply: at(-100 * ms), FailingSince: t0}
	tilt := Tilt{}.Tick(at(10*time.Second), 0).Tick(at(40*time.Second), 0)
	if !tilt.EnteredAt.Equal(at(40 * time.Second)) {
		t.Fatalf("tilt not entered: %+v", tilt)
	}
	resumed := tilt.EnteredAt

	tests := []struct {
		name   string
		p      Probe
		now    time.Time
		down   bool
		prefix string
	}{
		{"in tilt", p, at(69 * time.Second), false, "tilt since "},
		{"tilt over, evidence stale", p, at(71 * time.Second), false, "down evidence predates the pause"},
		{"exactly down-after since resume", p, resumed.Add(downAfter), false, ""},
		{"full down-after since resume", p, resumed.Add(downAfter + ms), true, "no valid reply for 100.001s"},
		{"reply after resume restarts clock", func() Probe {
			q := p
			q.LastValidReply, q.FailingSince = at(45*time.Second-100*ms), at(45*time.Second)
			return q
		}(), at(105*time.Second + ms), true, "no valid reply for 60.001s"},
		{"not down at all", func() Probe {
			q := p
			q.LastValidReply, q.FailingSince, q.LinkUp = at(100*time.Second), time.Time{}, true
			return q
		}(), at(110 * time.Second), false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			down, reason := DownOpinion(tc.p, true, downAfter, tilt, tc.now)
			if down != tc.down || !strings.HasPrefix(reason, tc.prefix) {
				t.Fatalf("got (%v, %q), want (%v, %q...)", down, reason, tc.down, tc.prefix)
			}
			sd, _ := SubjectivelyDown(tc.p, true, downAfter, tc.now)
			fresh := EvidenceFresh(tc.p, true, downAfter, resumed, tc.now)
			if !tilt.Active(tc.now) && tc.down != (sd && fresh) {
				t.Fatalf("DownOpinion %v disagrees with SubjectivelyDown %v && EvidenceFresh %v", tc.down, sd, fresh)
			}
		})
	}

	t.Run("role rule clock restarts at resume", func(t *testing.T) {
		q := Probe{Since: at(-time.Hour), LastValidReply: at(200 * time.Second), LinkUp: true,
			InfoAt: at(200 * time.Second), Role: RoleReplica, RoleSince: t0}
		// down-after + 20 s = 80 s after the resume at 40 s.
		if EvidenceFresh(q, true, downAfter, resumed, at(120*time.Second)) {
			t.Fatal("fresh at exactly 80s after resume")
		}
		if !EvidenceFresh(q, true, downAfter, resumed, at(120*time.Second+ms)) {
			t.Fatal("not fresh just after 80s after resume")
		}
	})

	t.Run("never tilted is plain SDOWN", func(t *testing.T) {
		down, reason := DownOpinion(p, true, downAfter, Tilt{}, at(downAfter+ms))
		if !down || reason != "no valid reply for 60.001s (down-after 60s)" {
			t.Fatalf("got (%v, %q)", down, reason)
		}
	})
}

func TestObjectivelyDown(t *testing.T) {
	const fresh = 5 * time.Second
	now := at(time.Minute)
	v := func(node string, down bool, ago time.Duration) Vote {
		return Vote{Node: node, Down: down, At: now.Add(-ago)}
	}
	tests := []struct {
		name   string
		votes  []Vote
		quorum int
		down   bool
		count  int
	}{
		{"no votes", nil, 1, false, 0},
		{"quorum reached", []Vote{v("a", true, 0), v("b", true, time.Second)}, 2, true, 2},
		{"quorum missed", []Vote{v("a", true, 0), v("b", false, 0)}, 2, false, 1},
		{"quorum zero never down", []Vote{v("a", true, 0)}, 0, false, 1},
		{"negative quorum never down", []Vote{v("a", true, 0)}, -1, false, 1},
		{"same node counted once", []Vote{v("a", true, 0), v("a", true, time.Second)}, 2, false, 1},
		{"exactly fresh", []Vote{v("a", true, fresh)}, 1, true, 1},
		{"stale", []Vote{v("a", true, fresh+time.Nanosecond)}, 1, false, 0},
		{"later up vote wins", []Vote{v("a", true, 2*time.Second), v("a", false, time.Second)}, 1, false, 0},
		{"later down vote wins", []Vote{v("a", false, 2*time.Second), v("a", true, time.Second)}, 1, true, 1},
		{"same instant: up wins", []Vote{v("a", true, time.Second), v("a", false, time.Second)}, 1, false, 0},
		{"empty node ignored", []Vote{v("", true, 0)}, 1, false, 0},
		{"future vote is fresh", []Vote{v("a", true, -time.Second)}, 1, true, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			down, count := ObjectivelyDown(tc.votes, tc.quorum, fresh, now)
			if down != tc.down || count != tc.count {
				t.Fatalf("got (%v, %d), want (%v, %d)", down, count, tc.down, tc.count)
			}
		})
	}
	got := DownVoters([]Vote{v("c", true, 0), v("a", true, 0), v("b", false, 0)}, fresh, now)
	if strings.Join(got, ",") != "a,c" {
		t.Fatalf("DownVoters = %v", got)
	}
}

func TestSDownSince(t *testing.T) {
	const downAfter = 30 * time.Second
	now := at(time.Hour)
	tests := []struct {
		name string
		p    Probe
		want time.Time
	}{
		{"pending PING", Probe{Since: t0, LinkUp: true, LastValidReply: now.Add(-time.Minute), FailingSince: now.Add(-40 * time.Second)}, now.Add(-10 * time.Second)},
		{"refused since", Probe{Since: t0, LastValidReply: now.Add(-time.Minute), FailingSince: now.Add(-59 * time.Second)}, now.Add(-29 * time.Second)},
		{"never replied", Probe{Since: now.Add(-time.Minute), FailingSince: now.Add(-time.Minute)}, now.Add(-30 * time.Second)},
		{"role rule", Probe{Since: t0, LinkUp: true, LastValidReply: now, Role: RoleReplica, InfoAt: now, RoleSince: now.Add(-time.Minute)}, now.Add(-10 * time.Second)},
	}
	for _, tc := range tests {
		if got := SDownSince(tc.p, downAfter, now); !got.Equal(tc.want) {
			t.Errorf("%s: SDownSince = %v, want %v", tc.name, got, tc.want)
		}
	}
}
