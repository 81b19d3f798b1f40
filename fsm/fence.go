package fsm

import (
	"fmt"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Fence events, Raftinel's own.
const (
	// EventFenceSet: the leader decided a new min-replicas-to-write for the
	// master (applied with CONFIG SET after the commit).
	EventFenceSet = "+fence-set"
	// EventFenceWait: a failover waits, before announcing its promotion,
	// until the old master can no longer acknowledge writes.
	EventFenceWait = "+fence-wait"
)

// fenceSet records the leader's fence decision for the current master.
func fenceSet(r *recorder, c *fsmv1.FenceSet) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	if c.GetAddress() != m.GetAddress() {
		return errorf(FailedPrecondition, "fence for %s: %s is the master of %q", c.GetAddress(), m.GetAddress(), m.GetName())
	}
	if m.GetFailover() != nil {
		return errorf(FailedPrecondition, "fence of %q: a failover is in progress", m.GetName())
	}
	if c.GetMaxLagS() < 1 || c.GetMaxLagS() > int64(MaxFenceLag.Seconds()) {
		return errorf(Invalid, "fence max lag %d s: want 1 to %d", c.GetMaxLagS(), int64(MaxFenceLag.Seconds()))
	}
	if n := c.GetMinReplicas(); n > 0 && !FenceOn(m.GetSettings()) {
		return errorf(FailedPrecondition, "fence of %q is off (fence no): only 0 replicas may be required", m.GetName())
	}
	m.Fence = &fsmv1.FenceState{Address: c.GetAddress(), MinReplicas: c.GetMinReplicas(), MaxLagS: c.GetMaxLagS(),
		AtUnixNanos: r.now, Reason: c.GetReason()}
	r.add(m, EventFenceSet, fmt.Sprintf("%s min-replicas-to-write %d min-replicas-max-lag %d", masterDetail(m),
		c.GetMinReplicas(), c.GetMaxLagS()), "")
	return nil
}

// fenceWaitStarted records the wait of a failover whose candidate reports
// role master, before Promoted. It is recorded once per failover.
func fenceWaitStarted(r *recorder, c *fsmv1.FenceWaitStarted) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	f := m.GetFailover()
	if f.GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING {
		return errorf(FailedPrecondition, "no failover of %q is promoting", m.GetName())
	}
	if f.GetFenceWait() != nil {
		return errorf(FailedPrecondition, "the failover of %q already waits for the fence", m.GetName())
	}
	if c.GetUntilUnixNanos() <= r.now {
		return errorf(Invalid, "fence wait until %d: want a time after %d", c.GetUntilUnixNanos(), r.now)
	}
	f.FenceWait = &fsmv1.FenceWait{UntilUnixNanos: c.GetUntilUnixNanos(), Reason: c.GetReason(), StartedAtUnixNanos: r.now}
	r.add(m, EventFenceWait, fmt.Sprintf("%s #wait-ms %d %s", masterDetail(m), (c.GetUntilUnixNanos()-r.now)/1e6, c.GetReason()), "")
	return nil
}
