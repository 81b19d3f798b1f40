package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The PING period. Unless a target or the WatcherConfig sets one, a
// target's period is its down-after/10 within [MinAutoPingPeriod,
// MaxAutoPingPeriod]: the first failed contact after a fault then comes
// within a tenth of down-after, and a recovered instance is seen as soon.
const (
	MinAutoPingPeriod = 50 * time.Millisecond
	MaxAutoPingPeriod = time.Second
	// MinPingPeriod is the shortest period honoured when one is set, which
	// keeps a typo from turning the PING loop into a busy loop.
	MinPingPeriod = 10 * time.Millisecond
	// DefaultDownAfter stands in for a Target's zero DownAfter (Sentinel's
	// default).
	DefaultDownAfter = 30 * time.Second
	// LateReply is how long a contact may go without a valid reply before
	// the link counts as failing for the leader's fence, which is not
	// lowered on a master whose link failed lately: a healthy PING on a
	// LAN is answered within a millisecond or two.
	LateReply = 250 * time.Millisecond
)

// Sentinel's INFO periods, the defaults of WatcherConfig.
const (
	DefaultInfoPeriod     = 10 * time.Second
	DefaultFastInfoPeriod = time.Second
	DefaultInfoTimeout    = 5 * time.Second
)

// WatcherConfig configures a Watcher. Zero values take the defaults.
type WatcherConfig struct {
	// ClientName is sent with CLIENT SETNAME on every connection.
	ClientName string
	// Now stamps observations. Keep the monotonic reading (time.Now does)
	// so that wall clock jumps do not distort elapsed times. It is not
	// used for scheduling, which always runs on real timers.
	Now    func() time.Time
	Logger *slog.Logger

	// PingPeriod is the PING period of targets that set none of their
	// own; zero gives each target its down-after/10, within
	// [MinAutoPingPeriod, MaxAutoPingPeriod]. See PingTiming.
	PingPeriod time.Duration
	// InfoPeriod is the normal INFO period.
	InfoPeriod time.Duration
	// FastInfoPeriod is the INFO period for a target with FastInfo, for a
	// replica whose INFO reports its master link down, and for the retry
	// after a failed INFO.
	FastInfoPeriod time.Duration
	// InfoTimeout bounds one INFO, connecting included.
	InfoTimeout time.Duration
	// DialTimeout caps connecting (a PING's own deadline may be shorter).
	DialTimeout time.Duration
	// TLS, when set, gives the TLS configuration for an instance's host:
	// every connection then speaks TLS (the instances' tls-port), as
	// Sentinel's tls-replication does.
	TLS func(host string) *tls.Config

	// OnPingReply, when set, is called with the round-trip time of every
	// PING that got a reply (valid or not; a reconnect it needed is
	// included), outside the Watcher's lock. It must return quickly: it runs
	// on the instance's PING loop. The server feeds its metrics with it, so
	// probe stays free of any metrics library.
	OnPingReply func(addr string, rtt time.Duration)
}

// Target is one instance to watch and how.
type Target struct {
	Addr string
	Auth Auth
	// DownAfter is the instance's down-after setting (zero means
	// DefaultDownAfter); it sets the automatic PING period and the PING's
	// deadline, and caps the period, as in Sentinel.
	DownAfter time.Duration
	// PingPeriod, when not zero, is this target's PING period, in place of
	// WatcherConfig.PingPeriod and the automatic one.
	PingPeriod time.Duration
	// FastInfo asks for INFO every FastInfoPeriod, as Sentinel does for
	// the replicas of a master that is ODOWN or failing over.
	FastInfo bool
	// ReplicationWithPing sends INFO replication in the same write as
	// every PING and keeps what it says, when the PING got PONG, as
	// Observation.Replication: the leader, which must read its fenced
	// masters' replicas and lags about once a second, then does not need
	// a round trip of its own for it. The PING is classified as without
	// it, so the SDOWN clock is the same.
	ReplicationWithPing bool
}

