package server

import (
	"context"
	"sync"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const (
	// loopPeriod is how often a node re-evaluates its opinions and the
	// leader its failover steps while anything is in motion or due, on
	// top of waking on every change: once per grid of the probe's
	// contacts, between two of its bursts (run).
	loopPeriod = probe.MaxGrid
	// idleLoopPeriod is the longest a node's loop waits between two looks
	// while nothing is in motion (idlePeriod) and, on the leader, nothing
	// falls due sooner (leaderPeriod).
	idleLoopPeriod = time.Second
	// voteRefresh is how often a down vote is re-asserted (Sentinel's
	// ask-period); the leader counts it for orchestrator.VoteFreshness.
	voteRefresh = time.Second
	// tiltPeriod is how long a node that was paused (or starved) takes no
	// failover action and casts no down vote: long enough for every
	// instance to be PINGed and INFO-polled again several times. Sentinel
	// waits 30 s; here the fresh-evidence rule (failover.DownOpinion) keeps
	// guarding the votes afterwards, so a shorter wait is safe and does not
	// hold up a failover led by a node that merely had a slow moment.
	tiltPeriod = 5 * time.Second
)

// monitor runs on every node: it keeps the probe watching every instance
// of every master and commits this node's SDOWN opinion of each master as a
// vote. While this node leads, it also runs the orchestrator.Leader that
// monitorLeadership installed, on the same loop.
type monitor struct {
	s       *Server
	watcher *probe.Watcher

	mu   sync.Mutex
	tilt failover.Tilt
	// tiltReported is whether the last tick found TILT active, so that the
	// tick where it ends publishes -tilt.
	tiltReported bool
	lastVote     map[string]time.Time // by master: when this node last proposed a vote
	voting       map[string]bool      // by master: a proposal is in flight
	leader       *orchestrator.Leader // nil unless leadership is established
	// switchingFormat is set while a FormatProbe of this node's is in
	// flight; lastFormatTry spaces out retries.
	switchingFormat bool
	lastFormatTry   time.Time
	// targetsFrom is the state view the probe's targets were last set
	// from, and targetsLeading whether this node led then; only the
	// loop's goroutine uses them.
	targetsFrom    *fsmv1.State
	targetsLeading bool
	// wake makes the loop step at once (a Leader installed or dropped).
	wake chan struct{}
}

var _ orchestrator.Observer = (*monitor)(nil)

func newMonitor(s *Server) (*monitor, error) {
	w, err := probe.NewWatcher(probe.WatcherConfig{
		ClientName:  "raftinel-" + s.cfg.ID,
		Logger:      s.log.With("component", "probe"),
		OnPingReply: s.metrics.pings.observe,
		PingPeriod:  s.cfg.PingPeriod,
		TLS:         s.redisTLSConfig(),
	})
	if err != nil {
		return nil, err
	}
	return &monitor{
		s:        s,
		watcher:  w,
		tilt:     failover.Tilt{Period: tiltPeriod},
		lastVote: map[string]time.Time{},
		voting:   map[string]bool{},
		wake:     make(chan struct{}, 1),
	}, nil
}

// installLeader makes l the Leader of a term whose context is ctx, unless
// that term already ended; it reports whether it did.
func (mo *monitor) installLeader(ctx context.Context, l *orchestrator.Leader) bool {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	mo.leader = l
	mo.stepNow()
	return true
}

// stepNow makes the loop step at once rather than at its next tick.
func (mo *monitor) stepNow() {
	select {
	case mo.wake <- struct{}{}:
	default:
	}
}

// dropLeader stops and forgets the Leader, if any.
func (mo *monitor) dropLeader() {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if mo.leader != nil {
		mo.leader.Stop()
		mo.leader = nil
		mo.stepNow()
	}
}

func (mo *monitor) currentLeader() *orchestrator.Leader {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	return mo.leader
}

// Observation is the probe's latest view of addr (orchestrator.Observer).
func (mo *monitor) Observation(addr string) (probe.Observation, bool) {
	return mo.watcher.Observation(addr)
}

// Gens reads the Gens of addrs' observations (orchestrator.Observer).
func (mo *monitor) Gens(addrs []string) orchestrator.GenReader { return mo.watcher.Gens(addrs) }

// Tilt is this node's TILT detector (orchestrator.Observer).
func (mo *monitor) Tilt() failover.Tilt {
	mo.mu.Lock()
	defer mo.mu.Unlock()
	return mo.tilt
}

func (mo *monitor) run(ctx context.Context) {
	defer mo.watcher.Close()
	// The loop ticks between the probe's bursts of PINGs (beat), not with
	// them: the leader's fence read that falls due at a master's PING then
	// finds the PING answered and takes the INFO it carried, where a tick
	// at the burst itself found it in flight and read the master directly
	// (one read in nine at 300 masters).
	tick := newBeat(mo.watcher, loopPeriod)
	defer tick.Stop()
	for {
		changed, _ := mo.s.fsm.Changed()
		now := time.Now()
		tick.setPeriod(mo.step(ctx, now, tick.period), now)
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			tick.rearm(now)
		case <-changed:
		case <-mo.watcher.Changed():
		case <-mo.wake:
		}
	}
}

