package fsm

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// masterAt finds a master and checks the compare-and-set epoch, so that a
// decision taken on a stale view never commits.
func masterAt(st *fsmv1.State, name string, expectedEpoch uint64) (*fsmv1.Master, error) {
	m, ok := st.Masters[name]
	if !ok {
		return nil, UnknownMaster(name)
	}
	if m.GetEpoch() != expectedEpoch {
		return nil, errorf(FailedPrecondition, "master %q is at epoch %d, not %d", name, m.GetEpoch(), expectedEpoch)
	}
	return m, nil
}

func findReplica(m *fsmv1.Master, addr string) (*fsmv1.Replica, int) {
	for i, r := range m.Replicas {
		if r.GetAddress() == addr {
			return r, i
		}
	}
	return nil, -1
}

func sortReplicas(m *fsmv1.Master) {
	sort.Slice(m.Replicas, func(i, j int) bool { return m.Replicas[i].GetAddress() < m.Replicas[j].GetAddress() })
}

func resetMaster(r *recorder, c *fsmv1.ResetMaster) error {
	m, ok := r.st.Masters[c.GetName()]
	if !ok {
		return UnknownMaster(c.GetName())
	}
	m.Replicas, m.Votes, m.Failover, m.LastFailover, m.MasterRole = nil, nil, nil, nil, ""
	m.Odown, m.OdownSinceUnixNanos, m.LastFailoverAtUnixNanos = false, 0, 0
	r.add(m, "+reset-master", masterDetail(m), "")
	return nil
}

func reportVote(r *recorder, c *fsmv1.ReportVote) error {
	m, ok := r.st.Masters[c.GetMaster()]
	if !ok {
		return UnknownMaster(c.GetMaster())
	}
	if err := ValidateName("node", c.GetNodeId()); err != nil {
		return err
	}
	if c.GetAddress() != m.GetAddress() {
		return errorf(FailedPrecondition, "vote about %s, but the master of %q is now %s", c.GetAddress(), m.GetName(), m.GetAddress())
	}
	var prev *fsmv1.Vote
	for _, v := range m.Votes {
		if v.GetNodeId() == c.GetNodeId() {
			prev = v
		}
	}
	if prev == nil {
		prev = &fsmv1.Vote{NodeId: c.GetNodeId()}
		m.Votes = append(m.Votes, prev)
		sort.Slice(m.Votes, func(i, j int) bool { return m.Votes[i].GetNodeId() < m.Votes[j].GetNodeId() })
	} else if prev.GetDown() == c.GetDown() && prev.GetAddress() == c.GetAddress() {
		// A re-assertion refreshes the vote without an event.
		prev.AtUnixNanos, prev.Reason = r.now, c.GetReason()
		return nil
	}
	wasDown := prev.GetDown() && prev.GetAddress() == c.GetAddress()
	prev.Address, prev.Down, prev.AtUnixNanos, prev.Reason = c.GetAddress(), c.GetDown(), r.now, c.GetReason()
	switch {
	case c.GetDown() && !wasDown:
		r.add(m, "+sdown", masterDetail(m), c.GetNodeId())
	case !c.GetDown() && wasDown:
		r.add(m, "-sdown", masterDetail(m), c.GetNodeId())
	}
	return nil
}