// PingTiming is the PING loop's schedule for a target: a PING (or, with no
// connection open, a dial and a PING) starts every period, and one that
// gets no reply within timeout is abandoned and its connection closed. At
// most one is in flight, so a slow reply delays the next PING instead of
// piling up more.
//
// period is the first of: the target's PingPeriod, the node default
// (nodeDefault), down-after/10 bounded to [MinAutoPingPeriod,
// MaxAutoPingPeriod]; then no longer than down-after (Sentinel's rule) and
// no shorter than MinPingPeriod.
//
// timeout is max(down-after/2, 2 × period). It is not the period: with a
// period of down-after/10 a reply late by more than a period (a latency
// spike, a busy instance) would otherwise cost a reconnect each time, and
// the SDOWN clock does not need the timeout, since it counts from the
// PING's send time while the PING waits. Half of down-after is the point at
// which Sentinel gives up on a link whose PINGs go unanswered: a connection
// that died silently (a dropped network, a host gone without a reset) is
// replaced while half of down-after is left for a fresh one to get a reply
// before the instance counts as down. The bound covers connecting too, so a
// dial lost in a dead network is retried with a fresh SYN by then.
func PingTiming(t Target, nodeDefault time.Duration) (period, timeout time.Duration) {
	downAfter := t.DownAfter
	if downAfter <= 0 {
		downAfter = DefaultDownAfter
	}
	period = t.PingPeriod
	if period <= 0 {
		period = nodeDefault
	}
	if period <= 0 {
		period = min(max(downAfter/10, MinAutoPingPeriod), MaxAutoPingPeriod)
	}
	period = max(min(period, downAfter), MinPingPeriod)
	return period, max(downAfter/2, 2*period)
}

// Observation is what the Watcher has seen of one instance. A zero time
// means "never". All times come from WatcherConfig.Now.
type Observation struct {
	Addr string
	// Gen changes (to a value no other observation of this Watcher had)
	// whenever the observation changes in a way Changed signals, and with
	// every INFO read or failed; it does not change with PING times and
	// the SDOWN clock of a PING in flight alone. Equal Gens of one
	// address mean the same replies and INFO; a reader that must notice
	// an SDOWN clock running out counts from FailingSince (or, when that
	// is zero, from the time it read the observation: a later PING starts
	// its clock no earlier).
	Gen uint64
	// ChangeGen is the Gen of the last change Changed signalled: unlike
	// Gen, an INFO read that shows nothing new (offsets, lags) leaves it.
	ChangeGen uint64
	// Since is when watching began.
	Since time.Time

	// LastPingAt is when the last PING finished, whatever its outcome.
	LastPingAt time.Time
	// LastReply is the last reply of any kind, valid or not.
	LastReply time.Time
	// LastValidReply is the last PONG, LOADING or MASTERDOWN reply.
	LastValidReply time.Time
	// LastPong is the last plain PONG (LOADING and MASTERDOWN are valid
	// but not PONG, which Sentinel's master-reboot rule distinguishes).
	LastPong time.Time
	// LastPingErr is empty when the last PING got a valid reply, and the
	// reply or error text otherwise.
	LastPingErr string
	// LinkUp is true when the last PING got any reply from the instance.
	LinkUp bool
	// FailingSince is the SDOWN clock: when the first contact attempt after
	// the last valid reply began that did not get a valid reply, whatever
	// went wrong with it (a PING unanswered in time or answered with an
	// error, a refused or timed-out dial, a connection that broke). An
	// attempt still in flight counts from its start, so a frozen instance's
	// clock runs while its PING waits (Sentinel's act_ping_time). Only a
	// valid reply clears it; unlike Sentinel, a refused or broken connection
	// does not fall back to the last valid reply, which may be a whole
	// period older than the fault.
	FailingSince time.Time
	// LinkFailedAt is when a contact last failed as the leader's fence
	// counts failures: it got no reply, or its valid reply came more than
	// LateReply after FailingSince. A reader that looks now and then learns
	// of a failure that began and ended between two of its looks.
	LinkFailedAt time.Time

	// Info is the last INFO that was read and parsed; it stays while later
	// attempts fail (InfoAt says how old it is). Every copy of the
	// Observation shares it and the Watcher never changes it (a new INFO
	// gets a new Info): read it, never write it.
	Info *Info
	// InfoAt is when Info was read.
	InfoAt time.Time
	// InfoErr is the error of the last INFO attempt, or empty when it
	// succeeded.
	InfoErr string
	// RoleChangedAt is when INFO first reported the current role.
	RoleChangedAt time.Time
	// MasterAddrChangedAt is when INFO first reported the current
	// master_host and master_port.
	MasterAddrChangedAt time.Time
	// RebootedAt is when INFO last reported a run id other than the one
	// before it (Sentinel's +reboot): the process restarted. Zero if it
	// never did while watched.
	RebootedAt time.Time

	// Replication is the last INFO replication read along with a PING
	// answered PONG (Target.ReplicationWithPing), shared and read-only as
	// Info; its RunID and the fields of other sections are zero (Loading
	// too, which PONG implies).
	// ReplicationAt is when that PING was sent (the INFO describes the
	// instance at that time or later). Neither changes Gen or signals
	// Changed: a reader that wants them looks (Observation, Gens.Link).
	Replication   *Info
	ReplicationAt time.Time
}

