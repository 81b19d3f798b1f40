package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Committer commits commands through Raft on this node, the leader, and
// returns the index the last was applied at once applied. A command the
// state machine rejects returns its *fsm.Error. Several commands are
// proposed in order without waiting for each, so they cost one commit's
// wait; the error is the first command's that failed, and the ones after
// it are applied (or rejected) all the same.
type Committer interface {
	Commit(ctx context.Context, cmds ...*fsmv1.Command) (uint64, error)
}

// Leadership confirms that this node still leads. A deposed leader keeps
// believing it leads for up to raft's lease timeout, so every Redis command
// waits for this confirmation (raft's VerifyLeader) first.
type Leadership interface {
	VerifyLeader(ctx context.Context) error
}

// Observer is this node's latest view of the Redis instances and of its own
// health.
type Observer interface {
	// Observation is the probe's latest view of the instance at addr (ok
	// false: not watched). The leader looks up the instances it needs,
	// where a copy of every observation at every Step was, with hundreds
	// of masters, a quarter of the leader's loop and most of its garbage.
	Observation(addr string) (probe.Observation, bool)
	// Gens reads the current Gens of addrs' observations, in order
	// (probe.Watcher.Gens).
	Gens(addrs []string) GenReader
	// Tilt is this node's TILT detector as of its latest tick.
	Tilt() failover.Tilt
}

// Redis opens the leader's command connection to one instance, apart from
// the probe's, so that a slow command never delays a PING.
type Redis interface {
	Instance(addr string, auth probe.Auth) (Instance, error)
}

// Instance is the set of Redis commands a failover sends to one instance;
// *probe.Conn implements it. Every call returns within its context.
type Instance interface {
	Addr() string
	Info(ctx context.Context) (probe.Info, error)
	// FenceInfo reads what fencing needs (role, loading, the replicas and
	// their lag), less than Info, for the fence's frequent reads.
	FenceInfo(ctx context.Context) (probe.Info, error)
	// Promote makes the instance a master and returns its INFO as read
	// right after (probe.Conn.Promote).
	Promote(ctx context.Context, opts probe.PromoteOptions) (probe.Info, error)
	// RefusesConnections reports that nothing listens on the instance's
	// port; it sends no command.
	RefusesConnections(ctx context.Context) bool
	ReplicaOf(ctx context.Context, host string, port int) error
	FailoverTo(ctx context.Context, host string, port int, timeout time.Duration) error
	FailoverAbort(ctx context.Context) error
	PauseWrites(ctx context.Context, d time.Duration) error
	Unpause(ctx context.Context) error
	// HasFence reports whether min-replicas-to-write and
	// min-replicas-max-lag have these values; it only reads.
	HasFence(ctx context.Context, minReplicas int, maxLagSeconds int64) (bool, error)
	// SetFence sets min-replicas-to-write and min-replicas-max-lag.
	SetFence(ctx context.Context, minReplicas int, maxLagSeconds int64) error
	// SetMasterAuth sets masteruser and masterauth, the credentials the
	// instance gives its master.
	SetMasterAuth(ctx context.Context, auth probe.Auth) error
}

// MasterReader reads one master's record as this node last applied it,
// with the index the state reflects; *fsm.FSM implements it.
type MasterReader interface {
	Master(name string) (*fsmv1.Master, uint64, bool)
}

// Crash points of Config.Crash, like Sentinel's SIMULATE-FAILURE.
const (
	CrashAfterElection  = "crash-after-election"
	CrashAfterPromotion = "crash-after-promotion"
)

// Config is what a Leader acts through.
type Config struct {
	Commit     Committer
	Leadership Leadership
	Redis      Redis
	Observe    Observer
	// State, when set, lets a pass that has just committed a failover's
	// BeginFailover go on with the promotion at once, from the record it
	// committed, instead of waiting for the node's loop to start the next
	// pass (see pass.beginFailover); nil leaves every step to the next pass.
	State MasterReader
	// Now reads the clock; time.Now when nil.
	Now func() time.Time
	// Log receives the leader's decisions; slog.Default() when nil.
	Log *slog.Logger
	// Crash, when set, is called with a crash point right after the commit
	// it names (a test hook: the process is expected to exit there).
	Crash func(point string)

	// Hooks runs the masters' hooks (scripts and webhooks); nil runs none.
	Hooks HookRunner
	// HookPolicy bounds and spaces the runs; zero fields take
	// DefaultHookPolicy's.
	HookPolicy HookPolicy
	// OnHookRun, when set, is told the kind and result (HookResultOK,
	// HookResultFailed, HookResultTimeout) of every run; OnHookGaveUp of
	// every event a hook gave up on.
	OnHookRun    func(kind, result string)
	OnHookGaveUp func(kind string)
	// HandoverPollEvery is how often a coordinated handover reads the
	// candidate's INFO while the old master's writes are paused;
	// DefaultHandoverPollEvery when 0.
	HandoverPollEvery time.Duration
	// HandoverPollFor bounds how long one pass of the leader's loop keeps
	// polling the candidate before it goes on with the other masters (the
	// next passes poll again until the catch-up time is over);
	// DefaultHandoverPollFor when 0.
	HandoverPollFor time.Duration
}

