package orchestrator

// The harness runs a Leader against fakes: a committer that applies every
// command to a real fsm.FSM, a fake clock, an Observer whose observations are
// refreshed from a small model of the Redis instances (like the probe would),
// a Leadership that can be made to fail, and a Redis whose instances record
// every command in one trace shared with the commits, so that tests can check
// what was committed before what was sent. Step returns once the commands
// it sent have returned, so tests drive it pass by pass with the fake clock:
// nothing polls and nothing sleeps.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const (
	masterName = "mymaster"
	addrM      = "10.0.0.1:6379" // the monitored master
	addrR1     = "10.0.0.2:6379" // priority 100, the largest offset: loses on priority
	addrR2     = "10.0.0.3:6379" // priority 10, offset 900: the best replica
	addrR3     = "10.0.0.4:6379" // priority 10, offset 800: loses on offset
	addrR4     = "10.0.0.5:6379" // priority 0: never promoted
)

var replicaAddrs = []string{addrR1, addrR2, addrR3, addrR4}

// t0 is when every test starts.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// ---- clock ----

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ---- trace ----

// entry is one commit ("commit ..."), rejected commit ("rejected ..."),
// Redis command ("redis <addr> ...") or test marker, with the fake time.
type entry struct {
	at   time.Time
	text string
}

type trace struct {
	clock   *fakeClock
	mu      sync.Mutex
	entries []entry
}

func (t *trace) add(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries = append(t.entries, entry{at: t.clock.Now(), text: fmt.Sprintf(format, args...)})
}

func (t *trace) snapshot() []entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.entries)
}

func (t *trace) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// ---- committer ----

// fakeCommitter applies commands to a real state machine, the way the
// server's apply does through Raft: stamped with the (fake) time, encoded,
// applied at the next index.
type fakeCommitter struct {
	clock *fakeClock
	trace *trace
	fsm   *fsm.FSM

	mu    sync.Mutex
	index uint64
	// fail, when set, refuses a command before it reaches the state
	// machine (a commit that times out), when it returns an error.
	fail func(cmd *fsmv1.Command) error
	// kinds lists every command kind the state machine accepted, in order.
	kinds []string
	// rejected lists every command it refused, with the error.
	rejected []string
	// together lists the commands of every Commit of more than one.
	together [][]string
	// onCommit, when set, is called with each command a Commit applied,
	// once the Commit has released the committer (so it may commit).
	onCommit func(cmd *fsmv1.Command)
}

// Commit applies cmds in order, all of them, and returns the first
// error, as the server's does.
func (c *fakeCommitter) Commit(ctx context.Context, cmds ...*fsmv1.Command) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	onCommit := c.onCommit
	if onCommit != nil {
		defer func() {
			for _, cmd := range cmds {
				onCommit(cmd)
			}
		}()
	}
	defer c.mu.Unlock()
	if len(cmds) > 1 {
		var kinds []string
		for _, cmd := range cmds {
			kinds = append(kinds, kindOf(cmd))
		}
		c.together = append(c.together, kinds)
	}
	var index uint64
	var first error
	for _, cmd := range cmds {
		idx, err := c.commitLocked(cmd)
		if first == nil {
			index, first = idx, err
		}
	}
	return index, first
}

func (c *fakeCommitter) commitLocked(cmd *fsmv1.Command) (uint64, error) {
	if c.fail != nil {
		if err := c.fail(cmd); err != nil {
			c.trace.add("failed %s: %v", describe(cmd), err)
			return 0, err
		}
	}
	cmd.ProposedAtUnixNanos = c.clock.Now().UnixNano()
	data, err := fsm.Encode(cmd)
	if err != nil {
		return 0, err
	}
	c.index++
	res, ok := c.fsm.Apply(&raft.Log{Index: c.index, Data: data}).(*fsm.Result)
	if !ok {
		return 0, fmt.Errorf("apply returned %T", res)
	}
	if res.Err != nil {
		c.rejected = append(c.rejected, describe(cmd)+": "+res.Err.Error())
		c.trace.add("rejected %s: %v", describe(cmd), res.Err)
		return res.Index, res.Err
	}
	c.kinds = append(c.kinds, kindOf(cmd))
	c.trace.add("commit %s", describe(cmd))
	return res.Index, nil
}

