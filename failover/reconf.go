package failover

import (
	"cmp"
	"slices"
	"time"
)

// ReconfPhase is where one replica stands in the re-pointing step of a
// failover (Sentinel's RECONF flags).
type ReconfPhase int

// The phases. A replica moves Pending -> Sent when REPLICAOF is sent,
// Sent -> InProgress when its INFO names the new master, and
// InProgress -> Done when its master link is up.
const (
	ReconfPending ReconfPhase = iota
	ReconfSent
	ReconfInProgress
	ReconfDone
)

// String returns a lower-case name for logs.
func (p ReconfPhase) String() string {
	switch p {
	case ReconfPending:
		return "pending"
	case ReconfSent:
		return "sent"
	case ReconfInProgress:
		return "in-progress"
	case ReconfDone:
		return "done"
	}
	return "unknown"
}

// ReconfState is one replica to re-point at the new master. The promoted
// replica is not listed.
type ReconfState struct {
	Addr  string
	Phase ReconfPhase
	// SentAt is when REPLICAOF was sent; used in ReconfSent.
	SentAt time.Time
	// Disconnected: the link to the replica is down, so nothing is sent to
	// it now.
	Disconnected bool
	// SDown: the replica is SDOWN; it does not hold up the end of the
	// failover.
	SDown bool
}

// ReconfPlan is what to do next while re-pointing replicas.
type ReconfPlan struct {
	// TimedOut lists replicas that have been in ReconfSent for longer than
	// ReconfTimeout: record them as done (-slave-reconf-sent-timeout).
	// Topology repair fixes them later if they did not follow.
	TimedOut []string
	// Send lists replicas to send REPLICAOF now, in address order.
	Send []string
	// Finished: after recording TimedOut, every replica that is not SDOWN
	// is done, so the failover can end (+failover-end).
	Finished bool
}

// NextReconfBatch decides which replicas to send REPLICAOF now so that at
// most parallelSyncs are in flight (Sent or InProgress), taking pending,
// connected replicas in address order. A parallelSyncs below 1 is treated as
// 1, since it would otherwise never finish.
//
// Deviation: Sentinel applies the 10 s slave-reconf timeout only while it
// looks for a free slot, so with every slot taken a stuck replica keeps its
// slot until failover-timeout; and the freed slot is used only on its next
// tick. Here timed-out replicas free their slots at once. Sentinel's order
// is its hash-table order; address order makes the plan deterministic. An
// address listed twice is considered once, in its most advanced phase.
func NextReconfBatch(states []ReconfState, parallelSyncs int, now time.Time) ReconfPlan {
	parallelSyncs = max(parallelSyncs, 1)
	sorted := slices.Clone(states)
	slices.SortFunc(sorted, func(a, b ReconfState) int {
		return cmp.Or(
			cmp.Compare(a.Addr, b.Addr),
			cmp.Compare(b.Phase, a.Phase),
			b.SentAt.Compare(a.SentAt),
			compareBool(a.Disconnected, b.Disconnected),
			compareBool(a.SDown, b.SDown),
		)
	})
	sorted = slices.CompactFunc(sorted, func(a, b ReconfState) bool { return a.Addr == b.Addr })

	var plan ReconfPlan
	inFlight := 0
	for i := range sorted {
		s := &sorted[i]
		if s.Phase == ReconfSent && now.Sub(s.SentAt) > ReconfTimeout {
			plan.TimedOut = append(plan.TimedOut, s.Addr)
			s.Phase = ReconfDone
		}
		if s.Phase == ReconfSent || s.Phase == ReconfInProgress {
			inFlight++
		}
	}
	for i := range sorted {
		s := &sorted[i]
		if inFlight >= parallelSyncs {
			break
		}
		if s.Phase != ReconfPending || s.Disconnected {
			continue
		}
		plan.Send = append(plan.Send, s.Addr)
		s.Phase = ReconfSent
		inFlight++
	}
	plan.Finished = true
	for _, s := range sorted {
		if s.Phase != ReconfDone && !s.SDown {
			plan.Finished = false
			break
		}
	}
	return plan
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
