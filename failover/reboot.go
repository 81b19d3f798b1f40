package failover

import "time"

// MasterRebooting is Sentinel's master_reboot flag for a recorded master's
// probe: master-reboot-down-after-period is set, the run id changed
// (RebootedAt) and no PONG has come since. Sentinel sets the flag on
// +reboot and clears it at the first PONG; LOADING and MASTERDOWN replies,
// valid as they are for rule 1, do not clear it.
func MasterRebooting(p Probe) bool {
	return p.RebootDownAfter > 0 && !p.RebootedAt.IsZero() && !p.LastPong.After(p.RebootedAt)
}

// rebootDown is SubjectivelyDown's rule 3 for a recorded master: while
// MasterRebooting holds, the master is SDOWN once more than
// RebootDownAfter has passed since the reboot was seen, counted from no
// earlier than notBefore (see EvidenceFresh). A master restarting with a
// large dataset answers -LOADING, a valid reply, for as long as loading
// takes; this rule bounds that wait.
func rebootDown(p Probe, notBefore, now time.Time) (bool, string) {
	if !MasterRebooting(p) {
		return false, ""
	}
	clock := p.RebootedAt
	if clock.Before(notBefore) {
		clock = notBefore
	}
	if d := now.Sub(clock); d > p.RebootDownAfter {
		return true, "no PONG for " + secs(d) + " since the master restarted (master-reboot-down-after-period " +
			secs(p.RebootDownAfter) + ")"
	}
	return false, ""
}

// rebootDownSince is when rule 3 made p SDOWN, if it did.
func rebootDownSince(p Probe, now time.Time) (time.Time, bool) {
	if !MasterRebooting(p) || now.Sub(p.RebootedAt) <= p.RebootDownAfter {
		return time.Time{}, false
	}
	return p.RebootedAt.Add(p.RebootDownAfter), true
}
