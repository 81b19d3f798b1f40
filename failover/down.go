package failover

import (
	"sort"
	"time"
)

// SubjectivelyDown reports whether this node should consider the instance
// down (SDOWN), and why. expectMaster says whether the instance is recorded
// as the group's master. An instance is SDOWN when one of these holds
// (Sentinel §4.4, with Sentinel's strict ">" comparisons):
//
//  1. it has been unreachable for longer than downAfter, counted from
//     FailingSince: the first contact after the last valid reply that got
//     no valid reply (a PING unanswered or answered with an error, a
//     refused, timed-out or broken connection). An instance whose latest
//     contact was answered validly has no clock and is not down;
//  2. a recorded master has reported role slave for longer than
//     downAfter + RoleMismatchGrace (20 s), counted from RoleSince (or Since);
//  3. a recorded master restarted and has not answered PONG since, for
//     longer than master-reboot-down-after-period (rebootDown).
//
// Deviation from Sentinel: for a link it cannot connect, Sentinel counts
// from the last valid reply, up to a ping period before the fault, so an
// instance that restarts in less than down-after can still be declared
// down. Here the clock never starts before the first failed contact, so an
// instance unreachable for less than down-after is never down, and one
// unreachable for longer is down within down-after plus one ping period of
// the fault.
//
// A Probe with neither Since nor LastValidReply has no observation window and
// is never judged down: without evidence a node must not vote a master down.
func SubjectivelyDown(p Probe, expectMaster bool, downAfter time.Duration, now time.Time) (down bool, reason string) {
	return sdown(p, expectMaster, downAfter, time.Time{}, now)
}

// sdown is SubjectivelyDown with every clock started no earlier than
// notBefore, which is how evidence gathered before a pause is discarded.
func sdown(p Probe, expectMaster bool, downAfter time.Duration, notBefore, now time.Time) (bool, string) {
	if p.orSince(p.LastValidReply).IsZero() {
		return false, "not probed yet"
	}
	if clock, ok := p.sdownClock(); ok {
		if clock.Before(notBefore) {
			clock = notBefore
		}
		if silent := now.Sub(clock); silent > downAfter {
			return true, "no valid reply for " + secs(silent) + " (down-after " + secs(downAfter) + ")"
		}
	}
	if expectMaster && !p.InfoAt.IsZero() && p.Role == RoleReplica {
		roleClock := p.orSince(p.RoleSince)
		if p.MasterSince.After(roleClock) {
			roleClock = p.MasterSince
		}
		if !roleClock.IsZero() {
			if roleClock.Before(notBefore) {
				roleClock = notBefore
			}
			limit := satAdd(downAfter, RoleMismatchGrace)
			if d := now.Sub(roleClock); d > limit {
				return true, "master reports role slave for " + secs(d) + " (limit " + secs(limit) + ")"
			}
		}
	}
	if expectMaster {
		if down, reason := rebootDown(p, notBefore, now); down {
			return true, reason
		}
	}
	return false, ""
}

// sdownClock is where rule 1 counts from: the first failed contact since
// the last valid reply; ok is false when the latest contact was answered
// validly (or none was recorded yet).
func (p Probe) sdownClock() (time.Time, bool) {
	return p.FailingSince, !p.FailingSince.IsZero()
}

// SDownSince is when an instance that SubjectivelyDown reports down entered
// SDOWN: down-after past rule 1's clock, or for the reboot rule the period
// past the reboot, or else, for the role rule, down-after +
// RoleMismatchGrace past the role change.
func SDownSince(p Probe, downAfter time.Duration, now time.Time) time.Time {
	if clock, ok := p.sdownClock(); ok && now.Sub(clock) > downAfter {
		return clock.Add(downAfter)
	}
	if since, ok := rebootDownSince(p, now); ok {
		return since
	}
	roleClock := p.orSince(p.RoleSince)
	if p.MasterSince.After(roleClock) {
		roleClock = p.MasterSince
	}
	return roleClock.Add(satAdd(downAfter, RoleMismatchGrace))
}