func kindOf(cmd *fsmv1.Command) string {
	name := fmt.Sprintf("%T", cmd.GetKind())
	return name[strings.LastIndex(name, "_")+1:]
}

// describe names a command with the fields the tests look at.
func describe(cmd *fsmv1.Command) string {
	switch k := cmd.GetKind().(type) {
	case *fsmv1.Command_ReportVote:
		return fmt.Sprintf("ReportVote %s down=%v", k.ReportVote.GetNodeId(), k.ReportVote.GetDown())
	case *fsmv1.Command_SetObjectiveDown:
		return fmt.Sprintf("SetObjectiveDown down=%v", k.SetObjectiveDown.GetDown())
	case *fsmv1.Command_BeginFailover:
		return fmt.Sprintf("BeginFailover %s %s", k.BeginFailover.GetReason(), k.BeginFailover.GetCandidate())
	case *fsmv1.Command_AbortFailover:
		return "AbortFailover " + k.AbortFailover.GetEvent()
	case *fsmv1.Command_Promoted:
		return "Promoted " + k.Promoted.GetAddress()
	case *fsmv1.Command_ReplicaReconfigured:
		return fmt.Sprintf("ReplicaReconfigured %s %s", k.ReplicaReconfigured.GetAddress(),
			strings.TrimPrefix(k.ReplicaReconfigured.GetPhase().String(), "RECONF_PHASE_"))
	case *fsmv1.Command_FinishFailover:
		if k.FinishFailover.GetTimedOut() {
			return "FinishFailover timed-out"
		}
		return "FinishFailover"
	case *fsmv1.Command_RecordRepair:
		return fmt.Sprintf("RecordRepair %s %s", k.RecordRepair.GetAddress(), k.RecordRepair.GetEvent())
	case *fsmv1.Command_HandoverPaused:
		if k.HandoverPaused.GetOffsetPending() {
			return "HandoverPaused offset=pending"
		}
		return fmt.Sprintf("HandoverPaused offset=%d", k.HandoverPaused.GetOffset())
	}
	return kindOf(cmd)
}

// ---- leadership ----

type fakeLeadership struct {
	mu    sync.Mutex
	err   error
	calls int
}

func (f *fakeLeadership) VerifyLeader(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.err
}

func (f *fakeLeadership) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeLeadership) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// ---- observer ----

type fakeObserver struct {
	mu  sync.Mutex
	obs map[string]probe.Observation
	// tilt, when set, answers Tilt; calls counts the questions.
	tilt  func(call int) failover.Tilt
	calls int
}

func (o *fakeObserver) Observation(addr string) (probe.Observation, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ob, ok := o.obs[addr]
	if ok && ob.Info != nil {
		in := ob.Info.Clone()
		ob.Info = &in
	}
	return ob, ok
}

func (o *fakeObserver) Gens(addrs []string) GenReader { return lookupGens{o.Observation, addrs} }

func (o *fakeObserver) Observations() map[string]probe.Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]probe.Observation, len(o.obs))
	for a, ob := range o.obs {
		if ob.Info != nil {
			in := ob.Info.Clone()
			ob.Info = &in
		}
		out[a] = ob
	}
	return out
}

func (o *fakeObserver) Tilt() failover.Tilt {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.tilt == nil {
		return failover.Tilt{}
	}
	return o.tilt(o.calls)
}

func (o *fakeObserver) setTilt(f func(call int) failover.Tilt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tilt, o.calls = f, 0
}

// ---- Redis ----

// fakeServer is the model of one Redis instance.
type fakeServer struct {
	up     bool
	info   probe.Info // ConnectedReplicas is computed
	paused bool
	// fence is min-replicas-to-write and min-replicas-max-lag as set.
	fence [2]int64
	// masterAuth is masteruser and masterauth as last set (nil: never).
	masterAuth *probe.Auth
	// lag is the lag the replica's master lists for it (seconds since its
	// last acknowledgement).
	lag int64
}