// ErrWatcherClosed is returned by SetTargets after Close.
var ErrWatcherClosed = errors.New("probe: watcher closed")

// Watcher keeps PINGing and INFO-polling a changing set of instances and
// keeps the latest Observation of each. Each instance has two goroutines,
// one for PING and one for INFO, so a slow INFO never delays a PING, and
// each has its own connection (a link, dialed by the Watcher itself with no
// client-library backoff) with at most one command in flight: two
// connections per instance.
type Watcher struct {
	cfg     WatcherConfig
	log     *slog.Logger
	changed chan struct{}
	// base is the origin of the grid that contacts are scheduled on (see
	// onGrid); it keeps its monotonic reading.
	base time.Time

	mu        sync.Mutex
	instances map[string]*instance
	closed    bool
	// gen is the last Observation.Gen given out.
	gen uint64
}

type instance struct {
	addr     string
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	pingWake chan struct{}
	infoWake chan struct{}
	// infoNow makes the INFO loop poll at once: the PING loop signals it
	// when the instance answers again while the last INFO had failed.
	infoNow chan struct{}
	// earlyAt is when the PING loop last contacted the instance ahead of
	// its period because its connection closed (see waitOnLink).
	earlyAt time.Time

	// idle, guarded by idleMu (the instance's own lock, kept off the
	// Watcher's lock that every instance's loops share), is the PING
	// link's connection while the PING loop waits on it between contacts:
	// whoever signals pingWake or cancels ctx also moves its read deadline
	// to the past, which ends that wait.
	idleMu sync.Mutex
	idle   net.Conn

	// changeGen mirrors obs.ChangeGen for Gens, which read it without
	// Watcher.mu; 0 once the instance is no longer watched. link mirrors
	// obs.Link() for Gens.Link.
	changeGen atomic.Uint64
	link      atomic.Pointer[Link]

	// Guarded by Watcher.mu.
	target Target
	// authGen counts changes of target.Auth; an outcome of a contact made
	// with older credentials is not recorded.
	authGen uint64
	obs     Observation
}

// NewWatcher returns a Watcher with no targets.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if err := validClientName(cfg.ClientName); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PingPeriod < 0 {
		return nil, fmt.Errorf("negative ping period %v", cfg.PingPeriod)
	}
	cfg.InfoPeriod = orDefault(cfg.InfoPeriod, DefaultInfoPeriod)
	cfg.FastInfoPeriod = orDefault(cfg.FastInfoPeriod, DefaultFastInfoPeriod)
	cfg.InfoTimeout = orDefault(cfg.InfoTimeout, DefaultInfoTimeout)
	cfg.DialTimeout = orDefault(cfg.DialTimeout, DefaultDialTimeout)
	return &Watcher{
		cfg:       cfg,
		log:       cfg.Logger,
		changed:   make(chan struct{}, 1),
		base:      time.Now(),
		instances: make(map[string]*instance),
	}, nil
}

// Changed is signalled, without blocking and coalesced, when an
// observation changes in a way a decision could care about: the first
// PING outcome, validity of replies or the link flipping, INFO arriving or
// starting to fail, or INFO reporting another role, master, link status,
// run id, priority, failover state or replica set. Offsets and timestamps
// alone do not signal.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

