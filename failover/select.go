package failover

import (
	"cmp"
	"slices"
	"strconv"
	"time"
)

// Candidate is one replica of the failed master as this node sees it.
type Candidate struct {
	// Addr identifies the replica ("host:port"); it is the final tie-break.
	Addr string
	// Probe is what this node observed of the replica.
	Probe Probe
	// SDown reports whether the replica is SDOWN (or ODOWN).
	SDown bool
}

// Selection is the input of SelectReplica.
type Selection struct {
	// Replicas are the candidates; their order does not matter.
	Replicas []Candidate
	// MasterSDownSince is when the master entered SDOWN; zero if it is not
	// SDOWN (a manual failover of a healthy master). It picks the INFO
	// staleness limit and extends the master-link-down limit.
	MasterSDownSince time.Time
	// DownAfter is the master's down-after setting.
	DownAfter time.Duration
	// MaxLagBytes is Raftinel's lag limit: a replica more than this many
	// bytes behind MasterOffset is excluded. 0 (or less) means no limit.
	MaxLagBytes int64
	// MasterOffset is the master's last known master_repl_offset.
	MasterOffset int64
	// Now is the decision time.
	Now time.Time
}

// Rejection says why a replica cannot be promoted.
type Rejection struct {
	// Addr is the rejected replica's address.
	Addr string
	// Reason is a short, stable, operator-facing text such as "priority 0"
	// or "info older than 5s (age 7s)".
	Reason string
}

// Choice is the outcome of SelectReplica.
type Choice struct {
	// Winner is the replica to promote; meaningful only when OK.
	Winner string
	// OK is false when no replica is eligible (Sentinel's
	// -failover-abort-no-good-slave).
	OK bool
	// Ranked lists every eligible replica, best first; Ranked[0] is Winner.
	Ranked []string
	// Rejected lists every excluded replica with the first rule that
	// excluded it, sorted by address.
	Rejected []Rejection
}

// SelectReplica picks the replica to promote, following Sentinel's
// sentinelSelectSlave plus Raftinel's lag limit.
//
// A replica is excluded, with the reason of the first rule that matches, if:
//   - it is SDOWN ("sdown") or its link is disconnected ("disconnected");
//   - its last valid reply (or, without one, the start of observation) is
//     older than ReplyValidity, 5 s;
//   - its priority is 0;
//   - its INFO is older than 5 s while the master is SDOWN, or 30 s
//     otherwise (never parsed counts as too old);
//   - its INFO does not report role slave (Raftinel only, see below);
//   - its master link has been down longer than the time the master has
//     been SDOWN plus 10 × down-after;
//   - MaxLagBytes > 0 and it is more than MaxLagBytes behind MasterOffset
//     (Raftinel only).
//
// Every limit is exclusive, as in Sentinel: a reply exactly 5 s old still
// qualifies. The eligible replicas are ranked by lower priority, then higher
// replication offset, then run id compared like strcasecmp with an empty run
// id last, then address, so the result never depends on input order.
//
// Deviations: Sentinel promotes any replica record whatever role it reports,
// so an old master that came back and still reports role master could win;
// Raftinel excludes it. The address tie-break replaces Sentinel's dependence
// on its hash-table order, and the lag limit is Raftinel's own setting.
func SelectReplica(in Selection) Choice {
	var ch Choice
	eligible := make([]Candidate, 0, len(in.Replicas))
	for _, c := range in.Replicas {
		if reason := rejectReason(in, c); reason != "" {
			ch.Rejected = append(ch.Rejected, Rejection{Addr: c.Addr, Reason: reason})
			continue
		}
		eligible = append(eligible, c)
	}
	slices.SortFunc(eligible, compareCandidates)
	for _, c := range eligible {
		ch.Ranked = append(ch.Ranked, c.Addr)
	}
	if len(ch.Ranked) > 0 {
		ch.Winner, ch.OK = ch.Ranked[0], true
	}
	slices.SortFunc(ch.Rejected, func(a, b Rejection) int {
		return cmp.Or(cmp.Compare(a.Addr, b.Addr), cmp.Compare(a.Reason, b.Reason))
	})
	return ch
}

// rejectReason returns why c cannot be promoted, or "" if it can.
func rejectReason(in Selection, c Candidate) string {
	p := c.Probe
	if c.SDown {
		return "sdown"
	}
	if !p.LinkUp {
		return "disconnected"
	}
	replyClock := p.orSince(p.LastValidReply)
	if replyClock.IsZero() {
		return "no valid reply yet"
	}
	if d := in.Now.Sub(replyClock); d > ReplyValidity {
		return "no valid reply for " + secs(d)
	}
	if p.Priority == 0 {
		return "priority 0"
	}
	masterSDown := !in.MasterSDownSince.IsZero()
	infoLimit := InfoValidity
	if masterSDown {
		// While the master is SDOWN replicas are polled every second, so
		// fresher INFO can be demanded.
		infoLimit = InfoValidityMasterDown
	}
	if p.InfoAt.IsZero() {
		return "no info yet"
	}
	if d := in.Now.Sub(p.InfoAt); d > infoLimit {
		return "info older than " + secs(infoLimit) + " (age " + secs(d) + ")"
	}
	if p.Role != RoleReplica {
		role := string(p.Role)
		if role == "" {
			role = "unknown"
		}
		return "role is not slave (" + role + ")"
	}
	// A replica whose link has been down much longer than the master has
	// been failing holds data older than the outage itself.
	var masterDownFor time.Duration
	if masterSDown {
		masterDownFor = max(in.Now.Sub(in.MasterSDownSince), 0)
	}
	linkLimit := satAdd(masterDownFor, satMul(in.DownAfter, LinkDownFactor))
	if d := p.linkDownFor(); d > linkLimit {
		return "master link down too long (" + secs(d) + ", limit " + secs(linkLimit) + ")"
	}
	if in.MaxLagBytes > 0 && in.MasterOffset > p.Offset {
		// The difference of two int64 always fits in a uint64.
		lag := uint64(in.MasterOffset) - uint64(p.Offset)
		if lag > uint64(in.MaxLagBytes) {
			return "lag " + strconv.FormatUint(lag, 10) + " bytes exceeds max-lag " +
				strconv.FormatInt(in.MaxLagBytes, 10)
		}
	}
	return ""
}

// compareCandidates orders eligible replicas best first.
func compareCandidates(a, b Candidate) int {
	if c := cmp.Compare(a.Probe.Priority, b.Probe.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Probe.Offset, a.Probe.Offset); c != 0 {
		return c
	}
	if c := compareRunID(a.Probe.RunID, b.Probe.RunID); c != 0 {
		return c
	}
	return cmp.Compare(a.Addr, b.Addr)
}

// compareRunID orders run ids like Sentinel: case-insensitively, with a
// missing run id (old Redis versions) after every present one.
func compareRunID(a, b string) int {
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	return compareFold(a, b)
}
