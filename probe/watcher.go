package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Sentinel's periods, the defaults of WatcherConfig.
const (
	DefaultPingPeriod     = time.Second
	DefaultInfoPeriod     = 10 * time.Second
	DefaultFastInfoPeriod = time.Second
	DefaultInfoTimeout    = 5 * time.Second
)

// minPingPeriod keeps a tiny down-after from turning the PING loop into a
// busy loop.
const minPingPeriod = 10 * time.Millisecond

// WatcherConfig configures a Watcher. Zero values take the defaults.
type WatcherConfig struct {
	// ClientName is sent with CLIENT SETNAME on every connection.
	ClientName string
	// Now stamps observations. Keep the monotonic reading (time.Now does)
	// so that wall clock jumps do not distort elapsed times. It is not
	// used for scheduling, which always runs on real timers.
	Now    func() time.Time
	Logger *slog.Logger

	// PingPeriod caps the PING period; a target's period is
	// min(PingPeriod, DownAfter), as in Sentinel.
	PingPeriod time.Duration
	// InfoPeriod is the normal INFO period.
	InfoPeriod time.Duration
	// FastInfoPeriod is the INFO period for a target with FastInfo, for a
	// replica whose INFO reports its master link down, and for the retry
	// after a failed INFO.
	FastInfoPeriod time.Duration
	// InfoTimeout bounds one INFO.
	InfoTimeout time.Duration
	// DialTimeout bounds connecting (a PING's own deadline may be shorter).
	DialTimeout time.Duration
}

// Target is one instance to watch and how.
type Target struct {
	Addr string
	Auth Auth
	// DownAfter is the instance's down-after setting; it shortens the
	// PING period below PingPeriod. Zero leaves PingPeriod.
	DownAfter time.Duration
	// FastInfo asks for INFO every FastInfoPeriod, as Sentinel does for
	// the replicas of a master that is ODOWN or failing over.
	FastInfo bool
}

// Observation is what the Watcher has seen of one instance. A zero time
// means "never". All times come from WatcherConfig.Now.
type Observation struct {
	Addr string
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
	// PingPendingSince is when the oldest PING still without a valid reply
	// was sent, zero when there is none: Sentinel's act_ping_time, the
	// SDOWN clock. It survives invalid replies and timeouts, and is cleared
	// by a valid reply and by a refused or broken connection (then the
	// clock is the last valid reply, as in Sentinel for a disconnected
	// link).
	PingPendingSince time.Time

	// Info is the last INFO that was read and parsed; it stays while later
	// attempts fail (InfoAt says how old it is).
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
}

func (o Observation) clone() Observation {
	if o.Info != nil {
		info := o.Info.Clone()
		o.Info = &info
	}
	return o
}

// ErrWatcherClosed is returned by SetTargets after Close.
var ErrWatcherClosed = errors.New("probe: watcher closed")

// Watcher keeps PINGing and INFO-polling a changing set of instances and
// keeps the latest Observation of each. Each instance has two goroutines,
// one for PING and one for INFO, so a slow INFO never delays a PING, and
// each has at most one command in flight.
type Watcher struct {
	cfg     WatcherConfig
	log     *slog.Logger
	changed chan struct{}

	mu        sync.Mutex
	instances map[string]*instance
	closed    bool
}

type instance struct {
	addr     string
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	pingWake chan struct{}
	infoWake chan struct{}

	// Guarded by Watcher.mu.
	target Target
	conn   *Conn
	obs    Observation
	// pingConnects and infoConnects are conn.Connects() as of the last
	// PING and the last INFO: a connection made since the last INFO may
	// be to a restarted server, so INFO is read again at once.
	pingConnects, infoConnects uint64
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
	cfg.PingPeriod = orDefault(cfg.PingPeriod, DefaultPingPeriod)
	cfg.InfoPeriod = orDefault(cfg.InfoPeriod, DefaultInfoPeriod)
	cfg.FastInfoPeriod = orDefault(cfg.FastInfoPeriod, DefaultFastInfoPeriod)
	cfg.InfoTimeout = orDefault(cfg.InfoTimeout, DefaultInfoTimeout)
	cfg.DialTimeout = orDefault(cfg.DialTimeout, DefaultDialTimeout)
	return &Watcher{
		cfg:       cfg,
		log:       cfg.Logger,
		changed:   make(chan struct{}, 1),
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
		if seen[t.Addr] {
			return fmt.Errorf("target %s listed twice", t.Addr)
		}
		seen[t.Addr] = true
	}

	var stop []*instance
	var oldConns []*Conn
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
	// NewConn cannot fail on targets validated above; should it anyway,
	// the loop stops but the instances already removed are still stopped.
	var err error
	for _, t := range targets {
		in, ok := w.instances[t.Addr]
		if !ok {
			var conn *Conn
			if conn, err = w.newConn(t); err != nil {
				break
			}
			w.instances[t.Addr] = w.start(t, conn)
			continue
		}
		if t.Auth != in.target.Auth {
			var conn *Conn
			if conn, err = w.newConn(t); err != nil {
				break
			}
			oldConns = append(oldConns, in.conn)
			in.conn = conn
		}
		in.target = t
		wake(in.pingWake)
		wake(in.infoWake)
	}
	w.mu.Unlock()

	for _, c := range oldConns {
		_ = c.Close()
	}
	for _, in := range stop {
		w.stop(in)
	}
	return err
}

