package server

import (
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestVouching(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	never := time.Time{}
	lead := func(credited time.Time) leadership { return leadership{credited: credited} }
	for _, tc := range []struct {
		name        string
		lead        leadership
		lastContact time.Time
		now         time.Time
		bound       time.Duration
		ok          bool
		age         time.Duration
	}{
		{"follower heard from the leader just now", lead(never), t0, t0.Add(50 * time.Millisecond), 2 * time.Second, true, 50 * time.Millisecond},
		{"follower at the bound", lead(never), t0, t0.Add(2 * time.Second), 2 * time.Second, true, 2 * time.Second},
		{"follower past the bound", lead(never), t0, t0.Add(2*time.Second + time.Millisecond), 2 * time.Second, false, 2*time.Second + time.Millisecond},
		{"never any contact", lead(never), never, t0, 2 * time.Second, false, -1},
		{"leading counts as contact", lead(t0), never, t0.Add(time.Second), 2 * time.Second, true, time.Second},
		{"a deposed leader keeps its last leading time", lead(t0), t0.Add(-time.Hour), t0.Add(3 * time.Second), 2 * time.Second, false, 3 * time.Second},
		{"the newer of the two counts", lead(t0.Add(-time.Minute)), t0, t0.Add(time.Second), 2 * time.Second, true, time.Second},
		{"the contact Raft set at a step down does not count", leadership{credited: t0.Add(-10 * time.Second), stepDownContact: t0}, t0, t0.Add(time.Second), 2 * time.Second, false, 11 * time.Second},
		{"a contact after the step down counts", leadership{credited: t0.Add(-10 * time.Second), stepDownContact: t0}, t0.Add(100 * time.Millisecond), t0.Add(time.Second), 2 * time.Second, true, 900 * time.Millisecond},
		{"bound 0 always vouches", lead(never), t0.Add(-time.Hour), t0, 0, true, time.Hour},
		{"negative bound always vouches, even never", lead(never), never, t0, NoMaxStaleness, true, -1},
		{"clock behind the contact", lead(never), t0.Add(time.Second), t0, 2 * time.Second, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, age := vouching(tc.lead, tc.lastContact, tc.now, tc.bound)
			if ok != tc.ok || age != tc.age {
				t.Fatalf("vouching = %v, %v; want %v, %v", ok, age, tc.ok, tc.age)
			}
		})
	}
}