// errIgnored, returned by a hook, makes the command reply OK without its
// effect (a server that accepts REPLICAOF NO ONE but never changes role).
var errIgnored = errors.New("ignored")

type hook func(ctx context.Context) error

type fakeRedis struct {
	trace *trace

	mu      sync.Mutex
	servers map[string]*fakeServer
	hooks   map[string]hook // by "addr COMMAND"
	// linkAfterReplicaOf is the master_link_status REPLICAOF leaves.
	linkAfterReplicaOf string
	auths              map[string]probe.Auth
}

func (r *fakeRedis) Instance(addr string, auth probe.Auth) (Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auths[addr] = auth
	return &fakeInstance{r: r, addr: addr}, nil
}

func (r *fakeRedis) setLinkAfterReplicaOf(status string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.linkAfterReplicaOf = status
}

func (r *fakeRedis) setHook(addr, command string, h hook) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if h == nil {
		delete(r.hooks, addr+" "+command)
		return
	}
	r.hooks[addr+" "+command] = h
}

// infoLocked is the INFO addr would answer now.
func (r *fakeRedis) infoLocked(addr string) probe.Info {
	s := r.servers[addr]
	in := s.info.Clone()
	in.ConnectedReplicas = nil
	in.MinReplicasOn = s.fence[0] > 0 && s.fence[1] > 0
	if in.Role != probe.RoleMaster {
		return in
	}
	for _, a := range slices.Sorted(maps.Keys(r.servers)) {
		o := r.servers[a]
		if a == addr || !o.up || o.info.Role != probe.RoleSlave || !o.info.MasterLinkUp() ||
			net.JoinHostPort(o.info.MasterHost, strconv.Itoa(o.info.MasterPort)) != addr {
			continue
		}
		h, p, _ := splitHostPort(a)
		in.ConnectedReplicas = append(in.ConnectedReplicas, probe.ReplicaInfo{IP: h, Port: p, State: "online", Offset: o.info.SlaveReplOffset, Lag: o.lag})
	}
	return in
}

type fakeInstance struct {
	r    *fakeRedis
	addr string
}

var _ Instance = (*fakeInstance)(nil)