const (
	// DefaultHandoverPollEvery: a replica that streams the master's writes
	// is a few milliseconds behind at most, so the pause lasts about that.
	DefaultHandoverPollEvery = 2 * time.Millisecond
	// DefaultHandoverPollFor keeps a replica that has fallen behind from
	// holding up the leader's loop for long (and well below TILT's 2 s).
	DefaultHandoverPollFor = 500 * time.Millisecond
)

const (
	// actionTimeout bounds one command the leader sends to Redis, so a
	// frozen instance cannot stall the loop.
	actionTimeout = 2 * time.Second
	// resendEvery spaces out repeats of an idempotent action that has not
	// shown its effect yet.
	resendEvery = 2 * time.Second
	// observeRefresh is how stale the committed offsets of a master with
	// max-lag may grow before the leader commits fresh ones, with few such
	// masters; see offsetRefresh.
	observeRefresh = 10 * time.Second
	// offsetCommitsPerSecond bounds the log entries that only refresh
	// offsets, over all masters with max-lag: every master's offsets move
	// all the time (Redis's replication PING alone moves them), and each
	// entry is written to every node's disk. Masters without max-lag get
	// no offset-only entries at all (see replicasUpdate).
	offsetCommitsPerSecond = 10
	// maxParallelPasses bounds the masters whose passes run at once. A
	// master never has two passes in flight (claim), so the masters
	// monitored bound them already; this caps the goroutines, command
	// connections and commits in flight beyond the 1,000 masters a cluster
	// is sized for. It must not be below the masters that can fail at once:
	// at 64, with a hundred masters failing over, the others' passes queued
	// behind passes that each wait on a command or a commit, and the node's
	// loop with them. When it is reached, Step skips the masters it cannot
	// start (the next Step starts them, in rotated order) instead of
	// waiting.
	maxParallelPasses = 1024
	// passWait is how long Step waits for the passes it started: long
	// enough for passes whose instances answer, short enough that the
	// node's loop (every 100 ms) is not held up by one that does not.
	passWait = 100 * time.Millisecond
	// commitTimeout bounds one commit of a journal step.
	commitTimeout = 5 * time.Second
	// VoteFreshness is how long the leader counts a down vote (Sentinel:
	// 5 x its one-second ask period). Nodes re-assert theirs more often.
	VoteFreshness = 5 * time.Second
)

// errTilt is returned for a Redis command refused because this node is in
// TILT: it was paused or starved, and its observations are not trusted.
var errTilt = errors.New("this node is in TILT: no Redis command until it has fresh observations")

// errUnconfirmed is returned for a Redis command not sent because the
// leadership check before it failed.
var errUnconfirmed = errors.New("not acting, leadership not confirmed")