func updateReplicas(r *recorder, c *fsmv1.UpdateReplicas) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	for _, in := range c.GetReplicas() {
		if err := ValidateAddress("replica", in.GetAddress()); err != nil {
			return err
		}
	}
	if old, next := m.GetMasterRunId(), c.GetMasterRunId(); old != "" && next != "" && old != next {
		// Sentinel's +reboot for the master: the same address answers with
		// another run id, so the process restarted.
		r.add(m, "+reboot", masterDetail(m), "")
	}
	if role := c.GetMasterRole(); role != "" && role != orRole(m.GetMasterRole(), RoleMaster) {
		r.addFrom(Format2, m, roleChange(role, RoleMaster), masterDetail(m)+" new reported role is "+role, "")
	}
	if c.GetMasterRole() != "" {
		m.MasterRole = c.GetMasterRole()
	}
	m.MasterOffset = c.GetMasterOffset()
	if c.GetMasterRunId() != "" {
		// An update without the master's run id (no INFO of it this time)
		// keeps the one known, like a replica's.
		m.MasterRunId = c.GetMasterRunId()
	}
	// Events come out in address order, whatever order the leader sent.
	incoming := append([]*fsmv1.Replica(nil), c.GetReplicas()...)
	sort.Slice(incoming, func(i, j int) bool { return incoming[i].GetAddress() < incoming[j].GetAddress() })
	for _, in := range incoming {
		if in.GetAddress() == m.GetAddress() {
			continue // the master is never its own replica
		}
		next := &fsmv1.Replica{
			Address: in.GetAddress(), RunId: in.GetRunId(), Role: in.GetRole(), MasterHost: in.GetMasterHost(),
			MasterPort: in.GetMasterPort(), MasterLinkUp: in.GetMasterLinkUp(), MasterLinkDownMs: in.GetMasterLinkDownMs(),
			Priority: in.GetPriority(), Offset: in.GetOffset(), Announced: in.GetAnnounced(), Sdown: in.GetSdown(),
			Disconnected: in.GetDisconnected(), ObservedAtUnixNanos: r.now,
		}
		old, i := findReplica(m, in.GetAddress())
		if old == nil {
			m.Replicas = append(m.Replicas, next)
			r.add(m, "+slave", replicaDetail(m, next.GetAddress()), "")
			if role := next.GetRole(); role != "" && role != RoleSlave {
				r.addFrom(Format2, m, roleChange(role, RoleSlave), replicaDetail(m, next.GetAddress())+" new reported role is "+role, "")
			}
			if next.GetSdown() {
				r.add(m, "+sdown", replicaDetail(m, next.GetAddress()), "")
			}
			continue
		}
		if role := next.GetRole(); role != "" && role != orRole(old.GetRole(), RoleSlave) {
			r.addFrom(Format2, m, roleChange(role, RoleSlave), replicaDetail(m, next.GetAddress())+" new reported role is "+role, "")
		}
		if old.GetRunId() != "" && next.GetRunId() != "" && old.GetRunId() != next.GetRunId() {
			r.add(m, "+reboot", replicaDetail(m, next.GetAddress()), "")
		}
		if next.GetRunId() == "" {
			next.RunId = old.GetRunId()
		}
		switch {
		case next.GetSdown() && !old.GetSdown():
			r.add(m, "+sdown", replicaDetail(m, next.GetAddress()), "")
		case !next.GetSdown() && old.GetSdown():
			r.add(m, "-sdown", replicaDetail(m, next.GetAddress()), "")
		}
		m.Replicas[i] = next
	}
	sortReplicas(m)
	return nil
}

func setObjectiveDown(r *recorder, c *fsmv1.SetObjectiveDown) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	if m.GetOdown() == c.GetDown() {
		return nil
	}
	m.Odown = c.GetDown()
	if c.GetDown() {
		m.OdownSinceUnixNanos = r.now
		r.add(m, "+odown", fmt.Sprintf("%s #quorum %d/%d", masterDetail(m), c.GetVotes(), m.GetSettings().GetQuorum()), "")
	} else {
		m.OdownSinceUnixNanos = 0
		r.add(m, "-odown", masterDetail(m), "")
	}
	return nil
}

