package failover

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// ago draws a time relative to now, concentrated on the rule boundaries
// (5 s, 30 s) so that both sides of each are exercised. Most draws return
// good, so that several replicas are usually eligible and the ranking is
// exercised too.
func ago(t *rapid.T, now time.Time, good time.Duration, label string) time.Time {
	if rapid.IntRange(0, 3).Draw(t, label+"Odd") != 0 {
		return now.Add(-good)
	}
	choices := []time.Duration{-1, 0, time.Second, 5*time.Second - 1, 5 * time.Second, 5*time.Second + 1,
		30 * time.Second, 30*time.Second + 1, time.Hour}
	i := rapid.IntRange(-1, len(choices)-1).Draw(t, label)
	if i < 0 {
		return time.Time{}
	}
	return now.Add(-choices[i])
}

// rarely is true about one time in ten.
func rarely(t *rapid.T, label string) bool { return rapid.IntRange(0, 9).Draw(t, label) == 0 }

func drawSelection(t *rapid.T) Selection {
	now := t0
	n := rapid.IntRange(0, 8).Draw(t, "n")
	ids := rapid.Permutation([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}).Draw(t, "ids")
	in := Selection{
		DownAfter:    rapid.SampledFrom([]time.Duration{0, time.Second, 30 * time.Second}).Draw(t, "downAfter"),
		MaxLagBytes:  rapid.SampledFrom([]int64{0, 0, 1, 3}).Draw(t, "maxLag"),
		MasterOffset: rapid.Int64Range(0, 6).Draw(t, "masterOffset"),
		Now:          now,
	}
	if rapid.Bool().Draw(t, "masterSDown") {
		in.MasterSDownSince = now.Add(-rapid.SampledFrom([]time.Duration{0, 10 * time.Second}).Draw(t, "sdownFor"))
	}
	for i := range n {
		role := RoleReplica
		if rarely(t, "oddRole") {
			role = rapid.SampledFrom([]Role{RoleMaster, ""}).Draw(t, "role")
		}
		c := Candidate{
			Addr:  "10.0.0." + strconv.Itoa(ids[i]) + ":6379",
			SDown: rarely(t, "sdown"),
			Probe: Probe{
				Since:          ago(t, now, time.Hour, "since"),
				LastValidReply: ago(t, now, time.Second, "reply"),
				LinkUp:         !rarely(t, "linkDown"),
				InfoAt:         ago(t, now, time.Second, "info"),
				Role:           role,
				MasterLinkUp:   rapid.Bool().Draw(t, "masterLinkUp"),
				MasterLinkDownFor: rapid.SampledFrom([]time.Duration{-time.Second, 0, 10 * time.Second,
					10 * time.Second, 300 * time.Second, 310 * time.Second, 311 * time.Second, time.Hour}).Draw(t, "linkDownFor"),
				Priority: rapid.SampledFrom([]int{0, 1, 100, 100, 100}).Draw(t, "priority"),
				Offset:   rapid.Int64Range(0, 5).Draw(t, "offset"),
				RunID:    rapid.SampledFrom([]string{"", "abc", "ABC", "abd", "0a", "ab"}).Draw(t, "runid"),
			},
		}
		in.Replicas = append(in.Replicas, c)
	}
	return in
}

// oracleEligible restates the exclusion rules independently of rejectReason.
func oracleEligible(in Selection, c Candidate) bool {
	p := c.Probe
	last := p.LastValidReply
	if last.IsZero() {
		last = p.Since
	}
	infoLimit := 30 * time.Second
	linkLimit := 10 * in.DownAfter
	if !in.MasterSDownSince.IsZero() {
		infoLimit = 5 * time.Second
		linkLimit += in.Now.Sub(in.MasterSDownSince)
	}
	var linkDown time.Duration
	if !p.MasterLinkUp {
		linkDown = p.MasterLinkDownFor
	}
	lagOK := in.MaxLagBytes <= 0 || in.MasterOffset-p.Offset <= in.MaxLagBytes
	return !c.SDown && p.LinkUp &&
		!last.IsZero() && in.Now.Sub(last) <= 5*time.Second &&
		p.Priority != 0 &&
		!p.InfoAt.IsZero() && in.Now.Sub(p.InfoAt) <= infoLimit &&
		p.Role == RoleReplica &&
		linkDown <= linkLimit &&
		lagOK
}

