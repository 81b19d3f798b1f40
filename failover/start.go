package failover

import "time"

// MayStartFailover applies Sentinel's anti-flap rule: a new failover attempt
// for a master may start only once 2 × failover-timeout has passed since the
// previous attempt started (a zero lastAttemptAt means never attempted). When
// it may not, wait is how much longer to wait ("Next failover delay").
//
// As in Sentinel the gap is measured from when the previous attempt started,
// whatever its outcome, and the boundary is inclusive: at exactly
// 2 × failover-timeout a new attempt may start.
func MayStartFailover(lastAttemptAt time.Time, failoverTimeout time.Duration, now time.Time) (ok bool, wait time.Duration) {
	if lastAttemptAt.IsZero() {
		return true, 0
	}
	gap := satMul(failoverTimeout, 2)
	elapsed := now.Sub(lastAttemptAt)
	if elapsed >= gap {
		return true, 0
	}
	return false, satSub(gap, elapsed)
}

// StepTimedOut reports whether a failover step that began at since has run
// longer than failover-timeout. Sentinel uses this bound twice: before
// promotion (the promoted replica must report role master in time, or the
// failover aborts) and while re-pointing replicas (after it the failover ends
// with a best-effort REPLICAOF to the rest). The comparison is strict, as in
// Sentinel.
func StepTimedOut(since time.Time, failoverTimeout time.Duration, now time.Time) bool {
	return now.Sub(since) > failoverTimeout
}

// OffsetSettleWait bounds how long an automatic failover waits, after ODOWN,
// for the replicas' final offsets (see OffsetsFinal). With INFO polled every
// second while the master is down, two periods are enough on a healthy
// machine; past it the ranking uses what is known.
const OffsetSettleWait = 2 * PingPeriod

// OffsetsFinal reports whether every replica that could be promoted has
// reported INFO since masterDownAt, when the master was found down (its
// SDownSince). Only then are the replication offsets the ranking compares
// final: a replica's INFO read while the master was still streaming to it
// can show it behind a replica read later, and ranking on that would
// promote the one that has less data. The last valid reply is too early a
// mark, since the master takes writes between two PINGs; SDownSince is
// never before the failure, because down-after is at least the PING period.
// Replicas that cannot win anyway (SDOWN, disconnected) are not waited for.
//
// Sentinel has no such rule; it ranks on the last INFO, which its election
// delay usually makes recent. Raftinel's leader needs no election, so it
// waits for the evidence instead.
func OffsetsFinal(masterDownAt time.Time, replicas []Candidate) bool {
	for _, r := range replicas {
		if r.SDown || !r.Probe.LinkUp {
			continue
		}
		if !r.Probe.InfoAt.After(masterDownAt) {
			return false
		}
	}
	return true
}