func (w *Watcher) newConn(t Target) (*Conn, error) {
	return NewConn(ConnConfig{
		Addr:        t.Addr,
		Auth:        t.Auth,
		ClientName:  w.cfg.ClientName,
		DialTimeout: w.cfg.DialTimeout,
		ReadTimeout: max(w.cfg.InfoTimeout, w.cfg.PingPeriod),
	})
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// start must be called with w.mu held.
func (w *Watcher) start(t Target, conn *Conn) *instance {
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{
		addr:     t.Addr,
		ctx:      ctx,
		cancel:   cancel,
		pingWake: make(chan struct{}, 1),
		infoWake: make(chan struct{}, 1),
		target:   t,
		conn:     conn,
		obs:      Observation{Addr: t.Addr, Since: w.cfg.Now()},
	}
	in.wg.Add(2)
	go w.pingLoop(in)
	go w.infoLoop(in)
	w.log.Debug("watching instance", "addr", t.Addr)
	return in
}

// stop must be called without w.mu: the loops take it to record results.
func (w *Watcher) stop(in *instance) {
	in.cancel()
	w.mu.Lock()
	conn := in.conn
	w.mu.Unlock()
	// Closing the connection interrupts a command blocked on a frozen
	// server sooner than its deadline would.
	_ = conn.Close()
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

// Observations returns a copy of the latest observation of every target.
func (w *Watcher) Observations() map[string]Observation {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]Observation, len(w.instances))
	for addr, in := range w.instances {
		out[addr] = in.obs.clone()
	}
	return out
}

// Observation returns a copy of the latest observation of addr.
func (w *Watcher) Observation(addr string) (Observation, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	in, ok := w.instances[addr]
	if !ok {
		return Observation{}, false
	}
	return in.obs.clone(), true
}

func (w *Watcher) pingPeriod(in *instance) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pingPeriodLocked(in)
}

func (w *Watcher) pingPeriodLocked(in *instance) time.Duration {
	p := w.cfg.PingPeriod
	if d := in.target.DownAfter; d > 0 && d < p {
		p = d
	}
	return max(p, minPingPeriod)
}

func (w *Watcher) infoPeriod(in *instance) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := in.obs
	if in.conn != nil && in.conn.Connects() != in.infoConnects {
		return 0
	}
	if in.target.FastInfo || o.InfoErr != "" || (o.Info != nil && o.Info.HasMasterLinkDownSince) {
		return w.cfg.FastInfoPeriod
	}
	return w.cfg.InfoPeriod
}

func (w *Watcher) current(in *instance) *Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return in.conn
}

func (w *Watcher) pingLoop(in *instance) {
	defer in.wg.Done()
	for {
		conn, period := w.current(in), w.pingPeriod(in)
		started := time.Now()
		w.pingSent(in, conn)
		// The period doubles as the PING's deadline: a frozen instance
		// costs one period per attempt, and the next PING is due then.
		ctx, cancel := context.WithTimeout(in.ctx, period)
		res := conn.Ping(ctx)
		cancel()
		if in.ctx.Err() != nil {
			return
		}
		w.recordPing(in, conn, res)
		if !sleepUntil(in, started, func() time.Duration { return w.pingPeriod(in) }, in.pingWake) {
			return
		}
	}
}

func (w *Watcher) infoLoop(in *instance) {
	defer in.wg.Done()
	for {
		conn := w.current(in)
		started := time.Now()
		ctx, cancel := context.WithTimeout(in.ctx, w.cfg.InfoTimeout)
		info, err := conn.Info(ctx)
		cancel()
		if in.ctx.Err() != nil {
			return
		}
		w.recordInfo(in, conn, info, err)
		if !sleepUntil(in, started, func() time.Duration { return w.infoPeriod(in) }, in.infoWake) {
			return
		}
	}
}

// sleepUntil waits until started+period(), reading period again whenever
// the settings change, and reports false when the instance is stopped.
func sleepUntil(in *instance, started time.Time, period func() time.Duration, wake <-chan struct{}) bool {
	for {
		d := time.Until(started.Add(period()))
		if d <= 0 {
			return in.ctx.Err() == nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return true
		case <-wake:
			t.Stop()
		case <-in.ctx.Done():
			t.Stop()
			return false
		}
	}
}

// pingSent starts the SDOWN clock when no earlier PING is still pending.
func (w *Watcher) pingSent(in *instance, conn *Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if in.conn == conn && in.obs.PingPendingSince.IsZero() {
		in.obs.PingPendingSince = w.cfg.Now()
	}
}

func (w *Watcher) recordPing(in *instance, conn *Conn, res PingResult) {
	w.mu.Lock()
	if in.conn != conn || in.ctx.Err() != nil {
		// A result from a connection replaced by new credentials says
		// nothing about the new ones.
		w.mu.Unlock()
		return
	}
	now := w.cfg.Now()
	o := &in.obs
	first := o.LastPingAt.IsZero()
	wasValid, wasLinkUp := !first && o.LastPingErr == "", o.LinkUp
	o.LastPingAt = now
	o.LinkUp = res.Replied
	if res.Valid || (!res.Replied && !res.TimedOut) {
		o.PingPendingSince = time.Time{}
	}
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
	reconnected := conn.Connects() != in.pingConnects
	in.pingConnects = conn.Connects()
	w.mu.Unlock()

	if reconnected {
		wake(in.infoWake) // see instance.infoConnects
	}

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

func (w *Watcher) recordInfo(in *instance, conn *Conn, info Info, err error) {
	w.mu.Lock()
	if in.conn != conn || in.ctx.Err() != nil {
		w.mu.Unlock()
		return
	}
	now := w.cfg.Now()
	o := &in.obs
	in.infoConnects = conn.Connects()
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
