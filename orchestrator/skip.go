package orchestrator

import (
	"strings"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// A steady master's pass decides nothing: no failover, no down vote, its
// instances answer and follow it, every replica its INFO lists is on
// record. Running it again with the same record and the same observations
// decides nothing again until a timer runs out: an instance's SDOWN clock,
// or the fence's next read. The leader's loop (every 100 ms, and at every
// change) skips such a pass (Leader.skip), which was most of what the
// leader did for a thousand quiet masters, and when only the fence's read
// is due it runs the fence alone (passFence): with a read a second, the
// rest of the pass was a third of what a steady master cost the leader.

// passInputs is what a master's pass read that can change without a
// commit: the record (the state is a new copy after every commit, so the
// same pointer means the same record) and the observation of each of its
// instances, by ChangeGen.
//
// ChangeGen, not Gen: a routine INFO read (every 10 s per instance) makes
// a new Gen with new offsets, lags and INFO time, and nothing a steady
// pass decides reads those. replicasUpdate records what materialChange
// compares (the INFO fields of probe's decisionFieldsDiffer, which signal,
// and SDOWN and link, which steadyUntil's deadline and a link flip
// cover); offsets only for max-lag, never steady. emptyRestart needs a
// restart within failover.EmptyRestartWindow (a new run id, which
// signals), which steadyUntil excludes. heal has nothing to repair while
// every replica follows the master, whatever its INFO's age. Votes and
// ODOWN are the record's. The fence reads lags, on its own schedule
// (takeFenceRead). Those reads (one per instance per 10 s: 90 a second
// at 300 groups) each re-ran their master's whole pass.
type passInputs struct {
	m       *fsmv1.Master
	changes []uint64
	// live reads the ChangeGens of the same instances as they are now.
	live GenReader
}

// GenReader reads the current ChangeGens and links of a fixed list of
// instances (Observer.Gens). Comparing a quiet master's ChangeGens through
// it at every tick costs a load per instance; looking its observations up
// cost more than all else the leader's loop did for the master.
type GenReader interface {
	ChangeGen(i int) uint64
	// Link is the i-th instance's link as its PINGs left it (ok false:
	// not watched), which changes without a new ChangeGen.
	Link(i int) (probe.Link, bool)
}

// groupAddrs lists master m's instances: the master, then its recorded
// replicas, the order of passInputs.changes.
func groupAddrs(m *fsmv1.Master) []string {
	addrs := make([]string, 0, 1+len(m.GetReplicas()))
	addrs = append(addrs, m.GetAddress())
	for _, r := range m.GetReplicas() {
		addrs = append(addrs, r.GetAddress())
	}
	return addrs
}

// inputsOf lists the pass's inputs from the master record, its group's
// addresses (groupAddrs) and the observations; an instance not observed
// has ChangeGen 0 (a Watcher's ChangeGens start at 1). live is left to the
// caller.
func inputsOf(m *fsmv1.Master, addrs []string, obs lookup) passInputs {
	in := passInputs{m: m, changes: make([]uint64, 0, len(addrs))}
	for _, a := range addrs {
		o, _ := obs(a)
		in.changes = append(in.changes, o.ChangeGen)
	}
	return in
}

// same reports whether m is the record of a and every instance's
// observation still has the ChangeGen a has. 0 (not observed) never
// counts as the same.
func (a passInputs) same(m *fsmv1.Master) bool {
	if a.m != m || a.live == nil {
		return false
	}
	for i, g := range a.changes {
		if g == 0 || a.live.ChangeGen(i) != g {
			return false
		}
	}
	return true
}

// steadyUntil reports whether the pass of master m, run at now on obs,
// found it steady, and until when it stays so at the latest with the same
// record and observations: the first moment an instance could turn SDOWN
// (down-after after its SDOWN clock started, or after now when no clock
// runs: a PING sent later starts it later); the fence's next read is
// skip's to look up. steady false means the pass must run at every tick.
// It is pure: the same inputs give the same answer.
//
// Steady means none of the pass's decisions depends on time alone, apart
// from those deadlines: no failover in progress, not ODOWN, no down vote
// (votes expire), no max-lag (its offsets are committed by age), the
// master answers, reports role master and the recorded run id, lists no
// replica that is not on record, and is not within
// failover.EmptyRestartWindow of a restart, nor waiting for a PONG after
// one (master-reboot-down-after-period); every recorded replica answers,
// reports role slave following the master and is on record as neither
// SDOWN nor disconnected. Such a master gets no heal (its replicas follow
// it), no empty-restart failover and no ODOWN.
func steadyUntil(m *fsmv1.Master, obs lookup, now time.Time) (time.Time, bool) {
	if m.GetFailover() != nil || m.GetOdown() || m.GetSettings().GetMaxLagBytes() > 0 {
		return time.Time{}, false
	}
	for _, v := range m.GetVotes() {
		if v.GetDown() {
			return time.Time{}, false
		}
	}
	if role := m.GetMasterRole(); role != "" && role != fsm.RoleMaster {
		return time.Time{}, false
	}
	host, port, err := splitHostPort(m.GetAddress())
	if err != nil {
		return time.Time{}, false
	}
	downAfter := DownAfter(m)
	var until time.Time
	clock := func(o probe.Observation) {
		start := now
		if !o.FailingSince.IsZero() {
			start = o.FailingSince
		}
		// SDOWN needs more than down-after: the first moment it can hold
		// is just after start + down-after.
		if t := start.Add(downAfter).Add(time.Nanosecond); until.IsZero() || t.Before(until) {
			until = t
		}
	}

	mo, ok := obs(m.GetAddress())
	if !ok || !mo.LinkUp || mo.Info == nil || mo.Info.Role != probe.RoleMaster || mo.Info.RunID == "" || mo.Info.RunID != m.GetMasterRunId() {
		return time.Time{}, false
	}
	if !mo.RebootedAt.IsZero() {
		if now.Sub(mo.RebootedAt) <= failover.EmptyRestartWindow {
			return time.Time{}, false
		}
		if RebootDownAfter(m) > 0 && !mo.LastPong.After(mo.RebootedAt) {
			return time.Time{}, false
		}
	}
	for _, r := range mo.Info.ConnectedReplicas {
		if !knownHostPort(m.GetReplicas(), r.IP, r.Port) && !sameHostPort(m.GetAddress(), r.IP, r.Port) {
			return time.Time{}, false
		}
	}
	clock(mo)

	for _, r := range m.GetReplicas() {
		if r.GetSdown() || r.GetDisconnected() {
			return time.Time{}, false
		}
		o, ok := obs(r.GetAddress())
		if !ok || !o.LinkUp || o.Info == nil || o.Info.Role != probe.RoleSlave ||
			o.Info.MasterHost == "" || o.Info.MasterPort != port || !strings.EqualFold(o.Info.MasterHost, host) {
			return time.Time{}, false
		}
		clock(o)
	}
	return until, true
}

// fenceDue is when maintainFence reads master m's fence next, as
// takeFenceRead decides with the group's ChangeGens changes (inputsOf):
// zero when it never does (fence off and nothing set), now when it has
// not read it yet.
func (l *Leader) fenceDue(m *fsmv1.Master, changes []uint64, now time.Time) time.Time {
	if !ReadsFence(m) {
		return time.Time{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.fenceReads[m.GetAddress()]
	if !ok || now.Before(r.at) {
		return now
	}
	return r.dueAt(changes)
}

// steadyPass is a finished pass that found its master steady.
type steadyPass struct {
	in    passInputs
	until time.Time
}

// notePass remembers, after p ran without error, whether its master was
// steady and until when its SDOWN clocks allow (the fence's reads are
// looked up at each Step: skip), for skip.
func (l *Leader) notePass(p *pass, err error) {
	name := p.m.GetName()
	var until time.Time
	steady := false
	if err == nil {
		until, steady = steadyUntil(p.m, p.obs.get, p.now)
	}
	if !steady {
		l.mu.Lock()
		delete(l.steady, name)
		l.mu.Unlock()
		return
	}
	addrs := groupAddrs(p.m)
	in := inputsOf(p.m, addrs, p.obs.get)
	in.live = l.cfg.Observe.Gens(addrs)
	l.mu.Lock()
	l.steady[name] = steadyPass{in: in, until: until}
	l.mu.Unlock()
}

// passKind is how much of a master's pass a Step runs.
type passKind int

const (
	passFull  passKind = iota
	passNone           // steady, and no deadline has come
	passFence          // steady, and only the fence's read is due
)

// skip says how much of master m's pass at now can decide anything, given
// its steady record s (ok false: none): none when its last full pass found
// it steady on the same record and observations, before the SDOWN
// deadline of that pass and the fence's next read (fenceDue); the fence
// alone when only the read is due; all of it otherwise. It also says when
// m is due again at the latest: now unless none, else the first of the
// two deadlines.
func (l *Leader) skip(s steadyPass, ok bool, m *fsmv1.Master, now time.Time) (kind passKind, again time.Time) {
	if !ok || !now.Before(s.until) || !s.in.same(m) {
		return passFull, now
	}
	// same: the ChangeGens of the steady pass are the group's now.
	due := l.fenceDue(m, s.in.changes, now)
	if !due.IsZero() && !now.Before(due) {
		return passFence, now
	}
	if due.IsZero() || s.until.Before(due) {
		due = s.until
	}
	return passNone, due
}

// linkOf is the link of master m's probe, read through its steady record
// s when that is m's (ok), and looked up in obs otherwise.
func linkOf(s steadyPass, ok bool, m *fsmv1.Master, obs lookup) (probe.Link, bool) {
	if ok && s.in.m == m && s.in.live != nil {
		return s.in.live.Link(0)
	}
	o, seen := obs(m.GetAddress())
	return o.Link(), seen
}

// noteLinkFailure records when this leader's probe of the master last
// failed, for the fence (maintainFence never lowers a fence within
// failover.FenceSteadyFor of it): its last contact got no reply, or one has
// been without a valid reply for longer than probe.LateReply, as a look
// sees now or as the probe recorded it (LinkFailedAt: a failure that began
// and ended between two looks). Not observed yet, never pinged, or a PING
// merely in flight is no failure. It runs at every tick for every master,
// skipped pass or not.
func (l *Leader) noteLinkFailure(addr string, link probe.Link, ok bool, now time.Time) {
	if !ok || link.LastPingAt.IsZero() {
		return
	}
	at := link.LinkFailedAt
	if !link.Up || (!link.FailingSince.IsZero() && now.Sub(link.FailingSince) > probe.LateReply) {
		at = now
	}
	if at.IsZero() {
		return
	}
	l.mu.Lock()
	if at.After(l.linkFailed[addr]) {
		l.linkFailed[addr] = at
	}
	l.mu.Unlock()
}