func TestNextLeadership(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	lease := 250 * time.Millisecond
	idle := 900 * time.Millisecond
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	contact := ms(-5000)
	for _, tc := range []struct {
		name   string
		prev   leadership
		leader bool
		now    time.Time
		idle   time.Duration
		want   leadership
	}{
		{name: "first look, follower", prev: leadership{}, now: t0, want: leadership{lastLook: t0}},
		{name: "first look, leader: on probation for a lease", prev: leadership{}, leader: true, now: t0,
			want: leadership{lastLook: t0, leading: true, probation: ms(250)}},
		{name: "elected while looked at: counts at once", prev: leadership{lastLook: ms(100)}, leader: true, now: ms(150),
			want: leadership{lastLook: ms(150), leading: true, credited: ms(150)}},
		{name: "leading, looked at without a gap", prev: leadership{lastLook: ms(150), leading: true, credited: ms(150)}, leader: true, now: ms(250),
			want: leadership{lastLook: ms(250), leading: true, credited: ms(250)}},
		{name: "a gap of more than a lease (frozen): on probation", prev: leadership{lastLook: ms(300), leading: true, credited: ms(300)}, leader: true, now: ms(10300),
			want: leadership{lastLook: ms(10300), leading: true, probation: ms(10550), credited: ms(300)}},
		{name: "still on probation", prev: leadership{lastLook: ms(10300), leading: true, probation: ms(10550), credited: ms(300)}, leader: true, now: ms(10500),
			want: leadership{lastLook: ms(10500), leading: true, probation: ms(10550), credited: ms(300)}},
		{name: "still leading a lease after the gap: counts again", prev: leadership{lastLook: ms(10500), leading: true, probation: ms(10550), credited: ms(300)}, leader: true, now: ms(10550),
			want: leadership{lastLook: ms(10550), leading: true, probation: ms(10550), credited: ms(10550)}},
		{name: "stepped down: the last credit stays, Raft's contact then is noted", prev: leadership{lastLook: ms(300), leading: true, credited: ms(300)}, now: ms(400),
			want: leadership{lastLook: ms(400), credited: ms(300), stepDownContact: contact}},
		{name: "a gap as a follower starts no probation", prev: leadership{lastLook: ms(300), credited: ms(300)}, now: ms(10300),
			want: leadership{lastLook: ms(10300), credited: ms(300)}},
		{name: "elected during a follower's idle wait: counts at once", prev: leadership{lastLook: ms(100)}, leader: true, now: ms(1250), idle: idle,
			want: leadership{lastLook: ms(1250), leading: true, credited: ms(1250)}},
		{name: "a follower's gap beyond its idle wait and a lease: on probation", prev: leadership{lastLook: ms(100)}, leader: true, now: ms(1251), idle: idle,
			want: leadership{lastLook: ms(1251), leading: true, probation: ms(1501)}},
		{name: "the idle wait lengthens no leader's gap", prev: leadership{lastLook: ms(300), leading: true, credited: ms(300)}, leader: true, now: ms(600), idle: idle,
			want: leadership{lastLook: ms(600), leading: true, probation: ms(850), credited: ms(300)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextLeadership(tc.prev, tc.leader, contact, tc.now, lease, tc.idle); got != tc.want {
				t.Fatalf("nextLeadership = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWatchPeriod(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	fast := 100 * time.Millisecond
	vouching := func(lapses time.Duration) verdict { return verdict{ok: true, until: now.Add(lapses)} }
	for _, tc := range []struct {
		name    string
		v       verdict
		leading bool
		want    time.Duration
	}{
		{"follower in contact: idle", vouching(2800 * time.Millisecond), false, idleLoopPeriod},
		{"leader: fast, to look within every lease", vouching(2800 * time.Millisecond), true, fast},
		{"not vouching: fast, to see contact return", verdict{age: 5 * time.Second}, false, fast},
		{"catching up: fast", verdict{catchingUp: true}, false, fast},
		{"lapses before an idle wait and a fast look: fast", vouching(idleLoopPeriod + fast), false, fast},
		{"lapses just after: idle", vouching(idleLoopPeriod + fast + 1), false, idleLoopPeriod},
	} {
		if got := watchPeriod(fast, tc.v, tc.leading, now); got != tc.want {
			t.Errorf("%s: watchPeriod = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeRaft is what staleness reads of Raft.
type fakeRaft struct {
	mu      sync.Mutex
	state   raft.RaftState
	contact time.Time
}

func (f *fakeRaft) State() raft.RaftState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func (f *fakeRaft) LastContact() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.contact
}

func (f *fakeRaft) set(st raft.RaftState, contact time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state, f.contact = st, contact
}

// The verdict's transitions close and renew lostCh, and the refusal is an
// Unavailable status with its reason.
func TestStalenessTransitions(t *testing.T) {
	r := &fakeRaft{state: raft.Follower}
	st := newStaleness(r, 2*time.Second, 250*time.Millisecond)
	t0 := time.Unix(1_000_000, 0)
	if v, _ := st.check(t0); v.ok {
		t.Fatal("vouches before any contact")
	}
	if !isClosed(st.lostCh()) {
		t.Fatal("lostCh open while not vouching")
	}
	r.set(raft.Follower, t0)
	v, changed := st.check(t0.Add(100 * time.Millisecond))
	if !v.ok || !changed || v.until != t0.Add(2*time.Second) {
		t.Fatalf("after contact: %+v changed=%v, want ok until contact+2s", v, changed)
	}
	lost := st.lostCh()
	if isClosed(lost) {
		t.Fatal("lostCh closed while vouching")
	}
	v, changed = st.check(t0.Add(2500 * time.Millisecond))
	if v.ok || !changed || !isClosed(lost) {
		t.Fatalf("2.5 s after the last contact: %+v changed=%v lost closed=%v", v, changed, isClosed(lost))
	}
	err := st.err("n2", v)
	s := status.Convert(err)
	if s.Code() != codes.Unavailable || len(s.Details()) != 1 {
		t.Fatalf("refusal: %v", err)
	}
	if info, ok := s.Details()[0].(*errdetails.ErrorInfo); !ok || info.GetReason() != ReasonNoLeaderContact || info.GetMetadata()["stale_for"] != "2.5s" {
		t.Fatalf("refusal's detail: %v", s.Details())
	}
	if want := "node n2 has had no contact with a Raft leader for 2.5s (more than --max-staleness 2s)"; len(s.Message()) < len(want) || s.Message()[:len(want)] != want {
		t.Fatalf("refusal's message: %q", s.Message())
	}

	// Contact again: not before catching up.
	r.set(raft.Follower, t0.Add(2600*time.Millisecond))
	if v, _ := st.check(t0.Add(2650 * time.Millisecond)); v.ok || !v.catchingUp {
		t.Fatalf("in contact again, not caught up: %+v", v)
	}
	if err := status.Convert(st.err("n2", verdict{catchingUp: true})); err.Code() != codes.Unavailable {
		t.Fatalf("refusal while catching up: %v", err)
	}
	st.setCaughtUp()
	if v, changed := st.check(t0.Add(2700 * time.Millisecond)); !v.ok || !changed || isClosed(st.lostCh()) {
		t.Fatalf("caught up: %+v changed=%v", v, changed)
	}
	// Elected, looked at without a gap: counts at once.
	r.set(raft.Leader, t0)
	if v, _ := st.check(t0.Add(2750 * time.Millisecond)); !v.ok {
		t.Fatal("a leader seen without a gap does not vouch")
	}
	// Frozen for 10 s: the stored verdict has lapsed, and the first look
	// after the gap does not count the leadership Raft still reports.
	if v, _ := st.check(t0.Add(12750 * time.Millisecond)); v.ok {
		t.Fatal("a leader resumed after a 10 s gap vouched at once")
	}
	// It steps down: Raft sets LastContact to the step down, which is no
	// contact with a leader.
	r.set(raft.Follower, t0.Add(12760*time.Millisecond))
	if v, _ := st.check(t0.Add(12770 * time.Millisecond)); v.ok {
		t.Fatal("a resumed leader vouched on the contact Raft set at its step down")
	}
	// The new leader's heartbeat: in contact, not caught up.
	r.set(raft.Follower, t0.Add(12800*time.Millisecond))
	if v, _ := st.check(t0.Add(12810 * time.Millisecond)); v.ok || !v.catchingUp {
		t.Fatalf("the new leader's heartbeat: %+v, want catching up", v)
	}
	// Always: never refuses, before any contact too.
	always := newStaleness(&fakeRaft{state: raft.Candidate}, NoMaxStaleness, 250*time.Millisecond)
	if v := always.now(); !v.ok {
		t.Fatal("max-staleness off refused")
	}
}

func TestDefaultMaxStaleness(t *testing.T) {
	for _, tc := range []struct{ heartbeat, want time.Duration }{
		{150 * time.Millisecond, 2 * time.Second},
		{500 * time.Millisecond, 2 * time.Second},
		{time.Second, 3 * time.Second},
		{5 * time.Second, 15 * time.Second},
	} {
		if got := defaultMaxStaleness(tc.heartbeat); got != tc.want {
			t.Errorf("heartbeat %v: %v, want %v", tc.heartbeat, got, tc.want)
		}
	}
}

// Catching up compares with the leader's applied index as read once after
// contact returned, not as it moves on; a read that fails is tried again,
// and a loss of contact starts over with a new read.
func TestCaughtUpToReadsTheLeaderOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := &fakeRaft{state: raft.Follower, contact: t0}
	st := newStaleness(r, 2*time.Second, 500*time.Millisecond)
	st.check(t0)
	r.set(raft.Follower, t0) // no contact since: lost at +2.5 s
	st.check(t0.Add(2500 * time.Millisecond))
	r.set(raft.Follower, t0.Add(3*time.Second))
	if v, _ := st.check(t0.Add(3 * time.Second)); !v.catchingUp {
		t.Fatalf("in contact again: %+v, want catching up", v)
	}

	reads := 0
	leader := func(idx uint64, ok bool) func() (uint64, bool) {
		return func() (uint64, bool) { reads++; return idx, ok }
	}
	if st.caughtUpTo(50, leader(0, false)) || reads != 1 {
		t.Fatalf("caught up with a leader that did not answer (reads %d)", reads)
	}
	if st.caughtUpTo(90, leader(100, true)) || reads != 2 {
		t.Fatalf("caught up at 90 with the leader at 100 (reads %d)", reads)
	}
	// The leader has moved on to 120; the target stays 100.
	if !st.caughtUpTo(100, leader(120, true)) || reads != 2 {
		t.Fatalf("not caught up at 100, the leader's index when read (reads %d, want 2)", reads)
	}

	// Lost and back again: a new read.
	st.check(t0.Add(6 * time.Second))
	r.set(raft.Follower, t0.Add(7*time.Second))
	st.check(t0.Add(7 * time.Second))
	if st.caughtUpTo(100, leader(130, true)) || reads != 3 {
		t.Fatalf("after a new loss of contact: caught up at 100 with the leader at 130 (reads %d, want 3)", reads)
	}
	st.setCaughtUp()
	if v, _ := st.check(t0.Add(7100 * time.Millisecond)); !v.ok {
		t.Fatalf("caught up: %+v", v)
	}
}