// idlePeriod is how long the loop may wait for its next look when nothing
// wakes it: loopPeriod while anything is in motion for this node (it is
// in TILT, or a master has a running SDOWN clock, a down vote, an ODOWN or
// a failover: see monitor.step), else up to idleLoopPeriod, and at most
// the shortest down-after of the masters (downAfter; zero when there are
// none) less TILT's trigger, never below loopPeriod. Everything else that
// matters to a follower wakes the loop itself (a change of the state or of
// an observation) except the one clock the probe starts silently, at a
// PING that goes unanswered: a look within down-after of it still finds it
// running in time for the look at loopPeriod that finds the master down.
// The bound is TILT's: TILT takes the longer wait off the gap between two
// looks (failover.Tilt.Tick), so a stall that begins just after a look
// goes unseen for up to the trigger plus that extra wait; kept below
// down-after, the clock of a PING sent before such a stall cannot run out
// at the next look and make this node vote on what the stall did.
func idlePeriod(moving bool, downAfter time.Duration) time.Duration {
	if moving {
		return loopPeriod
	}
	if downAfter <= 0 {
		return idleLoopPeriod
	}
	return min(max((downAfter-failover.DefaultTiltTrigger)/loopPeriod*loopPeriod, loopPeriod), idleLoopPeriod)
}

// leaderPeriod is the loop's period on the leader, given idlePeriod's
// (idle) and the Leader's next deadline (due, from Leader.Step; zero: none):
// idle when the beat of that period ticks next no later than the beat of
// loopPeriod would first tick at or after due, so that waiting loses
// nothing; loopPeriod otherwise. between is probe.Watcher.BetweenBursts.
// A fenced master's next read is due a second after the PING that carried
// the last, and those PINGs go out together (probe.Target.
// ReplicationWithPing), so the leader of quiet masters looks once a
// second, as a follower does, instead of ten times.
func leaderPeriod(idle time.Duration, due, now time.Time, between func(time.Time, time.Duration) time.Time) time.Duration {
	if idle <= loopPeriod || due.IsZero() || !between(due, loopPeriod).Before(between(now, idle)) {
		return idle
	}
	return loopPeriod
}