func beginFailover(r *recorder, c *fsmv1.BeginFailover) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	if m.GetFailover() != nil {
		return &Error{Kind: FailedPrecondition, Reason: ReasonFailoverInProgress,
			Msg: fmt.Sprintf("Failover already in progress for %q", m.GetName())}
	}
	switch c.GetReason() {
	case ReasonODown, ReasonManual, ReasonEmptyRestart:
	default:
		return errorf(Invalid, "failover reason %q: want %s, %s or %s", c.GetReason(), ReasonODown, ReasonManual, ReasonEmptyRestart)
	}
	if err := validateHandover(m, c); err != nil {
		return err
	}
	if err := validateEmptyRestart(c); err != nil {
		return err
	}
	if c.GetCandidate() != "" {
		if rep, _ := findReplica(m, c.GetCandidate()); rep == nil {
			return errorf(Invalid, "candidate %s is not a known replica of %q", c.GetCandidate(), m.GetName())
		}
	}
	m.LastFailoverAtUnixNanos = r.now
	if er := c.GetEmptyRestart(); er != nil {
		r.add(m, EventEmptyRestart, fmt.Sprintf("%s #run_id %s #offset %d/%d #keys 0/%d", masterDetail(m),
			er.GetRunId(), er.GetMasterOffset(), er.GetReplicaOffset(), er.GetReplicaKeys()), "")
	}
	r.add(m, "+try-failover", masterDetail(m), "")
	r.add(m, "+elected-leader", masterDetail(m), "")
	r.add(m, "+failover-state-select-slave", masterDetail(m), "")
	if c.GetCandidate() == "" {
		m.LastFailover = &fsmv1.FailoverOutcome{
			Reason: c.GetReason(), Result: ResultAborted, Event: EventNoGoodReplica,
			Detail: "no replica passed the selection rules", Epoch: m.GetEpoch(),
			StartedAtUnixNanos: r.now, FinishedAtUnixNanos: r.now, OldMaster: m.GetAddress(),
			NewMaster: m.GetAddress(), Coordinated: c.GetCoordinated(),
		}
		r.add(m, EventNoGoodReplica, masterDetail(m), "")
		return nil
	}
	phase := fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING
	if c.GetCoordinated() {
		phase = fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER
	}
	m.Failover = &fsmv1.Failover{
		Phase:              phase,
		Reason:             c.GetReason(),
		Candidate:          c.GetCandidate(),
		OldMaster:          m.GetAddress(),
		StartedEpoch:       m.GetEpoch(),
		StartedAtUnixNanos: r.now,
		Rejected:           c.GetRejected(),
		Coordinated:        c.GetCoordinated(),
		HandoverTimeoutMs:  c.GetHandoverTimeoutMs(),
	}
	r.add(m, "+selected-slave", replicaDetail(m, c.GetCandidate()), "")
	r.add(m, "+failover-state-send-slaveof-noone", replicaDetail(m, c.GetCandidate()), "")
	// Sentinel enters WAIT_PROMOTION once its SLAVEOF NO ONE is queued.
	// Raftinel commits each step before it acts, so the state it waits in
	// from here on is entered with this entry (the command follows it).
	r.addFrom(Format2, m, "+failover-state-wait-promotion", replicaDetail(m, c.GetCandidate()), "")
	return nil
}

// Reasons a failover begins for (BeginFailover.reason).
const (
	// ReasonODown: the master is objectively down.
	ReasonODown = "odown"
	// ReasonManual: an operator asked (SENTINEL FAILOVER, the API).
	ReasonManual = "manual"
	// ReasonEmptyRestart is Raftinel's own: the master restarted empty
	// with a replication history its replicas cannot continue, while they
	// still hold data (see EmptyRestart in the log format).
	ReasonEmptyRestart = "empty-restart"
)

// EventEmptyRestart is published when a failover begins because the master
// restarted empty; Sentinel has no such event. Its payload is the master's
// "%@" followed by "#run_id <new run id> #offset <master>/<candidate>
// #keys 0/<candidate's keys>".
const EventEmptyRestart = "+empty-restart"

// validateEmptyRestart checks that an empty-restart failover carries its
// evidence and a candidate (with nothing to save there is nothing to fail
// over to), and that no other failover carries that evidence.
func validateEmptyRestart(c *fsmv1.BeginFailover) error {
	er := c.GetEmptyRestart()
	if c.GetReason() != ReasonEmptyRestart {
		if er != nil {
			return errorf(Invalid, "empty-restart evidence given for a failover with reason %q", c.GetReason())
		}
		return nil
	}
	switch {
	case er == nil:
		return errorf(Invalid, "an empty-restart failover needs its evidence")
	case er.GetRunId() == "":
		return errorf(Invalid, "an empty-restart failover needs the master's new run id")
	case er.GetReplicaKeys() < 1:
		return errorf(Invalid, "an empty-restart failover needs a candidate holding keys, got %d", er.GetReplicaKeys())
	case c.GetCandidate() == "":
		return errorf(Invalid, "an empty-restart failover needs a candidate")
	}
	return nil
}

