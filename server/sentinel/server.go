package sentinel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftinel/raftinel/internal/resp"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Defaults for the zero Config fields.
const (
	DefaultAddr             = "127.0.0.1:26379"
	DefaultMaxClients       = 10000
	DefaultSubscriberBuffer = 8 << 20
	DefaultCommandTimeout   = 10 * time.Second
	DefaultBusyPoll         = 50 * time.Microsecond
	// MaxBusyPoll bounds Config.BusyPoll: longer, an idle moment would cost
	// more CPU than the sleep it saves.
	MaxBusyPoll = time.Millisecond
)

// RedisVersion is what HELLO and INFO report. Clients gate features on it;
// 7.0.0 is the Sentinel whose command surface this package reproduces.
const RedisVersion = "7.0.0"

// Config configures a Server. The zero value of every field but Addr and
// Listener selects a default.
type Config struct {
	// Addr is the listen address, for example 127.0.0.1:26379. Ignored when
	// Listener is set.
	Addr string
	// Listener, when set, is used instead of listening on Addr (tests).
	// Close closes it.
	Listener net.Listener
	// Password, when set, is required through AUTH or HELLO AUTH before any
	// other command, as requirepass does for the default user.
	Password string
	// Users, when set, looks up an ACL user (AUTH user pass, HELLO 3 AUTH
	// user pass) other than "default". With users, the default user needs
	// Password: without one it is disabled rather than open.
	Users Users
	// Logger receives connection-level problems; nil discards them.
	Logger *slog.Logger

	// MaxClients bounds open connections; one more is told
	// "max number of clients reached" and closed.
	MaxClients int
	// SubscriberBuffer bounds the bytes of events waiting for one
	// subscriber (default 8 MiB, Redis's soft pub/sub output limit). A
	// subscriber that would exceed it is disconnected, so that one slow
	// reader never delays the others or the node. The bound is in bytes, not
	// events, so that a burst of small events does not drop a healthy client.
	SubscriberBuffer int
	// Limits bounds each request. Before a client authenticates (when a
	// password is set) tighter limits apply, as Redis does.
	Limits resp.Limits
	// CommandTimeout bounds a write that goes through Raft (MONITOR, SET,
	// FAILOVER...).
	CommandTimeout time.Duration
	// AllowScriptReconfig passes notification-script and
	// client-reconfig-script in SET on to the backend; false refuses them
	// with Sentinel's deny-scripts-reconfig error.
	AllowScriptReconfig bool
	// BusyPoll is how long the poll loop (pollloop_linux.go) keeps looking
	// for the next request without sleeping once requests come densely:
	// several connections ready at once, within BusyPoll of the loop's
	// previous round. 0 selects DefaultBusyPoll; negative turns it off.
	BusyPoll time.Duration
}

// unauthLimits are the request limits before AUTH when a password is set:
// Redis allows an unauthenticated client 10 arguments of 16 KiB.
var unauthLimits = resp.Limits{MaxArgs: 10, MaxBulkLen: 16 << 10, MaxInlineLen: 16 << 10, MaxCommandLen: 64 << 10}

// Server serves the Sentinel protocol for one node.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	started time.Time

	// clock is the time in unix nanoseconds, within clockTick while
	// clockRunning; clockRead records that a command read it since the
	// last tick (see now).
	clock        atomic.Int64
	clockRunning atomic.Bool
	clockRead    atomic.Bool

	ctx    context.Context // cancelled by Close; bounds backend writes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// loop serves the plain TCP connections (pollloop_linux.go); nil where
	// there is none, or with noPollLoop (tests of the goroutine loops).
	loop       *pollLoop
	noPollLoop bool

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	closed   bool
	startErr error
	starting bool
	served   chan struct{} // closed when the accept loop ends
	acceptEr error

	nextID atomic.Int64

	// subscribers are the connections with at least one subscription.
	subsMu sync.RWMutex
	subs   map[*conn]struct{}

	// cache is the last State read, valid until its changed channel closes
	// (only with a StateNotifier).
	notifier StateNotifier
	// voucher is the backend's Voucher, if it has one (looked up once:
	// the discovery commands ask it on every request).
	voucher Voucher
	cacheMu sync.Mutex
	cache   atomic.Pointer[cachedState]

	// peerDown remembers since when each peer has been unreachable, for the
	// s-down-time field; the Backend reports only reachability.
	peerMu   sync.Mutex
	peerDown map[string]time.Time

	// panics counts handler panics that were contained to one connection.
	panics atomic.Int64
	// dropped counts subscribers disconnected for falling behind.
	dropped atomic.Int64

	// calls counts the commands received, by table entry (a container's
	// subcommands each have their own), and unknown the rest. The map is
	// built in New and only read afterwards.
	calls   map[*command]*atomic.Uint64
	unknown atomic.Uint64
}