// oracleBetter reports whether a ranks strictly before b.
func oracleBetter(a, b Candidate) bool {
	if a.Probe.Priority != b.Probe.Priority {
		return a.Probe.Priority < b.Probe.Priority
	}
	if a.Probe.Offset != b.Probe.Offset {
		return a.Probe.Offset > b.Probe.Offset
	}
	ra, rb := strings.ToLower(a.Probe.RunID), strings.ToLower(b.Probe.RunID)
	if ra != rb {
		if ra == "" || rb == "" {
			return rb == ""
		}
		return ra < rb
	}
	return a.Addr < b.Addr
}

func TestSelectReplicaProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := drawSelection(t)
		ch := SelectReplica(in)

		byAddr := map[string]Candidate{}
		for _, c := range in.Replicas {
			byAddr[c.Addr] = c
		}
		rejected := map[string]bool{}
		for _, r := range ch.Rejected {
			rejected[r.Addr] = true
			if r.Reason == "" {
				t.Fatalf("empty reason for %s", r.Addr)
			}
			if oracleEligible(in, byAddr[r.Addr]) {
				t.Fatalf("eligible replica %s rejected: %s", r.Addr, r.Reason)
			}
		}

		// The winner is never one an exclusion rule rejects.
		if ch.OK {
			if rejected[ch.Winner] || !oracleEligible(in, byAddr[ch.Winner]) {
				t.Fatalf("winner %s is excluded", ch.Winner)
			}
			if len(ch.Ranked) == 0 || ch.Ranked[0] != ch.Winner {
				t.Fatalf("winner %s is not first of %v", ch.Winner, ch.Ranked)
			}
		} else if len(ch.Ranked) != 0 || ch.Winner != "" {
			t.Fatalf("no winner but ranked %v / %q", ch.Ranked, ch.Winner)
		}

		// Every replica is chosen, rejected, or ranked below the winner.
		if len(ch.Ranked)+len(ch.Rejected) != len(in.Replicas) {
			t.Fatalf("%d ranked + %d rejected != %d replicas", len(ch.Ranked), len(ch.Rejected), len(in.Replicas))
		}
		for i, addr := range ch.Ranked {
			c, ok := byAddr[addr]
			if !ok || rejected[addr] || !oracleEligible(in, c) {
				t.Fatalf("ranked %s is not an eligible input", addr)
			}
			if i > 0 && !oracleBetter(byAddr[ch.Ranked[i-1]], c) {
				t.Fatalf("%s ranked before %s", ch.Ranked[i-1], addr)
			}
			if addr != ch.Winner && oracleBetter(c, byAddr[ch.Winner]) {
				t.Fatalf("%s beats winner %s", addr, ch.Winner)
			}
		}

		// The choice does not depend on input order.
		shuffled := in
		shuffled.Replicas = rapid.Permutation(in.Replicas).Draw(t, "shuffled")
		if again := SelectReplica(shuffled); !reflect.DeepEqual(again, ch) {
			t.Fatalf("order changed the choice:\n%+v\n%+v", ch, again)
		}
	})
}

func TestObjectivelyDownOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		vote := rapid.Custom(func(t *rapid.T) Vote {
			return Vote{
				Node: rapid.SampledFrom([]string{"", "a", "b", "c", "d"}).Draw(t, "node"),
				Down: rapid.Bool().Draw(t, "down"),
				At:   t0.Add(time.Duration(rapid.IntRange(-3, 8).Draw(t, "at")) * time.Second),
			}
		})
		votes := rapid.SliceOfN(vote, 0, 12).Draw(t, "votes")
		quorum := rapid.IntRange(-1, 4).Draw(t, "quorum")
		now := t0.Add(5 * time.Second)
		down, count := ObjectivelyDown(votes, quorum, 5*time.Second, now)
		d2, c2 := ObjectivelyDown(rapid.Permutation(votes).Draw(t, "perm"), quorum, 5*time.Second, now)
		if down != d2 || count != c2 {
			t.Fatalf("order changed ODOWN: (%v,%d) vs (%v,%d)", down, count, d2, c2)
		}
		if count > 4 || (down && (quorum < 1 || count < quorum)) {
			t.Fatalf("bad result down=%v count=%d quorum=%d", down, count, quorum)
		}
	})
}

func TestNextReconfBatchProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		now := t0
		st := rapid.Custom(func(t *rapid.T) ReconfState {
			return ReconfState{
				Addr:         rapid.SampledFrom([]string{"a", "b", "c", "d", "e", "f"}).Draw(t, "addr"),
				Phase:        ReconfPhase(rapid.IntRange(0, 3).Draw(t, "phase")),
				SentAt:       now.Add(-time.Duration(rapid.IntRange(0, 20).Draw(t, "sentAgo")) * time.Second),
				Disconnected: rapid.IntRange(0, 3).Draw(t, "disc") == 0,
				SDown:        rapid.IntRange(0, 3).Draw(t, "sdown") == 0,
			}
		})
		states := rapid.SliceOfNDistinct(st, 0, 6, func(s ReconfState) string { return s.Addr }).Draw(t, "states")
		parallel := rapid.IntRange(-1, 4).Draw(t, "parallel")
		plan := NextReconfBatch(states, parallel, now)

		timedOut := map[string]bool{}
		for _, a := range plan.TimedOut {
			timedOut[a] = true
		}
		inFlight := len(plan.Send)
		pendingConnected := 0
		for _, s := range states {
			if (s.Phase == ReconfSent && !timedOut[s.Addr]) || s.Phase == ReconfInProgress {
				inFlight++
			}
			if s.Phase == ReconfPending && !s.Disconnected {
				pendingConnected++
			}
		}
		limit := max(parallel, 1)
		if len(plan.Send) > 0 && inFlight > limit {
			t.Fatalf("%d in flight after sending %v, limit %d", inFlight, plan.Send, limit)
		}
		if len(plan.Send) < min(pendingConnected, limit) && inFlight < limit {
			t.Fatalf("free slots left unused: sent %v, in flight %d, limit %d", plan.Send, inFlight, limit)
		}
		again := NextReconfBatch(rapid.Permutation(states).Draw(t, "perm"), parallel, now)
		if !reflect.DeepEqual(plan, again) {
			t.Fatalf("order changed the plan: %+v vs %+v", plan, again)
		}
	})
}

// TestNoPanics feeds extreme values to every decision.
func TestNoPanics(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		tm := func(label string) time.Time {
			switch rapid.IntRange(0, 3).Draw(t, label+"kind") {
			case 0:
				return time.Time{}
			case 1:
				return time.Unix(0, rapid.Int64().Draw(t, label))
			case 2:
				return time.Unix(rapid.Int64Range(-1<<40, 1<<40).Draw(t, label), 0)
			}
			return t0
		}
		dur := func(label string) time.Duration {
			return time.Duration(rapid.SampledFrom([]int64{math.MinInt64, -1, 0, 1, int64(time.Second), math.MaxInt64}).Draw(t, label))
		}
		probe := func(label string) Probe {
			return Probe{
				Since: tm(label + "since"), LastValidReply: tm(label + "reply"), LinkUp: rapid.Bool().Draw(t, label+"link"),
				FailingSince: tm(label + "failing"), InfoAt: tm(label + "info"), Role: rapid.SampledFrom([]Role{RoleMaster, RoleReplica, "", "x"}).Draw(t, label+"role"),
				RoleSince: tm(label + "roleSince"), MasterHost: rapid.SampledFrom([]string{"", "h", "H", "::1"}).Draw(t, label+"mh"),
				MasterPort: rapid.Int().Draw(t, label+"mp"), MasterAddrSince: tm(label + "mas"),
				MasterLinkUp: rapid.Bool().Draw(t, label+"mlu"), MasterLinkDownFor: dur(label + "mld"),
				Priority: rapid.Int().Draw(t, label+"prio"), Offset: rapid.Int64().Draw(t, label+"off"),
				RunID: rapid.String().Draw(t, label+"runid"),
			}
		}
		now := tm("now")
		p := probe("p")
		d := dur("downAfter")
		tilt := Tilt{Trigger: dur("trigger"), Period: dur("period")}.Tick(tm("tick1"), 0).Tick(tm("tick2"), 0)
		SubjectivelyDown(p, true, d, now)
		SDownSince(p, d, now)
		EvidenceFresh(p, true, d, tm("resumed"), now)
		DownOpinion(p, true, d, tilt, now)
		tilt.Active(now)
		tilt.Until()
		ObjectivelyDown([]Vote{{Node: "a", Down: true, At: tm("vote")}}, rapid.Int().Draw(t, "quorum"), dur("fresh"), now)
		if ok, wait := MayStartFailover(tm("last"), dur("ft"), now); (ok && wait != 0) || wait < 0 {
			t.Fatalf("MayStartFailover ok=%v wait=%v", ok, wait)
		}
		StepTimedOut(tm("since"), dur("ft2"), now)
		SelectReplica(Selection{
			Replicas:         []Candidate{{Addr: "a", Probe: p}, {Addr: "a", Probe: probe("q")}, {Probe: probe("r")}},
			MasterSDownSince: tm("msd"), DownAfter: d, MaxLagBytes: rapid.Int64().Draw(t, "maxLag"),
			MasterOffset: rapid.Int64().Draw(t, "mo"), Now: now,
		})
		in := HealInput{MasterHost: "h", MasterPort: rapid.Int().Draw(t, "port"), Master: probe("m"),
			MasterSDown: rapid.Bool().Draw(t, "msdown"), Host: "H", Port: rapid.Int().Draw(t, "iport"), Instance: p,
			InstanceLastDown: tm("ild"), FailoverTimeout: dur("hft"), Now: now}
		Heal(in)
		ConvertToReplica(in)
		FixReplicaConfig(in)
		NextReconfBatch([]ReconfState{{Addr: "a", Phase: ReconfPhase(rapid.Int().Draw(t, "phase")), SentAt: tm("sent")}}, rapid.Int().Draw(t, "ps"), now)
	})
}