// do records the command, then runs its hook or its effect on a reachable
// server.
func (i *fakeInstance) do(ctx context.Context, command, text string, effect func(s *fakeServer)) error {
	i.r.trace.add("redis %s %s", i.addr, text)
	if err := ctx.Err(); err != nil {
		return err
	}
	i.r.mu.Lock()
	h := i.r.hooks[i.addr+" "+command]
	i.r.mu.Unlock()
	if h != nil {
		err := h(ctx)
		if errors.Is(err, errIgnored) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	i.r.mu.Lock()
	defer i.r.mu.Unlock()
	s := i.r.servers[i.addr]
	if s == nil || !s.up {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	effect(s)
	return nil
}

func (i *fakeInstance) Addr() string { return i.addr }

func (i *fakeInstance) Info(ctx context.Context) (probe.Info, error) {
	var out probe.Info
	err := i.do(ctx, "INFO", "INFO", func(*fakeServer) { out = i.r.infoLocked(i.addr) })
	return out, err
}

// FenceInfo is Info: the fake's INFO holds every section's fields.
func (i *fakeInstance) FenceInfo(ctx context.Context) (probe.Info, error) { return i.Info(ctx) }

// Promote traces its unfence on a line of its own, before REPLICAOF NO
// ONE, though both go in one transaction; its hook key is "PROMOTE".
func (i *fakeInstance) Promote(ctx context.Context, opts probe.PromoteOptions) (probe.Info, error) {
	if opts.Unfence {
		i.r.trace.add("redis %s CONFIG SET min-replicas-to-write 0", i.addr)
	}
	var out probe.Info
	err := i.do(ctx, "PROMOTE", "REPLICAOF NO ONE", func(s *fakeServer) {
		if opts.Unfence {
			s.fence[0] = 0
		}
		becomeMaster(s)
		out = i.r.infoLocked(i.addr)
	})
	return out, err
}

// becomeMaster is REPLICAOF NO ONE's effect on s.
func becomeMaster(s *fakeServer) {
	s.info.Role, s.info.MasterHost, s.info.MasterPort = probe.RoleMaster, "", 0
	s.info.MasterLinkStatus, s.info.HasMasterLinkDownSince, s.info.MasterLinkDownSinceSeconds = "", false, 0
	// A master's INFO has no slave_repl_offset; its master_repl_offset
	// goes on from what it had replicated.
	s.info.MasterReplOffset, s.info.SlaveReplOffset = max(s.info.MasterReplOffset, s.info.SlaveReplOffset), 0
}

// RefusesConnections is true for a server that is down, unless a "DIAL"
// hook says otherwise (refused when it returns a refusal). It is not
// traced.
func (i *fakeInstance) RefusesConnections(ctx context.Context) bool {
	i.r.mu.Lock()
	h := i.r.hooks[i.addr+" DIAL"]
	s := i.r.servers[i.addr]
	down := s == nil || !s.up
	i.r.mu.Unlock()
	if h != nil {
		return probe.IsRefused(h(ctx))
	}
	return ctx.Err() == nil && down
}

// unreachable makes addr, though down, time out rather than refuse
// connections, as behind a partition.
func (e *env) unreachable(addr string) {
	e.redis.setHook(addr, "DIAL", func(context.Context) error { return context.DeadlineExceeded })
}

func (i *fakeInstance) ReplicaOf(ctx context.Context, host string, port int) error {
	return i.do(ctx, "REPLICAOF", fmt.Sprintf("REPLICAOF %s %d", host, port), func(s *fakeServer) {
		s.info.Role, s.info.MasterHost, s.info.MasterPort = probe.RoleSlave, host, port
		s.info.MasterLinkStatus = i.r.linkAfterReplicaOf
		s.info.HasMasterLinkDownSince = s.info.MasterLinkStatus != probe.LinkStatusUp
		s.info.MasterFailoverState = "no-failover"
	})
}

func (i *fakeInstance) FailoverTo(ctx context.Context, host string, port int, timeout time.Duration) error {
	return i.do(ctx, "FAILOVER", fmt.Sprintf("FAILOVER TO %s %d TIMEOUT %d", host, port, timeout.Milliseconds()), func(s *fakeServer) {
		s.info.MasterFailoverState = "waiting-for-sync"
	})
}

func (i *fakeInstance) FailoverAbort(ctx context.Context) error {
	return i.do(ctx, "FAILOVER ABORT", "FAILOVER ABORT", func(s *fakeServer) { s.info.MasterFailoverState = "no-failover" })
}

func (i *fakeInstance) PauseWrites(ctx context.Context, d time.Duration) error {
	return i.do(ctx, "PAUSE", fmt.Sprintf("CLIENT PAUSE %d WRITE", d.Milliseconds()), func(s *fakeServer) { s.paused = true })
}

func (i *fakeInstance) HasFence(ctx context.Context, minReplicas int, maxLagSeconds int64) (bool, error) {
	var has bool
	err := i.do(ctx, "FENCE-GET", "CONFIG GET min-replicas-to-write min-replicas-max-lag", func(s *fakeServer) {
		has = s.fence == [2]int64{int64(minReplicas), maxLagSeconds}
	})
	return has, err
}

func (i *fakeInstance) SetFence(ctx context.Context, minReplicas int, maxLagSeconds int64) error {
	return i.do(ctx, "FENCE", fmt.Sprintf("CONFIG SET min-replicas-to-write %d min-replicas-max-lag %d", minReplicas, maxLagSeconds), func(s *fakeServer) {
		s.fence = [2]int64{int64(minReplicas), maxLagSeconds}
	})
}

// SetMasterAuth is recorded on the server (fakeServer.masterAuth) but not
// in the trace, which the failover tests read for the role changes; its
// hook key is "MASTERAUTH".
func (i *fakeInstance) SetMasterAuth(ctx context.Context, auth probe.Auth) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	i.r.mu.Lock()
	h := i.r.hooks[i.addr+" MASTERAUTH"]
	i.r.mu.Unlock()
	if h != nil {
		if err := h(ctx); err != nil {
			return err
		}
	}
	i.r.mu.Lock()
	defer i.r.mu.Unlock()
	s := i.r.servers[i.addr]
	if s == nil || !s.up {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	}
	a := auth
	s.masterAuth = &a
	return nil
}

func (i *fakeInstance) Unpause(ctx context.Context) error {
	return i.do(ctx, "UNPAUSE", "CLIENT UNPAUSE", func(s *fakeServer) { s.paused = false })
}

// ---- environment ----

type env struct {
	t      *testing.T
	clock  *fakeClock
	trace  *trace
	fsm    *fsm.FSM
	commit *fakeCommitter
	lead   *fakeLeadership
	obs    *fakeObserver
	redis  *fakeRedis

	leader   *Leader
	nLeaders int
	// crashes lists the crash points the leaders reached; at stopAt the
	// leader is stopped right there, as if its process had exited.
	crashMu sync.Mutex
	crashes []string
	stopAt  string
	// hooks and hookPolicy are given to every Leader started.
	hooks      HookRunner
	hookPolicy HookPolicy
	hookRuns   map[string]int // by "kind result", from OnHookRun
	// pollFor is the leaders' HandoverPollFor (real time); one look when 0.
	pollFor time.Duration
	// chain gives the leaders started from now on the state machine as
	// Config.State, so that a pass goes on from a committed BeginFailover
	// to the promotion; the other tests check traces written pass by pass.
	chain bool
}

// newEnv monitors addrM with replicas r1..r4 (committed through the fake
// committer), observes them once at t0 and starts a Leader. edit changes
// the master's settings: quorum 2, down-after 5 s, failover-timeout 60 s,
// parallel-syncs 1 unless changed.
func newEnv(t *testing.T, edit func(*fsmv1.MasterSettings)) *env {
	t.Helper()
	clock := &fakeClock{now: t0}
	tr := &trace{clock: clock}
	f := fsm.New()
	e := &env{
		t: t, clock: clock, trace: tr, fsm: f,
		commit: &fakeCommitter{clock: clock, trace: tr, fsm: f},
		lead:   &fakeLeadership{},
		obs:    &fakeObserver{obs: map[string]probe.Observation{}},
		redis: &fakeRedis{trace: tr, servers: map[string]*fakeServer{}, hooks: map[string]hook{},
			linkAfterReplicaOf: probe.LinkStatusUp, auths: map[string]probe.Auth{}},
	}
	// A cluster that has switched to this binary's newest log format.
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_FormatProbe{FormatProbe: &fsmv1.FormatProbe{Format: fsm.LogFormat()}}})
	mh, mp, _ := splitHostPort(addrM)
	e.redis.servers[addrM] = &fakeServer{up: true, info: probe.Info{RunID: "run-m", Role: probe.RoleMaster,
		ReplicaPriority: 100, MasterReplOffset: 1000, ReplicaAnnounced: true, MasterFailoverState: "no-failover"}}
	for i, r := range []struct {
		addr     string
		priority int
		offset   int64
	}{{addrR1, 100, 1000}, {addrR2, 10, 900}, {addrR3, 10, 800}, {addrR4, 0, 1000}} {
		e.redis.servers[r.addr] = &fakeServer{up: true, info: probe.Info{RunID: fmt.Sprintf("run-r%d", i+1), Role: probe.RoleSlave,
			MasterHost: mh, MasterPort: mp, MasterLinkStatus: probe.LinkStatusUp, ReplicaPriority: r.priority,
			SlaveReplOffset: r.offset, MasterReplOffset: r.offset, ReplicaAnnounced: true, MasterFailoverState: "no-failover"}}
	}

	settings := &fsmv1.MasterSettings{Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 60000, ParallelSyncs: 1,
		AuthUser: "raftinel", AuthPass: "secret",
		// Fencing has its own tests (fence_test.go); the others check
		// command traces written before it.
		FenceOff: true}
	if edit != nil {
		edit(settings)
	}
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
		Name: masterName, Address: addrM, Settings: settings}}})
	update := &fsmv1.UpdateReplicas{Master: masterName, MasterOffset: 1000, MasterRunId: "run-m"}
	for _, a := range replicaAddrs {
		in := e.redis.servers[a].info
		update.Replicas = append(update.Replicas, &fsmv1.Replica{Address: a, RunId: in.RunID, Role: string(in.Role),
			MasterHost: in.MasterHost, MasterPort: int32(in.MasterPort), MasterLinkUp: true,
			Priority: int32(in.ReplicaPriority), Offset: in.SlaveReplOffset, Announced: true})
	}
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: update}})
	e.refresh()
	e.start()
	return e
}