type cachedState struct {
	st      *fsmv1.State
	changed <-chan struct{}
	// addrReplies holds each master's GET-MASTER-ADDR-BY-NAME reply,
	// encoded once per state.
	addrReplies map[string][]byte
}

func newCachedState(st *fsmv1.State, changed <-chan struct{}) *cachedState {
	c := &cachedState{st: st, changed: changed, addrReplies: make(map[string][]byte, len(st.GetMasters()))}
	for name, m := range st.GetMasters() {
		host, port := splitAddr(m.GetAddress())
		c.addrReplies[name] = resp.AppendArrayOfBulks(nil, host, port)
	}
	return c
}

// addrReply returns the encoded GET-MASTER-ADDR-BY-NAME reply of a master
// from the cached state; ok is false when there is no valid cache (the
// caller then reads the state).
func (s *Server) addrReply(name []byte) (reply []byte, known, ok bool) {
	if s.notifier == nil {
		return nil, false, false
	}
	c := s.cache.Load()
	if c == nil || isClosed(c.changed) {
		s.state() // refreshes the cache
		if c = s.cache.Load(); c == nil || isClosed(c.changed) {
			return nil, false, false
		}
	}
	reply, known = c.addrReplies[string(name)]
	return reply, known, true
}

var emptyState = &fsmv1.State{}

// New returns a Server for backend. It does no I/O; Start or Serve does.
func New(cfg Config, backend Backend) *Server {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.SubscriberBuffer <= 0 {
		cfg.SubscriberBuffer = DefaultSubscriberBuffer
	}
	switch {
	case cfg.BusyPoll == 0:
		cfg.BusyPoll = DefaultBusyPoll
	case cfg.BusyPoll > MaxBusyPoll:
		cfg.BusyPoll = MaxBusyPoll
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, backend: backend, log: log.With("component", "sentinel"), started: time.Now(),
		ctx: ctx, cancel: cancel,
		conns: map[*conn]struct{}{}, subs: map[*conn]struct{}{}, peerDown: map[string]time.Time{},
		served: make(chan struct{}),
	}
	s.notifier, _ = backend.(StateNotifier)
	s.voucher, _ = backend.(Voucher)
	s.calls = map[*command]*atomic.Uint64{}
	for _, c := range commandTable {
		s.calls[c] = new(atomic.Uint64)
		for _, sub := range c.subs {
			s.calls[sub] = new(atomic.Uint64)
		}
	}
	return s
}

// count records one received command; nil is an unknown command or
// subcommand.
func (s *Server) count(c *command) {
	if n := s.calls[c]; n != nil {
		n.Add(1)
		return
	}
	s.unknown.Add(1)
}

// clockTick is the resolution of the clock a connection's last activity
// is read from (CLIENT LIST shows idle time in seconds); reading the system
// clock for every command costs more than the command itself on some
// virtual machines.
const clockTick = 100 * time.Millisecond

// now is the time for a command's bookkeeping, in unix nanoseconds: the
// ticking clock while it runs, else a fresh reading that starts it. The
// ticker stops after a tick in which no command read it, so an endpoint
// whose connections are idle (subscribers waiting for events) or that has
// none does not wake the process ten times a second (each wake-up of an
// idle Go process costs tens of microseconds of CPU, mostly in the kernel).
func (s *Server) now() int64 {
	if s.clockRunning.Load() {
		s.clockRead.Store(true)
		return s.clock.Load()
	}
	t := time.Now().UnixNano()
	s.clock.Store(t)
	if s.clockRunning.CompareAndSwap(false, true) {
		s.clockRead.Store(true)
		go s.tickClock()
	}
	return t
}

