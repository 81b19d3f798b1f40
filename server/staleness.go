package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMaxStaleness is Config.MaxStaleness when unset, unless three Raft
// heartbeat timeouts are longer: how long a node keeps naming masters to
// clients after its last contact with a Raft leader (being one counts).
// See README, "A node cut off from the leader", for the choice.
const DefaultMaxStaleness = 2 * time.Second

// defaultMaxStaleness is the default for a Raft heartbeat timeout: a
// follower notices a dead leader after one to about three heartbeat
// timeouts, and a healthy follower must not stop answering while the
// others merely elect a new leader.
func defaultMaxStaleness(heartbeat time.Duration) time.Duration {
	return max(DefaultMaxStaleness, 3*heartbeat)
}

// NoMaxStaleness (any negative Config.MaxStaleness) makes a node answer
// from its own copy of the state however long it has been cut off, as
// Sentinel does.
const NoMaxStaleness time.Duration = -1

// ReasonNoLeaderContact is the google.rpc.ErrorInfo reason of a read
// refused because the node has had no contact with a Raft leader for
// longer than its --max-staleness.
const ReasonNoLeaderContact = "NO_LEADER_CONTACT"

// leadership is what a node remembers of its own leadership between two
// looks at Raft.
type leadership struct {
	lastLook  time.Time // zero: never looked
	leading   bool      // at the last look
	probation time.Time // leadership does not count before then
	credited  time.Time // the last time leadership counted; zero: never
	// stepDownContact is Raft's LastContact at the first look after the
	// node stopped leading: hashicorp/raft sets it to the time of the step
	// down, which is no contact with any leader (a leader resumed after a
	// freeze steps down at once, with fresh LastContact and old state).
	stepDownContact time.Time
}

// nextLeadership is one look at Raft at now. Leading counts as contact with
// a leader (itself) when the node has been looking at Raft all along (no
// two looks more than a lease apart): hashicorp/raft steps a leader down
// once a lease passes without contact with a majority, so a node that
// leads now, seen without a gap, had that contact within the last lease.
// After a gap (the process frozen, or starved of CPU) a leader counts only
// once it still leads a whole lease later: a leader resumed after a
// SIGSTOP believes it leads until Raft has run its lease check. idle is
// how much longer than usual the watch chose to wait between two looks
// while the node followed (watchPeriod); it lengthens only a follower's
// allowed gap, so that a node elected during that wait counts at once.
func nextLeadership(prev leadership, leader bool, lastContact, now time.Time, lease, idle time.Duration) leadership {
	next := prev
	next.lastLook, next.leading = now, leader
	allowed := lease
	if !prev.leading {
		allowed += max(idle, 0)
	}
	gap := prev.lastLook.IsZero() || now.Sub(prev.lastLook) > allowed
	if leader {
		if gap {
			next.probation = now.Add(lease)
		}
		if !now.Before(next.probation) {
			next.credited = now
		}
	} else if prev.leading {
		next.stepDownContact = lastContact
	}
	return next
}

// leadingNow tells whether leadership counted at the last look.
func (l leadership) leadingNow() bool {
	return l.leading && !l.credited.IsZero() && l.credited.Equal(l.lastLook)
}

// vouching is the decision: may a node name masters to clients at now,
// given Raft's last contact from a leader (lastContact, zero for never)
// and what it remembers of its own leadership? It may when the newer of
// the two (the contact Raft set at a step down not counting) is within
// bound; bound <= 0 always may. age is the time since that newer one, -1
// when there was none.
func vouching(lead leadership, lastContact, now time.Time, bound time.Duration) (ok bool, age time.Duration) {
	contact := lastContact
	if !lead.stepDownContact.IsZero() && contact.Equal(lead.stepDownContact) {
		contact = time.Time{}
	}
	if lead.credited.After(contact) {
		contact = lead.credited
	}
	age = -1
	if !contact.IsZero() {
		age = max0(now.Sub(contact))
	}
	if bound <= 0 {
		return true, age
	}
	return age >= 0 && age <= bound, age
}

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// verdict is the last decision, valid for callers until until.
type verdict struct {
	ok    bool
	age   time.Duration // -1: no contact ever
	until time.Time     // when ok, the time it lapses without new contact
	// catchingUp: in contact again, but not yet caught up with what the
	// leader applied (see staleness.caughtUp).
	catchingUp bool
}