func (w *Watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// SetTargets makes targets the watched set: new addresses start being
// watched, missing ones stop (and SetTargets waits until their goroutines
// have ended), and existing ones take the new settings without
// reconnecting, unless their Auth changed. An invalid target fails the
// whole call and changes nothing.
func (w *Watcher) SetTargets(targets []Target) error {
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		if _, _, err := splitAddr(t.Addr); err != nil {
			return err
		}
		if t.DownAfter < 0 {
			return fmt.Errorf("target %s: negative down-after %v", t.Addr, t.DownAfter)
		}
		if t.PingPeriod < 0 {
			return fmt.Errorf("target %s: negative ping period %v", t.Addr, t.PingPeriod)
		}
		if seen[t.Addr] {
			return fmt.Errorf("target %s listed twice", t.Addr)
		}
		seen[t.Addr] = true
	}

	var stop []*instance
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrWatcherClosed
	}
	for addr, in := range w.instances {
		if !seen[addr] {
			stop = append(stop, in)
			delete(w.instances, addr)
		}
	}
	for _, t := range targets {
		in, ok := w.instances[t.Addr]
		if !ok {
			w.instances[t.Addr] = w.start(t)
			continue
		}
		if t == in.target {
			// Waking the loops for nothing costs two goroutine switches
			// per instance at every call: most of a node's CPU with
			// thousands of instances.
			continue
		}
		if t.Auth != in.target.Auth {
			// The links reconnect with the new credentials at their next
			// contact.
			in.authGen++
		}
		in.target = t
		if !t.ReplicationWithPing && in.obs.Replication != nil {
			in.obs.Replication, in.obs.ReplicationAt = nil, time.Time{}
			in.mirrorLink()
		}
		wake(in.pingWake)
		in.interruptIdle()
		wake(in.infoWake)
	}
	w.mu.Unlock()

	for _, in := range stop {
		w.stop(in)
	}
	return nil
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// start must be called with w.mu held.
func (w *Watcher) start(t Target) *instance {
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{
		addr:     t.Addr,
		ctx:      ctx,
		cancel:   cancel,
		pingWake: make(chan struct{}, 1),
		infoWake: make(chan struct{}, 1),
		infoNow:  make(chan struct{}, 1),
		target:   t,
		obs:      Observation{Addr: t.Addr, Since: w.cfg.Now()},
	}
	in.setGen(w, true)
	in.wg.Add(2)
	go w.pingLoop(in)
	go w.infoLoop(in)
	w.log.Debug("watching instance", "addr", t.Addr)
	return in
}

// stop must be called without w.mu: the loops take it to record results.
// Cancelling the context also ends a command blocked on a frozen server.
func (w *Watcher) stop(in *instance) {
	in.changeGen.Store(0)
	in.link.Store(nil)
	in.cancel()
	in.interruptIdle()
	in.wg.Wait()
	w.log.Debug("stopped watching instance", "addr", in.addr)
}

// Close stops every loop and closes every connection.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	all := make([]*instance, 0, len(w.instances))
	for _, in := range w.instances {
		all = append(all, in)
	}
	w.instances = map[string]*instance{}
	w.mu.Unlock()
	for _, in := range all {
		w.stop(in)
	}
	return nil
}

// Observations returns a copy of the latest observation of every target
// (their Info shared, read-only: copying it for every caller, ten times a
// second, was a tenth of a node's CPU with hundreds of instances).
func (w *Watcher) Observations() map[string]Observation {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]Observation, len(w.instances))
	for addr, in := range w.instances {
		out[addr] = in.obs
	}
	return out
}

// setGen gives the instance's observation a Gen no observation had, and
// makes it its ChangeGen too for a change that signals Changed; w.mu
// held.
func (in *instance) setGen(w *Watcher, signalled bool) {
	w.gen++
	in.obs.Gen = w.gen
	if signalled {
		in.obs.ChangeGen = w.gen
		in.changeGen.Store(w.gen)
	}
}

// Gens reads the current ChangeGens and Links of a fixed list of
// instances.
type Gens struct{ instances []*instance }

// Gens returns a reader of the ChangeGens and Links of addrs'
// observations, in order: ChangeGen 0 for an address not watched when
// Gens was called, or no longer watched since (0 matches no observation).
// Reading it takes no lock and copies no observation: the leader compares
// a quiet master's ChangeGens with those of its last pass at every tick.
func (w *Watcher) Gens(addrs []string) Gens {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := Gens{instances: make([]*instance, len(addrs))}
	for i, a := range addrs {
		g.instances[i] = w.instances[a]
	}
	return g
}