// tickClock keeps s.clock within clockTick of the time until a tick finds
// it unread, or the server is closed.
func (s *Server) tickClock() {
	t := time.NewTicker(clockTick)
	defer t.Stop()
	defer s.clockRunning.Store(false)
	for {
		select {
		case now := <-t.C:
			s.clock.Store(now.UnixNano())
			if !s.clockRead.Swap(false) {
				return
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// UnknownCommand is the name Stats counts unknown commands and
// subcommands under.
const UnknownCommand = "unknown"

// Stats is what the endpoint reports for the node's metrics.
type Stats struct {
	// Clients is the number of open connections.
	Clients int
	// Subscribers is the number of connections with a subscription.
	Subscribers int
	// Commands counts the commands received since the server was made, by
	// the name Redis's command table gives them ("ping",
	// "sentinel|get-master-addr-by-name"), whatever their outcome. Every
	// known name is present, zero or not; unknown commands and subcommands
	// are counted under UnknownCommand, so the set of names is fixed.
	Commands map[string]uint64
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	out := Stats{Clients: s.numConns(), Commands: make(map[string]uint64, len(s.calls)+1)}
	s.subsMu.RLock()
	out.Subscribers = len(s.subs)
	s.subsMu.RUnlock()
	for c, n := range s.calls {
		out.Commands[c.name] = n.Load()
	}
	out.Commands[UnknownCommand] = s.unknown.Load()
	return out
}

// Start listens (unless Config.Listener is set) and serves in the
// background. It returns the listen error, if any; calling it again is a
// no-op that returns the first result.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.starting {
		return s.startErr
	}
	s.starting = true
	if s.closed {
		s.startErr = errors.New("sentinel: server closed")
		close(s.served)
		return s.startErr
	}
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			s.startErr = fmt.Errorf("sentinel: listen on %s: %w", s.cfg.Addr, err)
			close(s.served)
			return s.startErr
		}
	}
	s.ln = ln
	if !s.noPollLoop {
		if s.loop = newPollLoop(s); s.loop != nil {
			s.wg.Go(s.loop.run)
		}
	}
	s.wg.Go(s.acceptLoop)
	s.wg.Go(s.eventLoop)
	return nil
}

// Serve starts the server and blocks until it stops: nil after Close, or
// the error that stopped it.
func (s *Server) Serve() error {
	if err := s.Start(); err != nil {
		return err
	}
	<-s.served
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acceptEr
}

// Addr is the address the server listens on, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops accepting, closes every connection, cancels writes in flight
// and waits until every goroutine of the server has returned.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	} else if s.cfg.Listener != nil {
		err = s.cfg.Listener.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	loop := s.loop
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.close()
	}
	if loop != nil {
		loop.stop()
	}
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) acceptLoop() {
	defer close(s.served)
	var backoff time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			if !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
					return
				}
				continue
			}
			s.mu.Lock()
			s.acceptEr = fmt.Errorf("sentinel: accept: %w", err)
			s.mu.Unlock()
			return
		}
		backoff = 0
		s.admit(nc)
	}
}