// Leader executes failovers for one term of leadership. Its methods may be
// called from several goroutines (the node's loop and API calls).
type Leader struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// lastEnter and wasDown remember when an instance last entered SDOWN,
	// for the repair rules' "not down recently" checks.
	lastEnter map[string]time.Time
	wasDown   map[string]bool
	// lastAction rate-limits repeated commands, by kind and address.
	lastAction map[string]time.Time
	// fenceReads schedules the reads of each fenced master, by address.
	fenceReads map[string]fenceRead
	// released marks the handover pauses this leader has released, by
	// master and failover start; a new leader releases them once more,
	// which is harmless.
	released map[string]int64
	// hooks is the delivery state of each hook, by master and kind.
	hooks map[string]*hookState
	// hooksIdleOf is the last state view on which no hook had anything to
	// deliver (stepHooks).
	hooksIdleOf *fsmv1.State
	// hookWG counts the hook runs and the masters' passes in flight.
	hookWG sync.WaitGroup
	// running marks the masters whose pass is in flight, so that Step
	// never runs two passes of one master at once.
	running map[string]bool
	// committed is, by master, the index of the latest command its passes
	// committed (or had rejected); see claim.
	committed map[string]uint64
	nextFirst int           // where the next Step starts (rotate)
	slots     chan struct{} // one token per pass in flight
	work      chan func()   // passes for the idle workers (submit)
	// pausedOffset holds, by master, the offset this leader read from the
	// old master under a handover pause committed with its offset pending.
	pausedOffset map[string]pausedOffset
	// linkFailed is when this leader last saw a master's probe fail
	// (maintainFence), by address: its fence is not lowered for
	// failover.FenceSteadyFor after.
	linkFailed map[string]time.Time
	// caughtUpPaused holds, by master, the start of the automatic failover
	// whose old master this leader paused before the promotion
	// (catchUpBeforePromotion); it unpauses it once demoted.
	caughtUpPaused map[string]int64
	// steady holds, by master, the last pass that found it steady (see
	// steadyUntil), for skip.
	steady map[string]steadyPass
	// passesRun counts the passes that ran (not skipped), fencePasses
	// those of them that ran the fence alone (passFence).
	passesRun   atomic.Uint64
	fencePasses atomic.Uint64
	// names are the masters of the state view namesOf, sorted: every
	// Step needs them, and a view changes only with a commit.
	namesOf    *fsmv1.State
	names      []string
	lagLimited int
}

// Start makes the leader for one term. It must be created after raft's
// Barrier, so it sees everything earlier leaders committed; its commands
// are cancelled when parent ends or Stop is called.
func Start(parent context.Context, cfg Config) *Leader {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.HandoverPollEvery <= 0 {
		cfg.HandoverPollEvery = DefaultHandoverPollEvery
	}
	if cfg.HandoverPollFor <= 0 {
		cfg.HandoverPollFor = DefaultHandoverPollFor
	}
	ctx, cancel := context.WithCancel(parent)
	return &Leader{cfg: cfg, ctx: ctx, cancel: cancel, lastEnter: map[string]time.Time{}, wasDown: map[string]bool{},
		lastAction: map[string]time.Time{}, fenceReads: map[string]fenceRead{}, released: map[string]int64{}, hooks: map[string]*hookState{},
		running: map[string]bool{}, committed: map[string]uint64{}, slots: make(chan struct{}, maxParallelPasses), work: make(chan func()), pausedOffset: map[string]pausedOffset{},
		linkFailed: map[string]time.Time{}, caughtUpPaused: map[string]int64{}, steady: map[string]steadyPass{}}
}

// Stop ends the term: commands in flight are cancelled and nothing more is
// sent. It returns at once; the caller drops the Leader.
func (l *Leader) Stop() { l.cancel() }

// Wait returns once the hook runs and passes started by this Leader have ended (after
// Stop, promptly: their context is cancelled).
func (l *Leader) Wait() { l.hookWG.Wait() }