// ChangeGen is the current ChangeGen of the i-th address.
func (g Gens) ChangeGen(i int) uint64 {
	if in := g.instances[i]; in != nil {
		return in.changeGen.Load()
	}
	return 0
}

// Link is what an instance's PINGs left of its Observation, which changes
// without a new ChangeGen (a flip of Up makes one): LinkUp, LastPingAt,
// FailingSince, LinkFailedAt, and the INFO replication carried by the last
// PONG.
type Link struct {
	Up            bool
	LastPingAt    time.Time
	FailingSince  time.Time
	LinkFailedAt  time.Time
	Replication   *Info
	ReplicationAt time.Time
}

// Link is the i-th address's current Link (ok false: not watched).
func (g Gens) Link(i int) (Link, bool) {
	if in := g.instances[i]; in != nil {
		if l := in.link.Load(); l != nil {
			return *l, true
		}
	}
	return Link{}, false
}

// Link is the observation's link fields.
func (o *Observation) Link() Link {
	return Link{Up: o.LinkUp, LastPingAt: o.LastPingAt, FailingSince: o.FailingSince, LinkFailedAt: o.LinkFailedAt,
		Replication: o.Replication, ReplicationAt: o.ReplicationAt}
}

// mirrorLink publishes the observation's link fields for Gens.Link; w.mu
// held.
func (in *instance) mirrorLink() {
	l := in.obs.Link()
	in.link.Store(&l)
}

// RefreshInfo makes each of addrs (those watched) read INFO at once rather
// than at its period. A node that has just found a master down asks it of
// the master's replicas: the failover ranks them on offsets read after the
// master went down (failover.OffsetsFinal), which would otherwise come up
// to an INFO period later.
func (w *Watcher) RefreshInfo(addrs ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range addrs {
		if in, ok := w.instances[a]; ok {
			wake(in.infoNow)
		}
	}
}

// Observation returns a copy of the latest observation of addr.
func (w *Watcher) Observation(addr string) (Observation, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in, ok := w.instances[addr]
	if !ok {
		return Observation{}, false
	}
	return in.obs, true
}

// pingTiming is the PING loop's period and timeout (PingTiming), and
// whether its contacts start at the period's own instants (nextContact):
// those of a PING that carries INFO replication do
// (Target.ReplicationWithPing).
func (w *Watcher) pingTiming(in *instance) (period, timeout time.Duration, aligned bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	period, timeout = PingTiming(in.target, w.cfg.PingPeriod)
	return period, timeout, in.target.ReplicationWithPing
}

func (w *Watcher) infoPeriod(in *instance) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := in.obs
	if in.target.FastInfo || o.InfoErr != "" || (o.Info != nil && o.Info.HasMasterLinkDownSince) {
		return w.cfg.FastInfoPeriod
	}
	return w.cfg.InfoPeriod
}

// current is the credentials to contact the instance with, their
// generation, and whether its PINGs carry INFO (ReplicationWithPing).
func (w *Watcher) current(in *instance) (Auth, uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return in.target.Auth, in.authGen, in.target.ReplicationWithPing
}

// newLink is a connection of the instance's own, not yet dialled.
func (w *Watcher) newLink(in *instance) *link {
	l := &link{addr: in.addr, clientName: w.cfg.ClientName, dialTimeout: w.cfg.DialTimeout}
	if w.cfg.TLS != nil {
		host := in.addr
		if h, _, err := net.SplitHostPort(in.addr); err == nil {
			host = h
		}
		l.tls = w.cfg.TLS(host)
	}
	return l
}

func (w *Watcher) pingLoop(in *instance) {
	defer in.wg.Done()
	l := w.newLink(in)
	defer l.close()
	defer l.bind(in.ctx)()
	schedule := func() (time.Duration, bool) { p, _, aligned := w.pingTiming(in); return p, aligned }
	for {
		auth, gen, withReplication := w.current(in)
		_, timeout, _ := w.pingTiming(in)
		started := time.Now()
		stamp := w.pingSent(in, gen)
		sent, dials := time.Now(), l.dials
		var res PingResult
		var repl *Info
		if withReplication {
			res, repl = l.pingWithReplication(in.ctx, sent.Add(timeout), auth)
		} else {
			res = l.ping(in.ctx, sent.Add(timeout), auth)
		}
		rtt := time.Since(sent)
		if res.Valid && l.dials != dials {
			// A new connection may be to a restarted server (a new run id,
			// perhaps an empty keyspace): read INFO now, not at its period.
			wake(in.infoNow)
		}
		if in.ctx.Err() != nil {
			return
		}
		w.recordPing(in, gen, res, repl, stamp)
		if res.Replied && w.cfg.OnPingReply != nil {
			w.cfg.OnPingReply(in.addr, rtt)
		}
		if !w.waitOnLink(in, l, started, schedule) {
			return
		}
	}
}

