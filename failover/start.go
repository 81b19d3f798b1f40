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