// step looks at every master once, after a wait on the loop's beat of
// period waited, and returns idlePeriod for what it saw (leaderPeriod on
// the leader).
func (mo *monitor) step(ctx context.Context, now time.Time, waited time.Duration) time.Duration {
	st := mo.s.fsm.View()
	mo.mu.Lock()
	// Compared with what the previous tick reported: TILT ends by the
	// passing of time, so Active(now) before this tick is already false
	// at the tick that ends it.
	was := mo.tiltReported
	mo.tilt = mo.tilt.Tick(now, waited-loopPeriod)
	tilt := mo.tilt
	active := tilt.Active(now)
	mo.tiltReported = active
	mo.mu.Unlock()
	if active != was {
		if active {
			mo.s.metrics.tiltEntered.Inc()
		}
		// Sentinel's +tilt and -tilt: this node's timer stalled, so its
		// recent observations cannot be trusted for a while. Published by
		// this node only, as a sentinel publishes its own.
		e := &fsmv1.Event{AtUnixNanos: now.UnixNano(), Type: EventTiltOff, Payload: tiltOffPayload, NodeId: mo.s.cfg.ID}
		if active {
			e.Type, e.Payload = EventTiltOn, tiltOnPayload
		}
		mo.s.log.Warn(e.Type, "until", tilt.Until())
		if missed := mo.s.local.publish(e); missed > 0 {
			mo.s.log.Warn("subscribers missed a TILT event: their buffers are full", "event", e.Type, "missed", missed)
		}
	}

	// The targets follow from the state and the leadership alone: an
	// unchanged view (the same shared copy) has nothing new to probe.
	l := mo.currentLeader()
	if leading := l != nil; st != mo.targetsFrom || leading != mo.targetsLeading {
		if err := mo.watcher.SetTargets(targets(st, mo.ownOpinions(st), leading)); err != nil {
			mo.s.log.Warn("probe targets", "err", err)
		} else {
			mo.targetsFrom, mo.targetsLeading = st, leading
		}
	}
	// Only the masters' own observations matter to the votes: looking them
	// up costs less than copying every instance's at every tick.
	moving := active
	var downAfter time.Duration
	for _, m := range st.Masters {
		o, ok := mo.watcher.Observation(m.GetAddress())
		if mo.maybeVote(ctx, m, o, ok, tilt, now) || m.GetOdown() || m.GetFailover() != nil {
			moving = true
		}
		if d := orchestrator.DownAfter(m); downAfter == 0 || d < downAfter {
			downAfter = d
		}
	}
	period := idlePeriod(moving, downAfter)
	if l != nil {
		period = leaderPeriod(period, l.Step(st), now, mo.watcher.BetweenBursts)
		mo.maybeSwitchFormat(ctx, st, now)
	}
	return period
}

// ownOpinions says which masters this node currently votes down.
func (mo *monitor) ownOpinions(st *fsmv1.State) map[string]bool {
	out := map[string]bool{}
	for name, m := range st.Masters {
		for _, v := range m.Votes {
			if v.NodeId == mo.s.cfg.ID && v.Down {
				out[name] = true
			}
		}
	}
	return out
}

// targets lists every instance to probe: each master and its known
// replicas, with INFO every second while the master is in trouble. On the
// leader, the PINGs of a master it fences carry the INFO the fence reads
// (orchestrator.ReadsFence).
func targets(st *fsmv1.State, downHere map[string]bool, leading bool) []probe.Target {
	var out []probe.Target
	seen := map[string]bool{}
	for name, m := range st.Masters {
		s := m.GetSettings()
		t := probe.Target{
			Auth:       probe.Auth{User: s.GetAuthUser(), Pass: s.GetAuthPass()},
			DownAfter:  orchestrator.DownAfter(m),
			PingPeriod: time.Duration(s.GetPingPeriodMs()) * time.Millisecond,
			FastInfo:   m.GetOdown() || m.GetFailover() != nil || downHere[name],
		}
		if !seen[m.GetAddress()] {
			seen[m.GetAddress()] = true
			master := t
			master.Addr = m.GetAddress()
			master.ReplicationWithPing = leading && orchestrator.ReadsFence(m)
			out = append(out, master)
		}
		for _, r := range m.GetReplicas() {
			if seen[r.GetAddress()] {
				continue
			}
			seen[r.GetAddress()] = true
			t.Addr = r.GetAddress()
			out = append(out, t)
		}
	}
	return out
}

