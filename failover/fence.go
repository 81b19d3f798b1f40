package failover

import (
	"fmt"
	"time"
)

// FenceSlack is what Redis adds to min-replicas-max-lag before an isolated
// master refuses writes: it counts the lag in whole seconds (a replica
// whose last acknowledgement was at t is good until floor(t) + lag + 1),
// and it recounts its good replicas once a second (replicationCron), so
// the count drops at most lag + 2 s after the last acknowledgement. A
// quarter of a second more covers Redis's timer and our clock reads.
const FenceSlack = 2*time.Second + 250*time.Millisecond

// FenceReplica is one replica as the master's INFO lists it.
type FenceReplica struct {
	Addr   string
	Online bool
	// Lag is INFO's lag: whole seconds since its last acknowledgement.
	Lag int64
}

// FenceInput is what the leader knows when it decides the master's fence.
type FenceInput struct {
	// On is the master's fence setting.
	On bool
	// LagS is fence-lag in whole seconds (min-replicas-max-lag).
	LagS int64
	// Replicas are the replicas the master lists in INFO now.
	Replicas []FenceReplica
	// Decided reports whether a fence was ever decided for this master
	// address; MinReplicas and MaxLagS are that decision.
	Decided     bool
	MinReplicas uint32
	MaxLagS     int64
	// Unsteady reports that the leader's probes of the master failed
	// recently (FenceSteadyFor): its link may be flapping, so that its
	// replicas fall behind because of the same link the coordinators lose,
	// not on their own. The requirement is then never lowered.
	Unsteady bool
}

// FenceSteadyFor is how long the master must have answered every probe
// before its fence may be lowered. A link that flaps (cut and healed every
// half second) lets the leader's reads through now and then while the
// replicas' acknowledgements stall on the same link; lowering the count
// then would keep the old master writable until its failover, with every
// write it takes lost.
const FenceSteadyFor = 5 * time.Second

// FenceDecision is the fence the master should have.
type FenceDecision struct {
	// Change is true when the decision differs from the one in force.
	Change      bool
	MinReplicas uint32
	MaxLagS     int64
	Reason      string
}

// DecideFence chooses min-replicas-to-write for a master the leader
// reaches: the number of its replicas that Redis itself counts as good
// (online, lag at most fence-lag). Requiring every good replica means that
// as soon as any one of them stops acknowledging (the candidate is
// detached by a failover, or is cut off with the coordinators), the master
// refuses writes within fence-lag + FenceSlack, so a replica left on the
// master's side of a partition cannot keep it writable. A replica that
// died or fell behind while the leader still reaches the master is
// counted out (the requirement is lowered, so the master stays writable)
// and counted in again once it is back, provided the leader's probes of
// the master have not failed within FenceSteadyFor (Unsteady): a master
// whose own link flaps keeps its fence. With no good replica the
// requirement is 0: there is nothing to lose writes to and nobody to
// promote. Fence no keeps 0, once a fence was ever set.
func DecideFence(in FenceInput) FenceDecision {
	if !in.On {
		if !in.Decided || in.MinReplicas == 0 {
			return FenceDecision{MinReplicas: 0, MaxLagS: in.MaxLagS, Reason: "fence no"}
		}
		return FenceDecision{Change: true, MinReplicas: 0, MaxLagS: in.LagS, Reason: "fence no"}
	}
	good, bad := 0, 0
	for _, r := range in.Replicas {
		if r.Online && r.Lag <= in.LagS {
			good++
		} else {
			bad++
		}
	}
	d := FenceDecision{MinReplicas: uint32(good), MaxLagS: in.LagS}
	switch {
	case good == 0:
		d.Reason = "no replica acknowledges within fence-lag"
	case bad > 0:
		d.Reason = fmt.Sprintf("%d replicas acknowledge within fence-lag, %d do not", good, bad)
	default:
		d.Reason = fmt.Sprintf("every replica (%d) acknowledges within fence-lag", good)
	}
	if in.Unsteady && in.Decided && d.MinReplicas < in.MinReplicas {
		d.Reason = fmt.Sprintf("%s; kept at %d: the master's link failed within the last %v", d.Reason, in.MinReplicas, FenceSteadyFor)
		d.MinReplicas = in.MinReplicas
	}
	d.Change = !in.Decided || in.MinReplicas != d.MinReplicas || in.MaxLagS != d.MaxLagS
	return d
}

// The leader reads a fenced master's replication state at most
// FenceReadMax apart, and FenceReadMin apart while Redis could count a
// replica out at any moment (see NextFenceRead).
const (
	FenceReadMin = 250 * time.Millisecond
	FenceReadMax = time.Second
)