// validateHandover checks the coordinated-failover fields: only a manual
// failover hands over, and it needs a catch-up timeout that ends before
// failover-timeout would abort the attempt anyway.
func validateHandover(m *fsmv1.Master, c *fsmv1.BeginFailover) error {
	t := c.GetHandoverTimeoutMs()
	if !c.GetCoordinated() {
		if t != 0 {
			return errorf(Invalid, "handover timeout %d ms given for a failover that is not coordinated", t)
		}
		return nil
	}
	if c.GetReason() != ReasonManual {
		return errorf(Invalid, "only a manual failover can be coordinated, not %q", c.GetReason())
	}
	if limit := m.GetSettings().GetFailoverTimeoutMs(); t <= 0 || t > limit {
		return errorf(Invalid, "handover timeout %d ms: want 1 to failover-timeout (%d ms)", t, limit)
	}
	return nil
}

// Values of FailoverOutcome.result.
const (
	ResultPromoted = "promoted"
	ResultAborted  = "aborted"
)

// Events that close a failover journal.
const (
	// EventNoGoodReplica is Sentinel's: no replica could be promoted.
	EventNoGoodReplica = "-failover-abort-no-good-slave"
	// EventHandoverTimeout is Raftinel's own: in a coordinated failover
	// the replica did not catch up with the old master within the
	// requested timeout, so the old master kept its role (Redis's FAILOVER
	// aborted with "Replica never caught up before timeout").
	EventHandoverTimeout = "-failover-abort-handover-timeout"
)

// beingPromoted reports a journal still before its promotion: the only
// phases that can be aborted or promoted.
func beingPromoted(f *fsmv1.Failover) bool {
	p := f.GetPhase()
	return p == fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING || p == fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER
}

// outcome records how the journal f of m ended.
func outcome(r *recorder, m *fsmv1.Master, f *fsmv1.Failover, result, event, detail string) {
	m.LastFailover = &fsmv1.FailoverOutcome{
		Reason: f.GetReason(), Result: result, Event: event, Detail: detail, Epoch: m.GetEpoch(),
		StartedAtUnixNanos: f.GetStartedAtUnixNanos(), FinishedAtUnixNanos: r.now, OldMaster: f.GetOldMaster(),
		Candidate: f.GetCandidate(), NewMaster: m.GetAddress(), Coordinated: f.GetCoordinated(),
		Handover: handoverMethod(f, result),
	}
}

// Values of FailoverOutcome.handover.
const (
	HandoverWritePause = "write-pause"
	HandoverFailoverTo = "failover-to"
)

// handoverMethod tells how a coordinated failover handed over: with the
// write pause when one was committed, else (promoted without a pause) with
// Redis's FAILOVER TO. A rollback before either began names none.
func handoverMethod(f *fsmv1.Failover, result string) string {
	switch {
	case !f.GetCoordinated():
		return ""
	case f.GetPause() != nil:
		return HandoverWritePause
	case result == ResultPromoted:
		return HandoverFailoverTo
	}
	return ""
}

func abortFailover(r *recorder, c *fsmv1.AbortFailover) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	if !beingPromoted(m.GetFailover()) {
		return errorf(FailedPrecondition, "no failover of %q that can still be aborted", m.GetName())
	}
	if !strings.HasPrefix(c.GetEvent(), "-failover-abort-") {
		return errorf(Invalid, "abort event %q: want a -failover-abort-* event", c.GetEvent())
	}
	outcome(r, m, m.GetFailover(), ResultAborted, c.GetEvent(), c.GetReason())
	m.Failover = nil
	r.add(m, c.GetEvent(), masterDetail(m), "")
	return nil
}