// TestSDownWindow replays an outage of random length against contacts
// every period, recording the clock as the probe does (a failed contact
// sets FailingSince unless it is set already, a valid reply clears it),
// and checks the promise of down-after at every millisecond: an instance
// unreachable for at most down-after minus one period (the longest it can
// take the next contact to see it back) is never down, and one unreachable
// for longer than down-after plus one period is down within that much of
// the fault, and never sooner than down-after.
func TestSDownWindow(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		downAfter := time.Duration(rapid.IntRange(100, 1500).Draw(t, "downAfterMs")) * ms
		period := time.Duration(rapid.IntRange(10, 1000).Draw(t, "periodMs")) * ms
		offset := time.Duration(rapid.Int64Range(0, int64(period)-1).Draw(t, "offset"))
		fault := at(time.Duration(rapid.IntRange(0, 3000).Draw(t, "faultMs")) * ms)
		outage := time.Duration(rapid.IntRange(1, 3000).Draw(t, "outageMs")) * ms
		unreachable := func(x time.Time) bool { return !x.Before(fault) && x.Before(fault.Add(outage)) }

		p := Probe{Since: at(-time.Hour)}
		next := at(offset) // the next contact's start
		var detected time.Time
		end := fault.Add(outage + downAfter + 2*period)
		for now := at(0); now.Before(end); now = now.Add(ms) {
			for !next.After(now) {
				if unreachable(next) {
					if p.FailingSince.IsZero() {
						p.FailingSince = next
					}
					p.LinkUp = false
				} else {
					p.FailingSince, p.LastValidReply, p.LinkUp = time.Time{}, next, true
				}
				next = next.Add(period)
			}
			down, _ := SubjectivelyDown(p, true, downAfter, now)
			if down && outage+period <= downAfter {
				t.Fatalf("down at %v after the fault, unreachable for only %v (down-after %v, period %v)", now.Sub(fault), outage, downAfter, period)
			}
			if down && detected.IsZero() {
				detected = now
			}
		}
		if outage > downAfter+period {
			if detected.IsZero() {
				t.Fatalf("unreachable for %v, never down (down-after %v, period %v)", outage, downAfter, period)
			}
			if late := detected.Sub(fault); late > downAfter+period+ms || late <= downAfter {
				t.Fatalf("down %v after the fault, want within (%v, %v]", late, downAfter, downAfter+period+ms)
			}
		}
	})
}

// TestClocksStoppedStaysUp: a probe whose clocks are stopped is not SDOWN
// at any time, however long after, while nothing new is observed; and one
// that SubjectivelyDown reports down never has its clocks stopped. This is
// what lets a loop that found every clock stopped look again only within
// down-after.
func TestClocksStoppedStaysUp(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		tm := func(label string) time.Time {
			if rapid.Bool().Draw(t, label+"Zero") {
				return time.Time{}
			}
			return at(time.Duration(rapid.IntRange(-100, 100).Draw(t, label)) * time.Second)
		}
		p := Probe{
			Since: tm("since"), LastValidReply: tm("reply"), LinkUp: rapid.Bool().Draw(t, "link"),
			FailingSince: tm("failing"), InfoAt: tm("info"), Role: rapid.SampledFrom([]Role{RoleMaster, RoleReplica, ""}).Draw(t, "role"),
			RoleSince: tm("roleSince"), MasterSince: tm("masterSince"), LastPong: tm("pong"), RebootedAt: tm("rebooted"),
			RebootDownAfter: time.Duration(rapid.IntRange(0, 10).Draw(t, "rebootDownS")) * time.Second,
		}
		expectMaster := rapid.Bool().Draw(t, "expectMaster")
		downAfter := time.Duration(rapid.IntRange(0, 60).Draw(t, "downAfterS")) * time.Second
		now := at(time.Duration(rapid.IntRange(-100, 1000).Draw(t, "now")) * time.Second)
		down, reason := SubjectivelyDown(p, expectMaster, downAfter, now)
		if down && ClocksStopped(p, expectMaster) {
			t.Fatalf("down (%s) with every clock stopped: %+v", reason, p)
		}
	})
}