func (e *env) mustCommit(cmd *fsmv1.Command) {
	e.t.Helper()
	if _, err := e.commit.Commit(context.Background(), cmd); err != nil {
		e.t.Fatalf("commit %s: %v", describe(cmd), err)
	}
}

// start stops the current Leader, if any, and starts a new one over the
// same state machine and fakes, as a newly elected node would.
func (e *env) start() *Leader {
	if e.leader != nil {
		e.leader.Stop()
	}
	e.nLeaders++
	var l *Leader
	var state MasterReader
	if e.chain {
		state = e.fsm
	}
	l = Start(context.Background(), Config{
		State:  state,
		Commit: e.commit, Leadership: e.lead, Redis: e.redis, Observe: e.obs, Now: e.clock.Now,
		// One look at the candidate per pass unless a test polls: the
		// tests' clock is a fake.
		HandoverPollFor: cmp.Or(e.pollFor, time.Nanosecond),
		Log: slog.New(slog.NewTextHandler(testWriter{e.t}, &slog.HandlerOptions{Level: slog.LevelDebug,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey && len(groups) == 0 {
					return slog.Duration("t", e.clock.Now().Sub(t0))
				}
				return a
			}})),
		Hooks: e.hooks, HookPolicy: e.hookPolicy,
		OnHookRun: func(kind, result string) {
			e.commit.mu.Lock()
			defer e.commit.mu.Unlock()
			if e.hookRuns == nil {
				e.hookRuns = map[string]int{}
			}
			e.hookRuns[kind+" "+result]++
		},
		Crash: func(point string) {
			// Passes of different masters run at once.
			e.crashMu.Lock()
			defer e.crashMu.Unlock()
			e.crashes = append(e.crashes, point)
			if point == e.stopAt {
				l.Stop()
			}
		},
	})
	e.leader = l
	e.trace.add("leader %d started", e.nLeaders)
	return l
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// refresh updates the observations from the model, as the probe does: an
// instance that answers has a fresh PING and INFO; one that does not keeps
// its last INFO, and its link is down.
func (e *env) refresh() {
	now := e.clock.Now()
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	for addr, s := range e.redis.servers {
		o, seen := e.obs.obs[addr]
		if !seen {
			o = probe.Observation{Addr: addr, Since: now}
		}
		o.LastPingAt = now
		if !s.up {
			o.LinkUp = false
			if o.FailingSince.IsZero() {
				o.FailingSince = now
			}
			o.LastPingErr, o.InfoErr = "connection refused", "connection refused"
			e.obs.obs[addr] = o
			continue
		}
		in := e.redis.infoLocked(addr)
		o.LinkUp, o.FailingSince, o.LastPingErr = true, time.Time{}, ""
		o.LastReply, o.LastValidReply, o.LastPong = now, now, now
		if o.Info == nil || o.Info.Role != in.Role {
			o.RoleChangedAt = now
		}
		if o.Info == nil || o.Info.MasterHost != in.MasterHost || o.Info.MasterPort != in.MasterPort {
			o.MasterAddrChangedAt = now
		}
		o.Info, o.InfoAt, o.InfoErr = &in, now, ""
		e.obs.obs[addr] = o
	}
}