// handoverPaused records the write pause of a coordinated handover. Only a
// coordinated failover still in its handover may pause, and only once: a
// second pause would move the offset the candidate is measured against.
func handoverPaused(r *recorder, c *fsmv1.HandoverPaused) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	f := m.GetFailover()
	if f.GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER {
		return errorf(FailedPrecondition, "no coordinated handover of %q in progress", m.GetName())
	}
	if f.GetPause() != nil {
		return errorf(FailedPrecondition, "the handover of %q already paused writes", m.GetName())
	}
	if c.GetOffsetPending() && c.GetOffset() != math.MaxInt64 {
		return errorf(Invalid, "write pause with its offset pending must record offset %d, not %d", int64(math.MaxInt64), c.GetOffset())
	}
	if c.GetOffset() < 0 || c.GetUntilUnixNanos() <= r.now {
		return errorf(Invalid, "write pause at offset %d until %d: want a non-negative offset and an end after %d",
			c.GetOffset(), c.GetUntilUnixNanos(), r.now)
	}
	f.Pause = &fsmv1.HandoverPause{Offset: c.GetOffset(), UntilUnixNanos: c.GetUntilUnixNanos(), OffsetPending: c.GetOffsetPending()}
	return nil
}

func promoted(r *recorder, c *fsmv1.Promoted) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	f := m.GetFailover()
	if !beingPromoted(f) || f.GetCandidate() != c.GetAddress() {
		return errorf(FailedPrecondition, "%s is not the replica being promoted for %q", c.GetAddress(), m.GetName())
	}
	old := m.GetAddress()
	oh, op := SplitAddress(old)
	nh, np := SplitAddress(c.GetAddress())
	r.add(m, "+promoted-slave", replicaDetail(m, c.GetAddress()), "")
	r.add(m, "+failover-state-reconf-slaves", masterDetail(m), "")

	m.Epoch++
	m.Address = c.GetAddress()
	// The candidate reports role master: that is why it is promoted.
	m.MasterRole = RoleMaster
	// Sentinel's +new-epoch carries the epoch alone. Sentinel's
	// current_epoch rises when a failover starts (and with votes and
	// hellos); Raftinel's epoch is the master's configuration epoch,
	// which rises here, with the promotion.
	r.addFrom(Format2, m, "+new-epoch", strconv.FormatUint(m.GetEpoch(), 10), "")
	m.Votes, m.Odown, m.OdownSinceUnixNanos = nil, false, 0
	rep, i := findReplica(m, c.GetAddress())
	// The master's run id and offset are the promoted replica's from now on,
	// so that its next report is no +reboot.
	m.MasterRunId, m.MasterOffset = rep.GetRunId(), rep.GetOffset()
	m.Replicas = append(m.Replicas[:i], m.Replicas[i+1:]...)
	f.Phase = fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS
	f.PromotedAtUnixNanos = r.now
	// The leader promotes with min-replicas-to-write 0, so the new master
	// never answers NOREPLICAS; its fence rises as its replicas attach.
	m.Fence = &fsmv1.FenceState{Address: m.GetAddress(), MinReplicas: 0, MaxLagS: int64(FenceLag(m.GetSettings()) / time.Second),
		AtUnixNanos: r.now, Reason: "promoted: raised as its replicas attach"}
	for _, rep := range m.Replicas {
		f.Reconf = append(f.Reconf, &fsmv1.ReplicaReconf{Address: rep.GetAddress(), Phase: fsmv1.ReconfPhase_RECONF_PHASE_PENDING})
	}
	if f.GetReason() == ReasonManual || f.GetReason() == ReasonEmptyRestart {
		// A manual failover's old master is most likely alive: it is
		// re-pointed with the other replicas (after a coordinated handover
		// it already follows the new master, and REPLICAOF is a no-op that
		// still disconnects its clients). An empty-restarted one is alive
		// by definition, and the sooner it follows the new master the
		// sooner nothing can resync from its empty dataset.
		f.Reconf = append(f.Reconf, &fsmv1.ReplicaReconf{Address: old, Phase: fsmv1.ReconfPhase_RECONF_PHASE_PENDING})
		sort.Slice(f.Reconf, func(i, j int) bool { return f.Reconf[i].GetAddress() < f.Reconf[j].GetAddress() })
		m.Replicas = append(m.Replicas, &fsmv1.Replica{Address: old})
	} else {
		// The old master becomes a replica record; it is converted when it
		// returns (+convert-to-slave), not re-pointed as part of this failover.
		m.Replicas = append(m.Replicas, &fsmv1.Replica{Address: old, Sdown: true, Disconnected: true})
	}
	sortReplicas(m)
	// Raftinel announces the switch as soon as the promotion is committed
	// (Sentinel waits for the end of reconfiguration): clients can move at once.
	r.add(m, "+switch-master", fmt.Sprintf("%s %s %s %s %s", m.GetName(), oh, op, nh, np), "")
	return nil
}

