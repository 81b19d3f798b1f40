package failover

import (
	"strconv"
	"strings"
	"time"
)

// Codes of the conditions Explain reports; they are stable, for scripts.
const (
	// BlockNoLeader: no leader could be reached; nothing can be committed.
	// Explain itself never reports it (it needs no leader to run): the
	// server adds it when it answers from a follower's own view.
	BlockNoLeader = "no-leader"
	// BlockTilt: the leader is in TILT and takes no failover action.
	BlockTilt = "tilt"
	// BlockInProgress: a failover of the master is already running.
	BlockInProgress = "failover-in-progress"
	// BlockNotODown: fewer fresh down votes than the quorum.
	BlockNotODown = "not-odown"
	// BlockMaintenance: the master is in maintenance.
	BlockMaintenance = "maintenance"
	// BlockAntiFlap: the previous attempt began less than
	// 2 x failover-timeout ago.
	BlockAntiFlap = "anti-flap"
	// BlockOffsetsSettling: the leader waits (at most OffsetSettleWait
	// after ODOWN) for the replicas' final offsets.
	BlockOffsetsSettling = "offsets-settling"
	// BlockNoGoodReplica: no replica passes the selection rules.
	BlockNoGoodReplica = "no-good-replica"
	// BlockMasterDown: a coordinated manual failover needs the master up.
	BlockMasterDown = "master-down"
	// BlockReplicaRejected: the replica named for a manual failover fails
	// the selection rules.
	BlockReplicaRejected = "replica-rejected"
	// BlockUnknownReplica: the replica named is not a known replica.
	BlockUnknownReplica = "unknown-replica"
	// BlockTimeoutTooLong: a coordinated failover's catch-up time exceeds
	// failover-timeout.
	BlockTimeoutTooLong = "timeout-too-long"
)

// Actions Explain decides on.
const (
	// ActionNone: nothing to do, the master is not objectively down.
	ActionNone = "none"
	// ActionFailover: a failover begins now (for a plan: the request
	// would be accepted).
	ActionFailover = "failover"
	// ActionContinue: a failover is in progress and is driven on.
	ActionContinue = "continue"
	// ActionBlocked: a failover is due or asked for, and Blocking[0]
	// holds it back.
	ActionBlocked = "blocked"
)

// ExplainVote is one node's committed vote, as Explain reads it.
type ExplainVote struct {
	Node string
	// Address is the master instance the vote is about.
	Address string
	Down    bool
	At      time.Time
	Reason  string
}

// ManualRequest is the manual failover Explain plans: the replica named
// (empty: the best), forced (a plain promotion) or coordinated with this
// catch-up time.
type ManualRequest struct {
	To       string
	Force    bool
	Handover time.Duration
}

// ExplainInput is everything the leader's decision for one master depends
// on, read at one moment.
type ExplainInput struct {
	Now time.Time
	// MasterAddr is the current master instance.
	MasterAddr string
	// Tilt is the explaining node's TILT detector.
	Tilt Tilt
	// Votes are the committed votes, whatever instance they are about.
	Votes  []ExplainVote
	Quorum int
	// VoteFreshness is how old a down vote may be and still count.
	VoteFreshness time.Duration
	// ODownSince is when the committed state says the master became
	// ODOWN; zero when it is not.
	ODownSince      time.Time
	Maintenance     bool
	FailoverTimeout time.Duration
	// LastFailoverAt is when the last attempt began; zero for never.
	LastFailoverAt time.Time
	// InProgress describes the open failover journal ("" when none), as
	// "phase, candidate" text for the summary.
	InProgress string
	// Selection is the replica ranking's input, as the leader builds it.
	Selection Selection
	// MasterDownAt is when the master went down by the leader's own probe
	// (its SDownSince), or the ODOWN time when the leader does not hold it
	// down itself; zero when neither. OffsetsFinal counts from it.
	MasterDownAt time.Time
	// MasterSDown: the explaining node holds the master SDOWN itself.
	MasterSDown bool
	// Manual, when set, plans that manual failover instead of explaining
	// the automatic decision.
	Manual *ManualRequest
}

// Condition is one reason a failover does not happen now.
type Condition struct {
	Code   string
	Detail string
}

// VoteLine is one vote as the leader counts it.
type VoteLine struct {
	ExplainVote
	// Counted: down, about the current master, and fresh.
	Counted bool
	Age     time.Duration
}

// ReplicaLine is one replica in the ranking.
type ReplicaLine struct {
	Addr     string
	Eligible bool
	// Rank is 1 for the best eligible replica; 0 when excluded.
	Rank     int
	Reason   string
	Priority int
	Offset   int64
	Lag      int64
	RunID    string
}