// forget drops this node's observation of addr, as when its probe starts
// watching it afresh.
func (e *env) forget(addr string) {
	e.obs.mu.Lock()
	defer e.obs.mu.Unlock()
	delete(e.obs.obs, addr)
}

// step observes and runs one pass of the leader at the current time.
func (e *env) step() {
	e.refresh()
	e.leader.Step(e.fsm.State())
}

// tick advances the clock by d and steps.
func (e *env) tick(d time.Duration) {
	e.clock.Advance(d)
	e.step()
}

// tickUntil ticks one second at a time until done holds, at most n times.
func (e *env) tickUntil(n int, what string, done func() bool) {
	e.t.Helper()
	for range n {
		if done() {
			return
		}
		e.tick(time.Second)
	}
	if !done() {
		e.t.Fatalf("not %s after %d ticks; trace:\n%s", what, n, e.dump(0))
	}
}

func (e *env) master() *fsmv1.Master {
	m, _, ok := e.fsm.Master(masterName)
	if !ok {
		e.t.Fatalf("master %q is gone", masterName)
	}
	return m
}

func (e *env) phase() fsmv1.FailoverPhase { return e.master().GetFailover().GetPhase() }

func (e *env) inFailover() bool { return e.master().GetFailover() != nil }

// vote commits node's opinion of the current master.
func (e *env) vote(node string, down bool) {
	e.t.Helper()
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_ReportVote{ReportVote: &fsmv1.ReportVote{
		Master: masterName, NodeId: node, Address: e.master().GetAddress(), Down: down, Reason: "test"}}})
}