// staleness decides, for the node's read paths, whether the node can vouch
// for its state, and tells them when that changes.
type staleness struct {
	max   time.Duration // <= 0: always vouch
	lease time.Duration
	raft  interface {
		State() raft.RaftState
		LastContact() time.Time
	}

	cur atomic.Pointer[verdict]

	mu   sync.Mutex
	lead leadership
	// idle is the staleness watch's wait beyond its usual period
	// (nextLeadership).
	idle time.Duration
	// caughtUp is false from a loss of contact (and from a restart with
	// old state) until the node has applied everything its leader had
	// applied when contact returned: a heartbeat renews the contact before
	// the entries missed meanwhile arrive, and they can come seconds later
	// (Raft backs off its replication to a peer that failed).
	caughtUp bool
	// catchUpTo is the leader's applied index as read once since contact
	// returned (0: not read yet), and losses counts losses of contact, so
	// that a read that straddles one is not kept.
	catchUpTo uint64
	losses    uint64
	// lost is closed when the node stops vouching, and replaced when it
	// vouches again.
	lost chan struct{}
}

func newStaleness(r interface {
	State() raft.RaftState
	LastContact() time.Time
}, bound, lease time.Duration) *staleness {
	st := &staleness{max: bound, lease: lease, raft: r, lost: make(chan struct{}), caughtUp: true}
	st.cur.Store(&verdict{ok: bound <= 0, age: -1})
	if bound > 0 {
		close(st.lost) // no contact yet
	}
	return st
}

// check looks at Raft now and stores the verdict; it reports the new one
// and whether the answer (vouch or not) changed.
func (st *staleness) check(now time.Time) (verdict, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	contact := st.raft.LastContact()
	st.lead = nextLeadership(st.lead, st.raft.State() == raft.Leader, contact, now, st.lease, st.idle)
	ok, age := vouching(st.lead, contact, now, st.max)
	if !ok && age >= 0 {
		// Contact lost (a node that never had any, just started, has
		// nothing to catch up with yet).
		st.caughtUp, st.catchUpTo = false, 0
		st.losses++
	}
	v := verdict{ok: ok && st.caughtUp, age: age, catchingUp: ok && !st.caughtUp}
	if v.ok && st.max > 0 {
		v.until = now.Add(st.max - max0(age))
	}
	prev := st.cur.Swap(&v)
	changed := prev.ok != v.ok
	if changed {
		if v.ok {
			st.lost = make(chan struct{})
		} else {
			close(st.lost)
		}
	}
	return v, changed
}

// setIdle records the watch's wait beyond its usual period until the next
// look.
func (st *staleness) setIdle(d time.Duration) {
	st.mu.Lock()
	st.idle = d
	st.mu.Unlock()
}

// leadingNow tells whether the node's leadership counted at the last look.
func (st *staleness) leadingNow() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lead.leadingNow()
}

// setCaughtUp records that the node has caught up with its leader.
func (st *staleness) setCaughtUp() {
	st.mu.Lock()
	st.caughtUp, st.catchUpTo = true, 0
	st.mu.Unlock()
}

// caughtUpTo reports whether applied, this node's applied index, reaches
// the leader's as read once since contact returned; read asks the leader,
// and is called again only until it answers. Read at every look, the
// leader's index was a moving target: each commit is followed by a
// barrier that a follower learns is committed only with the next entry,
// so while commits came every few hundred milliseconds (three nodes
// refreshing their down votes each second) a follower was one barrier
// behind at every look, and stayed out of service.
func (st *staleness) caughtUpTo(applied uint64, read func() (uint64, bool)) bool {
	st.mu.Lock()
	target, losses := st.catchUpTo, st.losses
	st.mu.Unlock()
	if target == 0 {
		idx, ok := read()
		if !ok || idx == 0 {
			return false
		}
		st.mu.Lock()
		if st.losses == losses && !st.caughtUp {
			st.catchUpTo = idx
		}
		st.mu.Unlock()
		target = idx
	}
	return applied >= target
}

// now returns the current verdict: the stored one while it holds, else a
// fresh look at Raft. It is on the request path of every discovery read.
func (st *staleness) now() verdict {
	if st.max <= 0 {
		return verdict{ok: true, age: -1}
	}
	t := time.Now()
	if v := st.cur.Load(); v.ok && t.Before(v.until) {
		return *v
	}
	v, _ := st.check(t)
	return v
}

// lostCh is closed when the node stops vouching (already closed while it
// does not).
func (st *staleness) lostCh() <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.lost
}

// err is the status a read gets from a node that does not vouch: it is
// Unavailable, so the client package (and any gRPC client that retries
// Unavailable) asks another node.
func (st *staleness) err(nodeID string, v verdict) error {
	since := "since it started"
	if v.age >= 0 {
		since = "for " + v.age.Round(time.Millisecond).String()
	}
	msg := fmt.Sprintf("node %s has had no contact with a Raft leader %s (more than --max-staleness %v): its copy of the state may name a master the others have failed over; ask another node",
		nodeID, since, st.max)
	if v.catchingUp {
		msg = fmt.Sprintf("node %s is in contact with the Raft leader again after more than --max-staleness %v without, and has not yet applied what it missed; ask another node",
			nodeID, st.max)
	}
	s := status.New(codes.Unavailable, msg)
	md := map[string]string{"node": nodeID, "max_staleness": st.max.String()}
	if v.age >= 0 {
		md["stale_for"] = v.age.Round(time.Millisecond).String()
	}
	if d, err := s.WithDetails(&errdetails.ErrorInfo{Reason: ReasonNoLeaderContact, Domain: errorDomain, Metadata: md}); err == nil {
		s = d
	}
	return s.Err()
}