var reconfEvents = map[fsmv1.ReconfPhase]string{
	fsmv1.ReconfPhase_RECONF_PHASE_SENT:        "+slave-reconf-sent",
	fsmv1.ReconfPhase_RECONF_PHASE_IN_PROGRESS: "+slave-reconf-inprog",
	fsmv1.ReconfPhase_RECONF_PHASE_DONE:        "+slave-reconf-done",
}

func replicaReconfigured(r *recorder, c *fsmv1.ReplicaReconfigured) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	f := m.GetFailover()
	if f.GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
		return errorf(FailedPrecondition, "no failover of %q is re-pointing replicas", m.GetName())
	}
	event, ok := reconfEvents[c.GetPhase()]
	if !ok {
		return errorf(Invalid, "reconf phase %v cannot be recorded", c.GetPhase())
	}
	for _, rc := range f.Reconf {
		if rc.GetAddress() != c.GetAddress() {
			continue
		}
		if c.GetPhase() <= rc.GetPhase() {
			return nil // phases only move forward; a repeat is harmless
		}
		rc.Phase = c.GetPhase()
		if c.GetPhase() == fsmv1.ReconfPhase_RECONF_PHASE_SENT {
			rc.SentAtUnixNanos = r.now
		}
		r.add(m, event, replicaDetail(m, c.GetAddress()), "")
		return nil
	}
	return errorf(NotFound, "%s is not being re-pointed for %q", c.GetAddress(), m.GetName())
}

func finishFailover(r *recorder, c *fsmv1.FinishFailover) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	if m.GetFailover().GetPhase() != fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
		return errorf(FailedPrecondition, "no promoted failover of %q to finish", m.GetName())
	}
	event, detail := "+failover-end", ""
	if c.GetTimedOut() {
		event, detail = "+failover-end-for-timeout", "not every replica was re-pointed within failover-timeout"
	}
	outcome(r, m, m.GetFailover(), ResultPromoted, event, detail)
	m.Failover = nil
	if c.GetTimedOut() {
		r.add(m, "+failover-end-for-timeout", masterDetail(m), "")
	}
	r.add(m, "+failover-end", masterDetail(m), "")
	return nil
}

func recordRepair(r *recorder, c *fsmv1.RecordRepair) error {
	m, err := masterAt(r.st, c.GetMaster(), c.GetExpectedEpoch())
	if err != nil {
		return err
	}
	if c.GetEvent() != "+convert-to-slave" && c.GetEvent() != "+fix-slave-config" {
		return errorf(Invalid, "repair event %q: want +convert-to-slave or +fix-slave-config", c.GetEvent())
	}
	if rep, _ := findReplica(m, c.GetAddress()); rep == nil {
		return errorf(NotFound, "%s is not a known replica of %q", c.GetAddress(), m.GetName())
	}
	r.add(m, c.GetEvent(), replicaDetail(m, c.GetAddress()), "")
	return nil
}

// Roles as INFO reports them and the state records them.
const (
	RoleMaster = "master"
	RoleSlave  = "slave"
)

// orRole is the role an instance record holds before any report: Sentinel
// starts an instance's reported role at the role of its record (a master
// record "master", a replica record "slave"), so the first report that
// agrees publishes nothing.
func orRole(recorded, record string) string {
	if recorded == "" {
		return record
	}
	return recorded
}

// roleChange is Sentinel's event for a newly reported role: +role-change
// when it agrees with the instance's record, -role-change when it does not.
func roleChange(reported, record string) string {
	if reported == record {
		return "+role-change"
	}
	return "-role-change"
}