// ---- the model of the instances ----

func (e *env) server(addr string) *fakeServer {
	s := e.redis.servers[addr]
	if s == nil {
		e.t.Fatalf("no server %s", addr)
	}
	return s
}

// kill stops addr; the replicas following it see their link go down.
func (e *env) kill(addr string) {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	e.server(addr).up = false
	h, p, _ := splitHostPort(addr)
	for _, s := range e.redis.servers {
		if s.info.Role == probe.RoleSlave && s.info.MasterHost == h && s.info.MasterPort == p {
			s.info.MasterLinkStatus, s.info.HasMasterLinkDownSince, s.info.MasterLinkDownSinceSeconds = probe.LinkStatusDown, true, 1
		}
	}
}

func (e *env) revive(addr string) {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	e.server(addr).up = true
}

func (e *env) setInfo(addr string, f func(*probe.Info)) {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	f(&e.server(addr).info)
}

func (e *env) info(addr string) probe.Info {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	return e.redis.infoLocked(addr)
}

func (e *env) paused(addr string) bool {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	return e.server(addr).paused
}

// ---- reading the trace ----

// mark is a position in the trace, for "since" checks.
func (e *env) mark() int { return e.trace.len() }

// since lists the trace entries from position from on whose text starts
// with one of prefixes (all when none), with INFO left out unless asked for.
func (e *env) since(from int, prefixes ...string) []string {
	var out []string
	for _, en := range e.trace.snapshot()[from:] {
		if len(prefixes) == 0 && strings.HasSuffix(en.text, " INFO") {
			continue
		}
		if len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(en.text, p) }) {
			out = append(out, en.text)
		}
	}
	return out
}

// writes lists the Redis commands other than INFO sent from position from.
func (e *env) writes(from int) []string {
	var out []string
	for _, s := range e.since(from, "redis ") {
		if !strings.HasSuffix(s, " INFO") {
			out = append(out, s)
		}
	}
	return out
}

// commits lists the commits from position from.
func (e *env) commits(from int) []string { return e.since(from, "commit ", "rejected ") }

// index is the position of the first entry at or after from equal to text
// (a pattern, see matches); -1 if none.
func (e *env) index(from int, text string) int {
	for i, en := range e.trace.snapshot() {
		if i >= from && matches(en.text, text) {
			return i
		}
	}
	return -1
}