// NextFenceRead is how long after a read that found in (and decided d)
// the leader may wait before reading the master again, such that a
// replica Redis counts out, which makes the master refuse writes until the
// fence is lowered, is seen at most FenceReadMin after Redis can first
// have counted it out.
//
// Redis counts a replica good while unixtime - last ack <= max-lag, and
// INFO's lag is that difference, both in whole seconds of the master's
// clock: a replica with lag L at a read at T cannot be counted out before
// the master's clock reaches its second floor(T) + max-lag + 1 - L, so not
// before T + (max-lag - L) s of the master's own time (floor(T) > T - 1),
// and its once-a-second recount (replicationCron) comes at or after that.
// Reading again then finds its lag at max-lag or more (unless it
// acknowledged meanwhile), which makes the reads FenceReadMin apart until
// it acknowledges or is counted out. With fence-lag 2 and acknowledgements
// once a second, lags read 0 or 1: reads 1 s apart. Only replicas the
// fence counts matter: one already counted out cannot make the master
// refuse more. A decision still to be applied (d.Change), or no fence (a
// requirement of 0 cannot refuse anything), give FenceReadMin and
// FenceReadMax. A replica that crashes closes its connection and the
// master drops it at once, without a lag to foresee: the leader's probe of
// the replica sees the same closed connection, and the leader reads the
// master at once on that (orchestrator), not at this period.
func NextFenceRead(in FenceInput, d FenceDecision) time.Duration {
	if d.Change {
		return FenceReadMin
	}
	if d.MinReplicas == 0 {
		return FenceReadMax
	}
	worst := int64(0)
	for _, r := range in.Replicas {
		if r.Online && r.Lag <= d.MaxLagS {
			worst = max(worst, r.Lag)
		}
	}
	wait := time.Duration(d.MaxLagS-worst) * time.Second
	return min(max(wait, FenceReadMin), FenceReadMax)
}

// OldMasterReach is what the leader found when it tried to demote the old
// master before announcing a promotion.
type OldMasterReach int

const (
	// OldMasterUnknown: no answer (a timeout, a reset, a route error):
	// the old master may be alive on the far side of a partition.
	OldMasterUnknown OldMasterReach = iota
	// OldMasterRefused: the connection was refused on a direct path, so
	// no process listens there: it cannot acknowledge anything.
	OldMasterRefused
	// OldMasterDemoted: it answered REPLICAOF the candidate; it is a
	// replica now and refuses writes.
	OldMasterDemoted
)

// FenceWaitInput describes a failover whose candidate reports role master
// (detached from the old master at DetachedAt), before its announcement.
type FenceWaitInput struct {
	On bool
	// MinReplicas is the fence in force on the old master (0 if none was
	// ever set); LagS its min-replicas-max-lag.
	MinReplicas uint32
	LagS        int64
	// Others is how many of the old master's replicas, besides the
	// candidate, may still be attached to it.
	Others     int
	Reach      OldMasterReach
	DetachedAt time.Time
}

// FenceWaitDecision says whether to hold the announcement, and until when.
type FenceWaitDecision struct {
	Wait   bool
	Until  time.Time
	Reason string
	// Proven is false when the old master may keep enough replicas to stay
	// writable whatever the wait (its requirement was lowered to a count
	// the replicas out of the leader's reach still meet).
	Proven bool
}

// DecideFenceWait decides how long a promotion waits before it is
// announced: until the old master can no longer acknowledge writes. No
// wait when fencing is off, when no fence was set (a master without
// replicas has nothing to fence with), when the old master's process is
// gone (refused), or when it was demoted. Otherwise the candidate's
// detachment at DetachedAt was its last acknowledgement to the old master,
// so the old master's good-replica count falls below MinReplicas by
// DetachedAt + lag + FenceSlack, provided the other replicas cannot meet
// the requirement alone (MinReplicas > Others).
func DecideFenceWait(in FenceWaitInput) FenceWaitDecision {
	switch {
	case !in.On:
		return FenceWaitDecision{Reason: "fence no"}
	case in.MinReplicas == 0:
		return FenceWaitDecision{Reason: "the old master had no fence (no replica acknowledged within fence-lag)"}
	case in.Reach == OldMasterRefused:
		return FenceWaitDecision{Reason: "the old master refused the connection: its process is gone", Proven: true}
	case in.Reach == OldMasterDemoted:
		return FenceWaitDecision{Reason: "the old master was demoted", Proven: true}
	}
	lag := time.Duration(in.LagS) * time.Second
	d := FenceWaitDecision{Wait: true, Until: in.DetachedAt.Add(lag + FenceSlack), Proven: int(in.MinReplicas) > in.Others}
	d.Reason = fmt.Sprintf("old master unreachable: it refuses writes once fewer than %d replicas acknowledged within %ds (candidate detached; %s)",
		in.MinReplicas, in.LagS, (lag + FenceSlack).String())
	if !d.Proven {
		d.Reason += fmt.Sprintf("; unproven: %d other replicas may still keep it writable", in.Others)
	}
	return d
}