// checkFresh is the guard of a gRPC read that names masters: nil when the
// node vouches for its state, else the Unavailable status above.
func (s *Server) checkFresh() error {
	if s.staleness == nil {
		return nil
	}
	if v := s.staleness.now(); !v.ok {
		return s.staleness.err(s.cfg.ID, v)
	}
	return nil
}

// Vouches tells whether this node names masters to clients now (Sentinel
// discovery, GetMaster, ListMasters, WatchMaster): false once it has had
// no contact with a Raft leader for longer than Config.MaxStaleness.
func (s *Server) Vouches() bool { return s.staleness == nil || s.staleness.now().ok }

// watchStaleness looks at Raft every period until the node stops, and acts
// on a change (whichever look found it, this one or a request's): a node
// that stops vouching disconnects its Sentinel subscribers (its WatchMaster
// streams end by themselves, on lostCh) and says so in its log; one that
// vouches again says that too. With max <= 0 it is not started.
func (s *Server) watchStaleness() {
	st := s.staleness
	fast := min(max(st.lease/4, 10*time.Millisecond), loopPeriod)
	tick := newBeat(s.monitor.watcher, fast)
	defer tick.Stop()
	// announced is the answer the log last gave; a node starts without
	// contact and says nothing until it has some.
	announced := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tick.C:
			tick.rearm(now)
		case <-s.leadershipChanged:
		}
		now := time.Now()
		v, _ := st.check(now)
		if v.catchingUp && s.caughtUpWithLeader() {
			st.setCaughtUp()
			v, _ = st.check(time.Now())
		}
		period := watchPeriod(fast, v, s.IsLeader(), now)
		st.setIdle(period - fast)
		tick.setPeriod(period, now)
		if v.ok == announced {
			continue
		}
		announced = v.ok
		if v.ok {
			s.log.Info("in contact with a Raft leader: naming masters to clients", "max_staleness", st.max)
			continue
		}
		dropped := 0
		if s.sentinel != nil {
			dropped = s.sentinel.DisconnectSubscribers()
		}
		age := "never"
		if v.age >= 0 {
			age = v.age.Round(time.Millisecond).String()
		}
		s.log.Warn("no contact with a Raft leader for longer than --max-staleness: no longer naming masters to clients (Sentinel discovery closes the connection, gRPC reads answer Unavailable) until contact returns",
			"last_contact_age", age, "max_staleness", st.max, "sentinel_subscribers_disconnected", dropped)
	}
}

// watchPeriod is how long the staleness watch may wait for its next look:
// fast on a leader, which must look within every lease (nextLeadership),
// and on a node that does not vouch, which says so soon after contact
// returns; on a follower that vouches, idleLoopPeriod as long as its next
// look still comes a fast period before the verdict lapses. A follower's
// contact renews with every heartbeat, so that holds while it has one: it
// then wakes once a second, with the monitor's idle loop, instead of ten
// times.
func watchPeriod(fast time.Duration, v verdict, leading bool, now time.Time) time.Duration {
	if leading || !v.ok || v.until.Sub(now) <= idleLoopPeriod+fast {
		return fast
	}
	return idleLoopPeriod
}

// caughtUpWithLeader reports whether this node has applied as far as its
// leader had once contact returned: a read index (staleness.caughtUpTo),
// so that a node back from a partition or a freeze names the masters the
// others named meanwhile, not the ones it had. A leader whose leadership
// counts is caught up by definition (one just resumed from a freeze is
// not: it may be deposed).
func (s *Server) caughtUpWithLeader() bool {
	if s.IsLeader() {
		return s.staleness.leadingNow()
	}
	return s.staleness.caughtUpTo(s.raft.AppliedIndex(), s.leaderApplied)
}

// leaderApplied asks the leader how far it has applied (at most a second).
func (s *Server) leaderApplied() (uint64, bool) {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return 0, false
	}
	n, ok := s.fsm.Node(string(id))
	if !ok {
		return 0, false
	}
	st := (&api{s: s}).remoteStatus(s.ctx, nodeMember(n))
	if st.GetState() != "leader" {
		return 0, false
	}
	return st.GetAppliedIndex(), true
}