// interruptIdle ends the PING loop's wait on its connection, if it is
// waiting there.
func (in *instance) interruptIdle() {
	in.idleMu.Lock()
	defer in.idleMu.Unlock()
	if in.idle != nil {
		_ = in.idle.SetReadDeadline(time.Unix(1, 0))
	}
}

// waitOnLink is sleepUntil for the PING loop, waiting in a read of its
// open connection instead of on a timer: nothing is ever sent unasked on
// that connection, so the read ends only at the deadline (the next
// contact), when interrupted (new settings, stop), or when the instance
// closed the connection. A killed or crashed process's connections are
// closed by its kernel at once, so the next contact, which then finds the
// port refused and starts the SDOWN clock, is made at once rather than up
// to a period later: down-after is then counted from the failure itself,
// not from a PING sent after it. A connection closed for any other reason
// (an idle timeout, CLIENT KILL) costs only an early PING on a new one.
// Early contacts are at most one per period, so a server that closes
// every connection cannot make the loop spin. TLS connections and a link
// not connected wait on the timer.
func (w *Watcher) waitOnLink(in *instance, l *link, started time.Time, schedule func() (time.Duration, bool)) bool {
	for {
		if l.conn == nil || l.tls != nil || l.br.Buffered() > 0 {
			return w.sleepUntil(in, started, schedule, in.pingWake, nil)
		}
		p, aligned := schedule()
		at := w.nextContact(started, p, aligned)
		if !time.Now().Before(at) {
			return in.ctx.Err() == nil
		}
		// Whoever signals pingWake or cancels ctx does so before it takes
		// idleMu to interrupt: checked under idleMu, a signal is either
		// seen here or interrupts the read below. The deadline is set under
		// the lock too, so that it cannot overwrite an interrupt.
		in.idleMu.Lock()
		select {
		case <-in.pingWake:
			// New settings: the period again.
			in.idleMu.Unlock()
			continue
		default:
		}
		if in.ctx.Err() != nil {
			in.idleMu.Unlock()
			return false
		}
		in.idle = l.conn
		err := l.conn.SetReadDeadline(at)
		in.idleMu.Unlock()
		if err == nil {
			_, err = l.br.Peek(1)
		}
		in.idleMu.Lock()
		in.idle = nil
		in.idleMu.Unlock()
		if in.ctx.Err() != nil {
			return false
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue // the deadline, or interrupted: see above
		}
		// Closed by the instance (or it sent what nobody asked for).
		l.close()
		if now := time.Now(); in.earlyAt.IsZero() || now.Sub(in.earlyAt) >= p {
			in.earlyAt = now
			return true
		}
	}
}

func (w *Watcher) infoLoop(in *instance) {
	defer in.wg.Done()
	l := w.newLink(in)
	defer l.close()
	defer l.bind(in.ctx)()
	schedule := func() (time.Duration, bool) { return w.infoPeriod(in), false }
	for {
		auth, gen, _ := w.current(in)
		started := time.Now()
		info, err := l.info(in.ctx, started.Add(w.cfg.InfoTimeout), auth)
		if in.ctx.Err() != nil {
			return
		}
		w.recordInfo(in, gen, info, err)
		if !w.sleepUntil(in, started, schedule, in.infoWake, in.infoNow) {
			return
		}
	}
}

// MaxGrid is the coarsest grid contacts are scheduled on; see onGrid.
const MaxGrid = 100 * time.Millisecond

// gridOf is the grid for a loop of period: a tenth of it, at most MaxGrid.
func gridOf(period time.Duration) time.Duration { return min(period/10, MaxGrid) }