// Step runs one pass of the leader's work over every master of st: record
// what it sees, judge ODOWN, and start, resume or finish failovers. A node
// in TILT does nothing until its observations are fresh again. A master
// whose last pass found it steady, on the same record and observations,
// is skipped until that pass's deadlines (skip, steadyUntil).
//
// Each master's pass runs on its own goroutine, at most maxParallelPasses
// at once, so that one master whose instances are slow to answer (a frozen
// master costs actionTimeout per command) never holds up the failover of
// another: with a hundred masters failing at once they are failed over
// side by side. Step waits for the passes it started for up to passWait,
// which is all of them when Redis answers, and returns; a master whose
// pass is still running is skipped until it ends. st must not change
// afterwards (the passes keep reading it).
//
// Step returns when it must run again at the latest if neither st nor an
// observation changes: now while anything is in motion (a pass ran or is
// still running, a hook has something to deliver, TILT), else the first
// deadline of the masters it skipped (skip); zero when it has no master.
// Until then another Step, on the same view and observations, would skip
// the same masters and do nothing.
func (l *Leader) Step(st *fsmv1.State) (next time.Time) {
	now := l.cfg.Now()
	soon := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	// Hooks read only the committed log, so TILT does not hold them.
	if l.stepHooks(st, now) {
		soon(now)
	}
	tilt := l.cfg.Observe.Tilt()
	if tilt.Active(now) {
		return now
	}
	obs := l.cfg.Observe.Observation
	var started sync.WaitGroup
	passes := 0
	names, lagLimited := l.viewOf(st)
	refresh := offsetRefresh(lagLimited)
	// Rotated at every Step, so that when the slots run out it is not
	// always the same masters that wait for the next Step.
	first := l.rotate(len(names))
	for i := range names {
		name := names[(first+i)%len(names)]
		if l.ctx.Err() != nil {
			break
		}
		m := st.Masters[name]
		l.mu.Lock()
		sp, steady := l.steady[name]
		l.mu.Unlock()
		var link probe.Link
		var seen bool
		if m.GetFailover() == nil {
			link, seen = linkOf(sp, steady, m, obs)
			l.noteLinkFailure(m.GetAddress(), link, seen, now)
		}
		kind, again := l.skip(sp, steady, m, now)
		if kind == passNone {
			soon(again)
			continue
		}
		if !l.claim(name, st.GetAppliedIndex()) {
			soon(now)
			continue
		}
		select {
		case l.slots <- struct{}{}:
		default:
			// Every slot is taken: this master waits for the next Step,
			// and the node's loop does not wait for a slot.
			l.release(name)
			soon(now)
			continue
		}
		p := &pass{l: l, ctx: l.ctx, m: m, now: now}
		var fence fencePlan
		if kind == passFence {
			// The steady record stays: its SDOWN deadline is the last
			// full pass's. Planned here, on the steady record's
			// ChangeGens and the link Step just read (a steady master
			// has no failover); a worker gets the pass only for I/O.
			l.passesRun.Add(1)
			l.fencePasses.Add(1)
			var work bool
			if fence, work = p.planFence(link, seen, sp.in.changes); !work {
				<-l.slots
				l.release(name)
				// The read is taken (or the link is failing): skip
				// says when this master is due again.
				_, again := l.skip(sp, steady, m, now)
				soon(again)
				continue
			}
		}
		soon(now)
		p.obs = newView(obs)
		if p.m.GetSettings().GetMaxLagBytes() > 0 {
			p.offsetRefresh = refresh
		}
		started.Add(1)
		passes++
		l.submit(func() {
			defer started.Done()
			defer func() { <-l.slots }()
			defer l.release(name)
			if kind == passFence {
				if err := p.fenceIO(fence); err != nil {
					l.cfg.Log.Warn("fence", "master", name, "err", err)
				}
				return
			}
			l.passesRun.Add(1)
			err := p.run()
			if err != nil {
				l.cfg.Log.Warn("failover step", "master", name, "err", err)
			}
			l.notePass(p, err)
		})
	}
	if passes == 0 {
		return next // most Steps: every master skipped, nothing to wait for
	}
	done := make(chan struct{})
	go func() {
		started.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(passWait):
	case <-l.ctx.Done():
	}
	return next
}

// submit runs a pass on an idle worker, or on a new one when all are busy
// (at most maxParallelPasses are, as each holds a slot). Workers live as
// long as the Leader: a goroutine per master per pass grew a fresh stack
// each time, a tenth of a pass's cost.
func (l *Leader) submit(fn func()) {
	l.hookWG.Add(1) // the pass, not the worker: Wait waits for passes
	task := func() {
		defer l.hookWG.Done()
		fn()
	}
	select {
	case l.work <- task:
		return
	default:
	}
	go func() {
		for {
			task()
			select {
			case task = <-l.work:
			case <-l.ctx.Done():
				return
			}
		}
	}()
}

// claim marks name's pass as running, unless one already is, or the state
// at index applied is older than the master's last commit: a pass that
// ended while Step was going through the masters committed a step the
// state Step holds does not show yet, and a pass on it would only repeat
// that step (and be rejected, a wasted commit) or act on what it undid.
// The node's loop steps again on the change, with the newer state.
func (l *Leader) claim(name string, applied uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running[name] || applied < l.committed[name] {
		return false
	}
	l.running[name] = true
	return true
}

// rotate is where Step starts in the list of n masters this time.
func (l *Leader) rotate(n int) int {
	if n == 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nextFirst = (l.nextFirst + 1) % n
	return l.nextFirst
}

// noteCommit records the index of a master's latest commit (see claim).
func (l *Leader) noteCommit(name string, index uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.committed[name] = max(l.committed[name], index)
}

func (l *Leader) release(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.running, name)
}