// ClocksStopped reports that none of SubjectivelyDown's clocks runs for p:
// its latest contact was answered validly, and, for a recorded master,
// INFO reports no replica role and no restart awaits its PONG. Such an
// instance stays up until one of them starts, and then for at least
// down-after (or, after a restart, master-reboot-down-after-period): a
// caller that looks again within that time misses no SDOWN. Only rule 1's
// clock starts without an INFO, at a PING that goes unanswered.
func ClocksStopped(p Probe, expectMaster bool) bool {
	if !p.FailingSince.IsZero() {
		return false
	}
	if !expectMaster {
		return true
	}
	return !(!p.InfoAt.IsZero() && p.Role == RoleReplica) && !MasterRebooting(p)
}

// EvidenceFresh reports whether p would still be SDOWN if nothing observed
// before resumedAt counted, i.e. whether the down evidence was gathered after
// this node's last pause.
//
// The rule: after a pause (a TILT trigger at resumedAt) every SDOWN clock
// restarts at resumedAt. A silent instance may be voted down only once this
// node has been probing it, without a valid reply, for more than a full
// down-after after it resumed; a recorded master reporting role slave only
// once that has held for down-after + 20 s after the resume. The reason is
// that a paused process sends no PINGs and reads no replies, so the silence
// it "saw" while stopped says nothing about the instance. A zero resumedAt
// (never paused) keeps the plain SubjectivelyDown result.
func EvidenceFresh(p Probe, expectMaster bool, downAfter time.Duration, resumedAt, now time.Time) bool {
	down, _ := sdown(p, expectMaster, downAfter, resumedAt, now)
	return down
}

// DownOpinion is the SDOWN opinion this node should publish as its vote: it
// is SubjectivelyDown, except that a node in TILT never says down (Sentinel
// answers 0 to is-master-down-by-addr in TILT) and, after TILT, a down
// opinion needs evidence gathered after the pause (EvidenceFresh with
// resumedAt = tilt.EnteredAt). Sentinel itself only waits out the tilt
// period; the extra freshness rule matters when down-after exceeds it.
func DownOpinion(p Probe, expectMaster bool, downAfter time.Duration, tilt Tilt, now time.Time) (down bool, reason string) {
	if tilt.Active(now) {
		return false, "tilt since " + tilt.EnteredAt.UTC().Format(time.RFC3339Nano)
	}
	down, reason = sdown(p, expectMaster, downAfter, time.Time{}, now)
	if !down {
		return false, reason
	}
	if !tilt.EnteredAt.IsZero() && !EvidenceFresh(p, expectMaster, downAfter, tilt.EnteredAt, now) {
		return false, "down evidence predates the pause detected at " + tilt.EnteredAt.UTC().Format(time.RFC3339Nano)
	}
	return true, reason
}

// Vote is one node's committed SDOWN opinion of one instance.
type Vote struct {
	// Node is the voting node's id; votes with an empty id are ignored.
	Node string
	// Down is the opinion.
	Down bool
	// At is when the opinion was last asserted.
	At time.Time
}

// ObjectivelyDown counts the distinct nodes whose latest vote is down and
// fresh (now - At <= freshFor) and reports ODOWN when that count reaches
// quorum. A quorum below 1 is never down.
//
// Only each node's latest vote counts, so a node that said down and then up
// is up; for two votes of one node at the same instant, up wins, because a
// spurious ODOWN costs a failover. Deviation: Sentinel also requires the
// judging sentinel itself to hold the master SDOWN; in Raftinel the leader
// only counts committed votes, its own included.
func ObjectivelyDown(votes []Vote, quorum int, freshFor time.Duration, now time.Time) (down bool, count int) {
	count = len(DownVoters(votes, freshFor, now))
	return quorum >= 1 && count >= quorum, count
}

// DownVoters lists, sorted, the nodes ObjectivelyDown counts, for events and
// status output.
func DownVoters(votes []Vote, freshFor time.Duration, now time.Time) []string {
	latest := make(map[string]Vote, len(votes))
	for _, v := range votes {
		if v.Node == "" {
			continue
		}
		old, seen := latest[v.Node]
		if !seen || v.At.After(old.At) || (v.At.Equal(old.At) && !v.Down) {
			latest[v.Node] = v
		}
	}
	var out []string
	for n, v := range latest {
		if v.Down && now.Sub(v.At) <= freshFor {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