// Explanation is what the leader would do now for one master, and why.
type Explanation struct {
	Action  string
	Summary string
	// Blocking lists every condition holding a failover back, the
	// deciding one first.
	Blocking []Condition
	// Notes are delays that refuse nothing (TILT for a manual failover).
	Notes     []string
	Votes     []VoteLine
	DownVotes int
	Quorum    int
	ODown     bool
	Tilt      bool
	TiltUntil time.Time
	// AntiFlapWait is how long the anti-flap rule still holds automatic
	// failovers back; 0 when it does not.
	AntiFlapWait time.Duration
	Replicas     []ReplicaLine
	// Candidate is the replica that would be promoted; "" when none.
	Candidate   string
	Coordinated bool
}

// Explain says what the leader does now for one master, following the
// leader's own order of checks: TILT, a failover in progress, ODOWN from
// fresh votes, maintenance, the anti-flap wait, the wait for final
// offsets, and the replica selection. Every condition that holds is
// listed, so an operator sees all that stands in the way, the deciding one
// first. With in.Manual set it plans that manual failover instead, with the
// checks a manual request gets (no ODOWN and no anti-flap wait needed;
// maintenance refuses it unless forced; a coordinated one needs the master
// up and a catch-up time within failover-timeout).
//
// The empty-restart failover (EmptyRestart) is not explained here: it
// needs the leader's own INFO of every replica.
func Explain(in ExplainInput) Explanation {
	ex := Explanation{Quorum: in.Quorum, Tilt: in.Tilt.Active(in.Now)}
	if ex.Tilt {
		ex.TiltUntil = in.Tilt.Until()
	}
	var counted []Vote
	for _, v := range in.Votes {
		line := VoteLine{ExplainVote: v, Age: in.Now.Sub(v.At)}
		line.Counted = v.Down && v.Address == in.MasterAddr && line.Age <= in.VoteFreshness
		ex.Votes = append(ex.Votes, line)
		if v.Address == in.MasterAddr {
			counted = append(counted, Vote{Node: v.Node, Down: v.Down, At: v.At})
		}
	}
	ex.ODown, ex.DownVotes = ObjectivelyDown(counted, in.Quorum, in.VoteFreshness, in.Now)
	// The ranking, whatever else holds: it answers "who would it be".
	choice := SelectReplica(in.Selection)
	ex.Replicas = replicaLines(in.Selection, choice)
	if choice.OK {
		ex.Candidate = choice.Winner
	}
	if ok, wait := MayStartFailover(in.LastFailoverAt, in.FailoverTimeout, in.Now); !ok {
		ex.AntiFlapWait = wait
	}
	if in.Manual != nil {
		planManual(in, &ex, choice)
		return ex
	}

	block := func(code, detail string) { ex.Blocking = append(ex.Blocking, Condition{code, detail}) }
	if ex.Tilt {
		block(BlockTilt, "the leader is in TILT until "+stamp(ex.TiltUntil)+": it takes no failover action")
	}
	if in.InProgress != "" {
		ex.Action = ActionContinue
		if ex.Tilt {
			ex.Action = ActionBlocked
		}
		ex.Summary = "a failover is in progress (" + in.InProgress + ")"
		return ex
	}
	if !ex.ODown {
		block(BlockNotODown, strconv.Itoa(ex.DownVotes)+" of "+strconv.Itoa(in.Quorum)+
			" fresh down votes (a vote counts for "+secs(in.VoteFreshness)+")")
	}
	if in.Maintenance {
		block(BlockMaintenance, "the master is in maintenance: no automatic failover (set maintenance no to resume)")
	}
	if ex.AntiFlapWait > 0 {
		block(BlockAntiFlap, "the last attempt began at "+stamp(in.LastFailoverAt)+"; the next may begin in "+
			secs(ex.AntiFlapWait)+" (2 x failover-timeout)")
	}
	if ex.ODown && !offsetsSettled(in) {
		block(BlockOffsetsSettling, "waiting, at most "+secs(OffsetSettleWait)+" after ODOWN, for every promotable replica to report INFO since the master went down")
	}
	if !choice.OK {
		block(BlockNoGoodReplica, noGoodReplica(in.Selection, choice))
	}
	switch {
	case len(ex.Blocking) == 0:
		ex.Action = ActionFailover
		ex.Summary = "the master is objectively down: a failover to " + ex.Candidate + " begins now"
	case !ex.ODown && !ex.Tilt:
		ex.Action = ActionNone
		ex.Summary = "the master is not objectively down: nothing to do"
		if ex.DownVotes > 0 {
			ex.Summary = "the master is not objectively down yet: no failover"
		}
	default:
		ex.Action = ActionBlocked
		ex.Summary = "no failover now: " + ex.Blocking[0].Detail
	}
	return ex
}