// offsetRefresh is how stale the committed offsets of a master with
// max-lag may grow when the cluster monitors masters of them with max-lag:
// observeRefresh, or longer so that offset-only refreshes stay within
// offsetCommitsPerSecond in all.
func offsetRefresh(masters int) time.Duration {
	return max(observeRefresh, time.Duration(masters)*time.Second/offsetCommitsPerSecond)
}

// due rate-limits a repeated action on one instance: it reports true, and
// starts a new wait, when the last one of that kind is resendEvery old.
func (l *Leader) due(kind, addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := kind + " " + addr
	if last, ok := l.lastAction[key]; ok && now.Sub(last) < resendEvery && now.Sub(last) >= 0 {
		return false
	}
	l.lastAction[key] = now
	return true
}

// dueEvery is due with its own period.
func (l *Leader) dueEvery(kind, addr string, now time.Time, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := kind + " " + addr
	if last, ok := l.lastAction[key]; ok && now.Sub(last) < every && now.Sub(last) >= 0 {
		return false
	}
	l.lastAction[key] = now
	return true
}

func (l *Leader) noteDown(addr string, down bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if down && !l.wasDown[addr] {
		l.lastEnter[addr] = now
	}
	l.wasDown[addr] = down
}

func (l *Leader) lastEntered(addr string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastEnter[addr]
}

func (l *Leader) crash(point string) {
	if l.cfg.Crash != nil {
		l.cfg.Crash(point)
	}
}

// viewOf returns st's master names in order (shared: read it, never write
// it) and how many of its masters have max-lag (lagLimited), worked out
// once per view.
func (l *Leader) viewOf(st *fsmv1.State) (names []string, lagLimited int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == l.namesOf {
		return l.names, l.lagLimited
	}
	names = make([]string, 0, len(st.GetMasters()))
	for name, m := range st.GetMasters() {
		names = append(names, name)
		if m.GetSettings().GetMaxLagBytes() > 0 {
			lagLimited++
		}
	}
	slices.Sort(names)
	l.namesOf, l.names, l.lagLimited = st, names, lagLimited
	return names, lagLimited
}

// act sends one Redis command within d, after checking that this node may
// still act: it is not in TILT and it still leads. Checking per command
// matters because a step may run for seconds, during which a pause or an
// election can happen.
func (p *pass) act(d time.Duration, fn func(context.Context) error) error {
	return p.actWithin(0, d, fn)
}

// actWithin is act with a budget of its own for the leadership check:
// verify (when above zero), after which fn gets all of d. A command whose
// timeout is short by design (demoteTimeout) would otherwise lose it to a
// leadership round trip that a loaded machine made slow, and fail for a
// reason that says nothing about the instance.
func (p *pass) actWithin(verify, d time.Duration, fn func(context.Context) error) error {
	if p.l.cfg.Observe.Tilt().Active(p.l.cfg.Now()) {
		return errTilt
	}
	if verify > 0 {
		vctx, vcancel := context.WithTimeout(p.ctx, verify)
		err := p.l.cfg.Leadership.VerifyLeader(vctx)
		vcancel()
		if err != nil {
			return fmt.Errorf("%w: %w", errUnconfirmed, err)
		}
	}
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	if verify <= 0 {
		if err := p.l.cfg.Leadership.VerifyLeader(ctx); err != nil {
			return fmt.Errorf("%w: %w", errUnconfirmed, err)
		}
	}
	// go-redis honours a context's deadline but not its cancellation, so a
	// command to a frozen instance would hold the loop until d even after
	// Stop. Waiting on ctx instead returns at once; the command, already
	// sent, ends by d in the background.
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ask reads INFO within d. It is an observation, not an action, so it needs
// no leadership check.
func (p *pass) ask(c Instance, d time.Duration) (probe.Info, error) {
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	return c.Info(ctx)
}

// askFence reads the fence's INFO within d (see ask).
func (p *pass) askFence(c Instance, d time.Duration) (probe.Info, error) {
	ctx, cancel := context.WithTimeout(p.ctx, d)
	defer cancel()
	return c.FenceInfo(ctx)
}

// commit commits cmds, the nil ones left out, in one Commit; with none
// left it does nothing.
func (p *pass) commit(cmds ...*fsmv1.Command) error {
	cmds = slices.DeleteFunc(cmds, func(c *fsmv1.Command) bool { return c == nil })
	if len(cmds) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(p.ctx, commitTimeout)
	defer cancel()
	idx, err := p.l.cfg.Commit.Commit(ctx, cmds...)
	if idx != 0 {
		p.l.noteCommit(p.m.GetName(), idx)
	}
	return err
}