// matches reports whether s matches pattern, where "*" stands for any run
// of characters (the trace has no "/").
func matches(s, pattern string) bool {
	ok, err := path.Match(pattern, s)
	return ok && err == nil
}

// count counts the entries from position from that match text.
func (e *env) count(from int, text string) int {
	n := 0
	for _, en := range e.trace.snapshot()[from:] {
		if matches(en.text, text) {
			n++
		}
	}
	return n
}

// inOrder fails unless the texts occur from position from in this order.
func (e *env) inOrder(from int, texts ...string) {
	e.t.Helper()
	pos := from
	for _, text := range texts {
		i := e.index(pos, text)
		if i < 0 {
			e.t.Fatalf("%q does not follow position %d in the trace:\n%s", text, pos, e.dump(from))
		}
		pos = i + 1
	}
}

func (e *env) dump(from int) string {
	var b strings.Builder
	for i, en := range e.trace.snapshot() {
		if i >= from {
			fmt.Fprintf(&b, "%4d %6.1fs %s\n", i, en.at.Sub(t0).Seconds(), en.text)
		}
	}
	return b.String()
}

// kinds lists the kinds of the commands committed from the setup on,
// leaving out those named in except.
func (e *env) kinds(except ...string) []string {
	e.commit.mu.Lock()
	defer e.commit.mu.Unlock()
	var out []string
	for _, k := range e.commit.kinds[2:] { // after MonitorMaster and UpdateReplicas
		if !slices.Contains(except, k) {
			out = append(out, k)
		}
	}
	return out
}

// noRejections fails if the state machine refused a command of the leader.
func (e *env) noRejections() {
	e.t.Helper()
	e.commit.mu.Lock()
	defer e.commit.mu.Unlock()
	if len(e.commit.rejected) > 0 {
		e.t.Fatalf("rejected commits: %q\n%s", e.commit.rejected, e.dump(0))
	}
}

// redisCmd is the trace text of a command sent to addr.
func redisCmd(addr, text string) string { return "redis " + addr + " " + text }

func replicaOf(addr, target string) string {
	h, p, _ := splitHostPort(target)
	return redisCmd(addr, fmt.Sprintf("REPLICAOF %s %d", h, p))
}

func promoteCmd(addr string) string { return redisCmd(addr, "REPLICAOF NO ONE") }

// checkParallelSyncs fails if, anywhere in the trace, more than limit
// replicas were being re-pointed at once (SENT or IN_PROGRESS committed, DONE
// not yet), or if, between a promotion and the end of its failover, a
// REPLICAOF to newMaster went to a replica whose SENT was not committed.
func (e *env) checkParallelSyncs(newMaster string, limit int) {
	e.t.Helper()
	inFlight := map[string]bool{}
	reconfiguring := false
	for i, en := range e.trace.snapshot() {
		var addr, phase string
		if n, _ := fmt.Sscanf(en.text, "commit ReplicaReconfigured %s %s", &addr, &phase); n == 2 {
			switch phase {
			case "SENT", "IN_PROGRESS":
				inFlight[addr] = true
			case "DONE":
				delete(inFlight, addr)
			}
			if len(inFlight) > limit {
				e.t.Fatalf("entry %d: %d replicas in flight %v, parallel-syncs %d\n%s", i, len(inFlight), inFlight, limit, e.dump(0))
			}
		}
		switch {
		case strings.HasPrefix(en.text, "commit Promoted "):
			reconfiguring = true
		case strings.HasPrefix(en.text, "commit FinishFailover"):
			reconfiguring, inFlight = false, map[string]bool{}
		}
		if !reconfiguring {
			continue
		}
		for a := range e.redis.servers {
			if en.text == replicaOf(a, newMaster) && !inFlight[a] {
				e.t.Fatalf("entry %d: REPLICAOF sent to %s, which is not being re-pointed (%v)\n%s", i, a, inFlight, e.dump(0))
			}
		}
	}
}