// planManual fills ex for a manual request, in BeginManual's order.
func planManual(in ExplainInput, ex *Explanation, choice Choice) {
	m := in.Manual
	ex.Coordinated = !m.Force
	block := func(code, detail string) { ex.Blocking = append(ex.Blocking, Condition{code, detail}) }
	if in.InProgress != "" {
		block(BlockInProgress, "a failover is already in progress ("+in.InProgress+")")
	}
	if in.Maintenance && !m.Force {
		block(BlockMaintenance, "the master is in maintenance: force the failover (a plain promotion), or set maintenance no first")
	}
	if !m.Force && m.Handover > in.FailoverTimeout {
		block(BlockTimeoutTooLong, "the catch-up time "+secs(m.Handover)+" is longer than failover-timeout ("+secs(in.FailoverTimeout)+")")
	}
	if !m.Force && in.MasterSDown {
		block(BlockMasterDown, "the master "+in.MasterAddr+" is down: a coordinated failover needs it to hand over; force promotes without it")
	}
	if m.To != "" {
		ex.Candidate = ""
		switch reason, known := namedReplica(in, choice, m.To); {
		case m.To == in.MasterAddr:
			block(BlockUnknownReplica, m.To+" is the master itself, not one of its replicas")
		case !known:
			block(BlockUnknownReplica, m.To+" is not a known replica")
		case reason != "":
			block(BlockReplicaRejected, "replica "+m.To+" cannot be promoted: "+reason)
		default:
			ex.Candidate = m.To
		}
	} else if !choice.OK {
		block(BlockNoGoodReplica, noGoodReplica(in.Selection, choice))
	}
	if ex.Tilt {
		ex.Notes = append(ex.Notes, "the leader is in TILT until "+stamp(ex.TiltUntil)+": the failover would be accepted but wait for it to end")
	}
	kind := "a plain promotion of "
	if ex.Coordinated {
		kind = "a coordinated failover (FAILOVER TO, no acknowledged write lost) to "
	}
	if len(ex.Blocking) == 0 {
		ex.Action = ActionFailover
		ex.Summary = kind + ex.Candidate + " would begin now"
		return
	}
	ex.Action = ActionBlocked
	ex.Summary = "refused: " + ex.Blocking[0].Detail
}

// namedReplica says whether to is a known replica and, if the rules
// exclude it, why.
func namedReplica(in ExplainInput, choice Choice, to string) (reason string, known bool) {
	for _, r := range choice.Rejected {
		if r.Addr == to {
			return r.Reason, true
		}
	}
	for _, c := range in.Selection.Replicas {
		if c.Addr == to {
			return "", true
		}
	}
	return "", false
}

// offsetsSettled is the leader's wait for final offsets: over once every
// promotable replica reported INFO after the master went down, or once
// OffsetSettleWait has passed since ODOWN (a clock gone back ends it too).
func offsetsSettled(in ExplainInput) bool {
	since := in.ODownSince
	if since.IsZero() {
		since = in.Now // ODOWN is being committed in this very pass
	}
	if d := in.Now.Sub(since); d >= OffsetSettleWait || d < 0 {
		return true
	}
	downAt := in.MasterDownAt
	if downAt.IsZero() {
		downAt = since
	}
	return OffsetsFinal(downAt, in.Selection.Replicas)
}

func noGoodReplica(sel Selection, choice Choice) string {
	if len(sel.Replicas) == 0 {
		return "no replica to promote: the master has no known replica"
	}
	parts := make([]string, 0, len(choice.Rejected))
	for _, r := range choice.Rejected {
		parts = append(parts, r.Addr+" "+r.Reason)
	}
	return "no replica passes the selection rules: " + strings.Join(parts, ", ")
}

// replicaLines lists the eligible replicas best first, then the excluded
// ones by address.
func replicaLines(sel Selection, choice Choice) []ReplicaLine {
	byAddr := make(map[string]Candidate, len(sel.Replicas))
	for _, c := range sel.Replicas {
		byAddr[c.Addr] = c
	}
	line := func(addr string) ReplicaLine {
		p := byAddr[addr].Probe
		l := ReplicaLine{Addr: addr, Priority: p.Priority, Offset: p.Offset, RunID: p.RunID}
		if sel.MasterOffset > 0 && p.Offset > 0 && sel.MasterOffset > p.Offset {
			l.Lag = sel.MasterOffset - p.Offset
		}
		return l
	}
	out := make([]ReplicaLine, 0, len(sel.Replicas))
	for i, addr := range choice.Ranked {
		l := line(addr)
		l.Eligible, l.Rank = true, i+1
		out = append(out, l)
	}
	for _, r := range choice.Rejected {
		l := line(r.Addr)
		l.Reason = r.Reason
		out = append(out, l)
	}
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