// onGrid moves t to the nearest point of the grid for period: multiples of
// gridOf(period) counted from the Watcher's start. Every instance's
// contacts then start at shared instants, a few bursts a second as
// Sentinel's 10 Hz timer sends them, instead of one wake-up of the process
// per contact: with hundreds of instances, each wake-up of an idle Go
// process (timer, scheduler, netpoll, another thread woken) cost more CPU
// than the PING itself. A contact moves by at most half a grid, a
// twentieth of the period, and the period stays the period on average.
func (w *Watcher) onGrid(t time.Time, period time.Duration) time.Time {
	return w.nearest(t, gridOf(period))
}

// nearest moves t to the nearest multiple of g counted from the Watcher's
// start (t itself when g is not positive).
func (w *Watcher) nearest(t time.Time, g time.Duration) time.Time {
	if g <= 0 {
		return t
	}
	off := t.Sub(w.base)
	return w.base.Add((off + g/2) / g * g)
}

// nextContact is when a loop of period whose last contact started at
// started makes its next: on the grid (onGrid), or, aligned, at the
// nearest multiple of the period itself. The leader's PINGs that carry a
// fenced master's INFO (Target.ReplicationWithPing) are aligned: those of
// every master with the same period then go out in one burst, and the
// fence reads they carry all fall due together, once a period, so the
// leader's loop can wait a period between two looks at them rather than
// wake at every grid point for the few masters whose PINGs it brought.
// Moving to the alignment once makes one period up to half a period
// shorter or longer; after that a contact moves only by its timer's delay.
func (w *Watcher) nextContact(started time.Time, period time.Duration, aligned bool) time.Time {
	if aligned {
		return w.nearest(started.Add(period), period)
	}
	return w.onGrid(started.Add(period), period)
}

// BetweenBursts is the tick at or after t (less than every after it) of a
// beat of period every (MaxGrid when every <= 0) whose first tick lies
// halfway between two points of the coarsest grid contacts start on
// (MaxGrid). With every a multiple of MaxGrid, a loop that ticks there
// looks at the observations when the last burst of contacts has had half
// a grid to complete; beats of one period tick at the same instants, so
// they wake the process together.
func (w *Watcher) BetweenBursts(t time.Time, every time.Duration) time.Time {
	if every <= 0 {
		every = MaxGrid
	}
	// t is never before base, so off > -MaxGrid: a negative off gives the
	// first instant, at or after t.
	off := t.Sub(w.base) - MaxGrid/2
	return w.base.Add((off+every-1)/every*every + MaxGrid/2)
}

// sleepUntil waits until the next contact after started (nextContact, on
// schedule's period and alignment), reading schedule again whenever wake
// is signalled (the settings changed), or until now is signalled, and
// reports false when the instance is stopped.
func (w *Watcher) sleepUntil(in *instance, started time.Time, schedule func() (time.Duration, bool), wake, now <-chan struct{}) bool {
	for {
		p, aligned := schedule()
		d := time.Until(w.nextContact(started, p, aligned))
		if d <= 0 {
			return in.ctx.Err() == nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-now:
			t.Stop()
			return in.ctx.Err() == nil
		case <-wake:
			t.Stop()
		case <-in.ctx.Done():
			t.Stop()
			return false
		}
	}
}

// pingSent starts the SDOWN clock, unless an earlier attempt is failing
// already, as the contact attempt begins: a PING that goes unanswered
// counts from its send time, a refused or timed-out dial from its start.
// It returns that time, which also stamps the INFO the PING carries.
func (w *Watcher) pingSent(in *instance, gen uint64) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.cfg.Now()
	if in.authGen == gen && in.obs.FailingSince.IsZero() {
		in.obs.FailingSince = now
		in.mirrorLink()
	}
	return now
}