// admit registers a new connection and starts its goroutine, or refuses it
// over MaxClients.
func (s *Server) admit(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	if len(s.conns) >= s.cfg.MaxClients {
		s.mu.Unlock()
		// Best effort, as Redis: a short write deadline so a peer that does
		// not read cannot hold the accept loop.
		_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.WriteString(nc, "-ERR max number of clients reached\r\n")
		_ = nc.Close()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	if s.loop != nil && c.raw != nil && s.loop.add(c) {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.wg.Go(c.serve)
}

// recovered records a handler panic contained to connection c.
func (s *Server) recovered(c *conn, r any) {
	s.panics.Add(1)
	s.log.Error("panic while serving a client; connection closed", "client", c.id, "panic", r, "stack", string(debug.Stack()))
}

// forget removes a finished connection.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.setSubscribed(c, false)
}

// serveConn runs the protocol on an already connected stream, for tests and
// fuzzing through net.Pipe. It returns when the connection ends.
func (s *Server) serveConn(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	c.serve()
}

// connections returns the open connections in id order (CLIENT LIST/KILL).
func (s *Server) connections() []*conn {
	s.mu.Lock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (s *Server) numConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// state returns the replicated state. The result is shared and read-only:
// nothing in this package may modify it.
func (s *Server) state() *fsmv1.State {
	if s.notifier == nil {
		return orEmpty(s.backend.State())
	}
	if c := s.cache.Load(); c != nil && !isClosed(c.changed) {
		return c.st
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if c := s.cache.Load(); c != nil && !isClosed(c.changed) {
		return c.st
	}
	// Changed before State: a change in between closes ch and the next call
	// reads the state again, so the cache can never hold a state older than ch says.
	ch, _ := s.notifier.Changed()
	st := orEmpty(s.backend.State())
	if ch != nil {
		s.cache.Store(newCachedState(st, ch))
	}
	return st
}

func orEmpty(st *fsmv1.State) *fsmv1.State {
	if st == nil {
		return emptyState
	}
	return st
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// downSince returns since when each unreachable peer of ps has been seen
// unreachable, remembering it for the next reply.
func (s *Server) downSince(ps []Peer, now time.Time) map[string]time.Time {
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	down := make(map[string]time.Time)
	seen := make(map[string]bool, len(ps))
	for _, p := range ps {
		seen[p.ID] = true
		if p.Reachable {
			delete(s.peerDown, p.ID)
			continue
		}
		since, ok := s.peerDown[p.ID]
		if !ok {
			since = now
			s.peerDown[p.ID] = since
		}
		down[p.ID] = since
	}
	for id := range s.peerDown {
		if !seen[id] {
			delete(s.peerDown, id)
		}
	}
	return down
}

// listedPeers are the peers SENTINELS shows: only those with a known
// Sentinel address, since clients dial every entry (go-redis adds each to
// its sentinel list). num-other-sentinels counts the same set.
// They are sorted by id.
func listedPeers(ps []Peer) []Peer {
	out := ps[:0:0]
	for _, p := range ps {
		if p.SentinelAddr != "" {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// eventLoop forwards the backend's events to subscribers until Close.
func (s *Server) eventLoop() {
	var backoff time.Duration
	runIDs := map[string]string{} // node id -> run id, owned by this goroutine
	for {
		events, cancel := s.backend.Events()
		ended, delivered := s.forward(events, runIDs)
		if cancel != nil {
			cancel()
		}
		if !ended {
			return
		}
		s.log.Warn("event stream from the node ended; subscribers may have missed events, resubscribing")
		if delivered {
			backoff = 0 // a stream that worked: retry at once; one that never did: back off
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
	}
}

// forward publishes events until the stream ends (ended) or the server
// closes, and reports whether any event arrived.
func (s *Server) forward(events <-chan *fsmv1.Event, runIDs map[string]string) (ended, delivered bool) {
	if events == nil {
		return s.ctx.Err() == nil, false
	}
	for {
		select {
		case <-s.ctx.Done():
			return false, delivered
		case ev, ok := <-events:
			if !ok {
				return s.ctx.Err() == nil, delivered
			}
			delivered = true
			if ev == nil || !s.ownEvent(ev, runIDs) {
				continue
			}
			s.publish(ev)
		}
	}
}

// ownEvent filters node opinions: an event that carries a node id (+sdown,
// -sdown of a master) is one node's subjective view, which a real Sentinel
// publishes only for itself. Cluster-wide events carry none.
func (s *Server) ownEvent(ev *fsmv1.Event, runIDs map[string]string) bool {
	id := ev.GetNodeId()
	if id == "" {
		return true
	}
	rid, ok := runIDs[id]
	if !ok {
		if len(runIDs) > 1024 {
			clear(runIDs)
		}
		rid = RunID(id)
		runIDs[id] = rid
	}
	return rid == s.backend.MyID()
}

// publish queues ev for every subscriber whose channels or patterns match.
// It never blocks: a subscriber with a full queue is disconnected.
func (s *Server) publish(ev *fsmv1.Event) {
	s.subsMu.RLock()
	defer s.subsMu.RUnlock()
	for c := range s.subs {
		if !c.wants(ev.GetType()) {
			continue
		}
		if !c.enqueue(ev) && c.dropSlow() {
			s.dropped.Add(1)
			s.log.Warn("disconnecting a subscriber that does not keep up", "client", c.id, "addr", c.remote, "buffer", s.cfg.SubscriberBuffer)
		}
	}
}

func (s *Server) setSubscribed(c *conn, on bool) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	if on {
		s.subs[c] = struct{}{}
	} else {
		delete(s.subs, c)
	}
}

// write runs a backend write with the server's command timeout.
// Users are the ACL users of the endpoint, read at every AUTH (so that a
// reload applies to the next one).
type Users interface {
	// Lookup finds the user with this name and password.
	Lookup(user, pass string) (User, bool)
	// Any tells whether there is any user now.
	Any() bool
}

// defaultOpen tells whether the default user needs no password: no
// password is set and no ACL user exists.
func (s *Server) defaultOpen() bool {
	return s.cfg.Password == "" && (s.cfg.Users == nil || !s.cfg.Users.Any())
}

// User is an ACL user of the endpoint.
type User struct {
	Name string
	// ReadOnly users run only discovery commands: SENTINEL
	// get-master-addr-by-name, master(s), replicas, sentinels, the
	// subscribe family and the connection commands.
	ReadOnly bool
}

// Client is who sent a write, for the backend (the audit).
type Client struct {
	User string // "default" for the shared password or no password
	Addr string
}

type clientKey struct{}

// ClientFrom returns the client a write's context carries.
func ClientFrom(ctx context.Context) (Client, bool) {
	c, ok := ctx.Value(clientKey{}).(Client)
	return c, ok
}

// write runs a backend write with the client in its context.
func (c *conn) write(fn func(ctx context.Context) error) error {
	return c.s.write(func(ctx context.Context) error {
		return fn(context.WithValue(ctx, clientKey{}, Client{User: c.user, Addr: c.remote}))
	})
}

func (s *Server) write(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CommandTimeout)
	defer cancel()
	return fn(ctx)
}