// maybeVote commits this node's opinion of a master when it differs from
// the committed vote, and re-asserts a down vote so it stays fresh. It
// reports whether the master is in motion for this node: an SDOWN clock
// runs (failover.ClocksStopped), or its opinion or committed vote is down.
func (mo *monitor) maybeVote(ctx context.Context, m *fsmv1.Master, o probe.Observation, ok bool, tilt failover.Tilt, now time.Time) (moving bool) {
	p := orchestrator.MasterProbe(orchestrator.ProbeOf(o, ok), m)
	down, reason := failover.DownOpinion(p, true, orchestrator.DownAfter(m), tilt, now)
	var committed *fsmv1.Vote
	for _, v := range m.GetVotes() {
		if v.GetNodeId() == mo.s.cfg.ID {
			committed = v
		}
	}
	same := committed != nil && committed.GetDown() == down && committed.GetAddress() == m.GetAddress()
	if (committed == nil || !committed.GetDown()) && !down {
		return !failover.ClocksStopped(p, true) // up and not on record as down: nothing to say
	}
	mo.mu.Lock()
	defer mo.mu.Unlock()
	if mo.voting[m.GetName()] || (same && now.Sub(mo.lastVote[m.GetName()]) < voteRefresh) {
		return true
	}
	mo.voting[m.GetName()] = true
	mo.lastVote[m.GetName()] = now
	if down && (committed == nil || !committed.GetDown()) {
		// Found down here just now: the replicas' offsets from now on are
		// the final ones a failover ranks them on; read them at once.
		replicas := make([]string, 0, len(m.GetReplicas()))
		for _, r := range m.GetReplicas() {
			replicas = append(replicas, r.GetAddress())
		}
		mo.watcher.RefreshInfo(replicas...)
	}
	vote := &fsmv1.ReportVote{Master: m.GetName(), NodeId: mo.s.cfg.ID, Address: m.GetAddress(), Down: down, Reason: reason}
	mo.s.wg.Add(1)
	go func() {
		defer mo.s.wg.Done()
		defer func() { mo.mu.Lock(); mo.voting[vote.Master] = false; mo.mu.Unlock() }()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := mo.s.propose(cctx, &fsmv1.Command{Kind: &fsmv1.Command_ReportVote{ReportVote: vote}}); err != nil {
			mo.s.log.Debug("vote not committed", "master", vote.Master, "down", vote.Down, "err", err)
		} else if !same {
			mo.s.log.Info("vote", "master", vote.Master, "address", vote.Address, "down", vote.Down, "reason", reason)
		}
	}()
	return true
}

// maybeSwitchFormat, on the leader, switches the cluster to this binary's
// newest log format (a FormatProbe) once every voter advertises it, so
// that what Apply does differently in that format begins at one log index
// on every node.
func (mo *monitor) maybeSwitchFormat(ctx context.Context, st *fsmv1.State, now time.Time) {
	want := fsm.LogFormat()
	if st.GetLogFormat() >= want {
		return
	}
	// No configuration read (nil) says nothing about the voters.
	if voters := mo.s.voters(); len(voters) == 0 || fsm.ClusterFormat(voters) < want {
		return
	}
	mo.mu.Lock()
	if mo.switchingFormat || now.Sub(mo.lastFormatTry) < 5*time.Second {
		mo.mu.Unlock()
		return
	}
	mo.switchingFormat, mo.lastFormatTry = true, now
	mo.mu.Unlock()
	go func() {
		defer func() {
			mo.mu.Lock()
			mo.switchingFormat = false
			mo.mu.Unlock()
		}()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		cmd := &fsmv1.Command{Kind: &fsmv1.Command_FormatProbe{FormatProbe: &fsmv1.FormatProbe{Format: want}}}
		if _, err := mo.s.apply(cctx, cmd); err != nil {
			mo.s.log.Warn("switching the cluster to log format", "format", want, "err", err)
			return
		}
		mo.s.log.Info("every voter understands log format: the cluster now writes it", "format", want)
	}()
}