// recordPing records a PING's outcome, and repl, the INFO read along with
// it (if any), as of sent.
func (w *Watcher) recordPing(in *instance, gen uint64, res PingResult, repl *Info, sent time.Time) {
	w.mu.Lock()
	if in.authGen != gen || in.ctx.Err() != nil {
		// A result obtained with replaced credentials says nothing about
		// the new ones.
		w.mu.Unlock()
		return
	}
	now := w.cfg.Now()
	o := &in.obs
	first := o.LastPingAt.IsZero()
	wasValid, wasLinkUp := !first && o.LastPingErr == "", o.LinkUp
	o.LastPingAt = now
	o.LinkUp = res.Replied
	if !res.Replied || (res.Valid && !o.FailingSince.IsZero() && now.Sub(o.FailingSince) > LateReply) {
		o.LinkFailedAt = now
	}
	if res.Valid {
		o.FailingSince = time.Time{}
	}
	if repl != nil && in.target.ReplicationWithPing {
		// (A PING sent before SetTargets turned it off may carry one.)
		o.Replication, o.ReplicationAt = repl, sent
	}
	in.mirrorLink()
	if res.Replied {
		o.LastReply = now
	}
	if res.Valid {
		o.LastValidReply = now
		o.LastPingErr = ""
		if res.Err == nil {
			o.LastPong = now
		}
	} else {
		o.LastPingErr = res.Reply
	}
	validityFlipped := first || wasValid != res.Valid
	significant := validityFlipped || wasLinkUp != o.LinkUp
	if significant {
		in.setGen(w, true)
	}
	if res.Valid && validityFlipped && o.InfoErr != "" {
		// Back: read INFO now rather than at the next retry.
		wake(in.infoNow)
	}
	w.mu.Unlock()

	if validityFlipped {
		if res.Valid {
			w.log.Info("instance replies", "addr", in.addr, "reply", res.Reply)
		} else {
			w.log.Warn("instance does not reply validly", "addr", in.addr, "error", res.Reply)
		}
	}
	if significant {
		w.notify()
	}
}

func (w *Watcher) recordInfo(in *instance, gen uint64, info Info, err error) {
	w.mu.Lock()
	if in.authGen != gen || in.ctx.Err() != nil {
		w.mu.Unlock()
		return
	}
	now := w.cfg.Now()
	o := &in.obs
	var significant bool
	var oldRole Role
	if o.Info != nil {
		oldRole = o.Info.Role
	}
	if err != nil {
		significant = o.InfoErr == ""
		o.InfoErr = err.Error()
	} else {
		prev := o.Info
		significant = prev == nil || o.InfoErr != "" || decisionFieldsDiffer(prev, &info)
		if prev == nil || prev.Role != info.Role {
			o.RoleChangedAt = now
		}
		if prev == nil || prev.MasterHost != info.MasterHost || prev.MasterPort != info.MasterPort {
			o.MasterAddrChangedAt = now
		}
		if prev != nil && prev.RunID != "" && info.RunID != "" && prev.RunID != info.RunID {
			o.RebootedAt = now
		}
		o.Info = &info
		o.InfoAt = now
		o.InfoErr = ""
	}
	in.setGen(w, significant)
	w.mu.Unlock()

	switch {
	case err != nil && significant:
		w.log.Warn("INFO failed", "addr", in.addr, "error", err)
	case err != nil:
		w.log.Debug("INFO failed", "addr", in.addr, "error", err)
	case oldRole != "" && oldRole != info.Role:
		w.log.Info("instance changed role", "addr", in.addr, "from", oldRole, "to", info.Role,
			"master", masterAddr(info))
	}
	if significant {
		w.notify()
	}
}

func masterAddr(i Info) string {
	if i.MasterHost == "" {
		return ""
	}
	return net.JoinHostPort(i.MasterHost, strconv.Itoa(i.MasterPort))
}

// decisionFieldsDiffer compares what the failover rules read from INFO,
// leaving out offsets and lags, which move all the time.
func decisionFieldsDiffer(a, b *Info) bool {
	if a.RunID != b.RunID || a.Role != b.Role || a.MasterHost != b.MasterHost || a.MasterPort != b.MasterPort ||
		a.MasterLinkStatus != b.MasterLinkStatus || a.HasMasterLinkDownSince != b.HasMasterLinkDownSince ||
		a.ReplicaPriority != b.ReplicaPriority || a.ReplicaAnnounced != b.ReplicaAnnounced ||
		a.MasterFailoverState != b.MasterFailoverState {
		return true
	}
	return !slices.Equal(replicaKeys(a), replicaKeys(b))
}

func replicaKeys(i *Info) []string {
	keys := make([]string, len(i.ConnectedReplicas))
	for n, r := range i.ConnectedReplicas {
		keys[n] = net.JoinHostPort(r.IP, strconv.Itoa(r.Port)) + " " + r.State
	}
	slices.Sort(keys)
	return keys
}
