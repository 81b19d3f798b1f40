package sentinel

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftinel/raftinel/internal/resp"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// maxSubscriptions bounds channels plus patterns per connection. Sentinel
// publishes about forty event types, so a legitimate client needs far fewer;
// the bound keeps one client from making the event fan-out (which matches
// every pattern of every subscriber per event) arbitrarily slow.
const maxSubscriptions = 4096

// conn is one client connection. Its serving goroutine reads and runs
// commands; once it subscribes, a second goroutine (pump) writes the events
// queued for it, so the fan-out never waits on a socket.
type conn struct {
	s       *Server
	nc      net.Conn
	id      int64
	remote  string
	local   string
	created time.Time
	r       *resp.Reader // serving goroutine only
	// raw is the source of r on a plain TCP connection, served by the event
	// loop (pollloop_linux.go) or the raw read loop (rawread.go); nil for the
	// general loop.
	raw *rawSource

	// While the connection is in the poll loop: lfd is the loop's
	// descriptor of its socket and lw writes to it; nc is then nil. fdMu
	// guards lfd and nc against close from other goroutines.
	fdMu sync.Mutex
	lfd  int
	lw   *fdWriter

	// The serving goroutine's last command and subcommand lookups.
	cmdCache, subCache lookupCache

	// mu guards w: replies from the serving goroutine and messages from the
	// pump share one ordered byte stream.
	mu sync.Mutex
	w  *resp.Writer

	// Owned by the serving goroutine.
	authed     bool
	user       string // the ACL user authenticated ("default" before any AUTH)
	readOnly   bool   // a read-only ACL user: discovery commands only
	closeAfter bool
	pumping    bool

	// Read by other connections (CLIENT LIST, KILL).
	infoMu     sync.Mutex
	name       string
	libName    string
	libVer     string
	lastCmd    atomic.Pointer[command]
	lastActive atomic.Int64 // unix nanos, from the server's coarse clock
	proto      atomic.Int32

	// Subscriptions: changed by the serving goroutine, read by the fan-out
	// and the pump. Lock order: mu before subMu.
	subMu    sync.RWMutex
	channels map[string]struct{}
	chanList []string // subscription order, for UNSUBSCRIBE without arguments
	patterns map[string]struct{}
	patList  []string
	nChan    atomic.Int32
	nPat     atomic.Int32

	// The subscriber's queue: the fan-out appends under qmu and pokes wake;
	// the pump takes the whole queue at once.
	qmu    sync.Mutex
	queue  []*fsmv1.Event
	qbytes int
	wake   chan struct{}

	done      chan struct{}
	closeOnce sync.Once
	slow      atomic.Bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s: s, nc: nc, id: s.nextID.Add(1), created: time.Now(),
		w:      resp.NewWriter(nc),
		authed: s.defaultOpen(),
		user:   "default",
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		lfd:    -1,
	}
	if a := nc.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	if a := nc.LocalAddr(); a != nil {
		c.local = a.String()
	}
	limits := s.cfg.Limits
	if !c.authed {
		limits = tighter(limits, unauthLimits)
	}
	if c.raw = rawSourceFor(nc); c.raw != nil {
		c.r = resp.NewReader(c.raw, limits)
	} else {
		c.r = resp.NewReader(nc, limits)
	}
	c.proto.Store(2)
	c.lastActive.Store(c.created.UnixNano())
	return c
}

// tighter returns the smaller of each limit; zero means the resp default.
func tighter(a, b resp.Limits) resp.Limits {
	pick := func(x, y, def int) int {
		if x <= 0 {
			x = def
		}
		if y <= 0 {
			y = def
		}
		return min(x, y)
	}
	return resp.Limits{
		MaxArgs:       pick(a.MaxArgs, b.MaxArgs, resp.DefaultMaxArgs),
		MaxBulkLen:    pick(a.MaxBulkLen, b.MaxBulkLen, resp.DefaultMaxBulkLen),
		MaxInlineLen:  pick(a.MaxInlineLen, b.MaxInlineLen, resp.DefaultMaxInlineLen),
		MaxCommandLen: pick(a.MaxCommandLen, b.MaxCommandLen, resp.DefaultMaxCommandLen),
	}
}

// close ends the connection; safe from any goroutine, any number of times.
// A connection in the poll loop has its socket shut down, and the loop
// closes it. A connection in the raw read loop is only woken by a past
// deadline (its reads and writes fail at once) and its serving goroutine
// closes the socket: Close would wait for the loop's callback, which may be
// running the very command that closes (CLIENT KILL) or waiting on a lock
// the caller holds.
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.fdMu.Lock()
		switch {
		case c.lfd >= 0:
			shutdownLoopFD(c.lfd)
		case c.nc == nil: // the poll loop has closed it
		case c.raw != nil:
			_ = c.nc.SetDeadline(aLongTimeAgo)
		default:
			_ = c.nc.Close()
		}
		c.fdMu.Unlock()
		close(c.done)
	})
}

// closed reports whether close was called.
func (c *conn) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// dropSlow disconnects a subscriber whose queue is full. It reports whether
// this call did it, so the drop is logged once.
func (c *conn) dropSlow() bool {
	if !c.slow.CompareAndSwap(false, true) {
		return false
	}
	c.close()
	return true
}

func (c *conn) serve() {
	defer c.served()
	if c.raw != nil {
		c.serveRaw()
		return
	}
	for c.serveOne() {
	}
}

// serveHandedOff serves a connection that left the poll loop: it writes
// what the loop could not, runs the request that made it leave (when not
// nil), then goes on as the raw read loop.
func (c *conn) serveHandedOff(pending []byte, args [][]byte) {
	defer c.served()
	if len(pending) > 0 {
		c.mu.Lock()
		_, err := c.nc.Write(pending)
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
	if args != nil && !c.exec(args) {
		return
	}
	c.serveRaw()
}

// served ends a connection's goroutine, deferred: it contains a panic (a bug
// in a handler must cost one connection, not the node) and closes.
func (c *conn) served() {
	if r := recover(); r != nil {
		c.s.recovered(c, r)
	}
	c.close()
	if c.raw != nil {
		_ = c.nc.Close() // close only woke it; see close
	}
	c.s.forget(c)
}

// serveOne reads the next request with blocking reads and runs it; false
// ends the connection.
func (c *conn) serveOne() bool {
	args, err := c.r.ReadCommandShared()
	if err != nil {
		c.readFailed(err)
		return false
	}
	return c.exec(args)
}

// readFailed answers a malformed request with Redis's protocol error before
// the connection closes: the stream cannot be resynchronised.
func (c *conn) readFailed(err error) {
	var pe *resp.ProtocolError
	if !errors.As(err, &pe) {
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrUnexpectedEOF) && !c.closed() {
			c.s.log.Debug("client read failed", "client", c.id, "err", err)
		}
		return
	}
	c.s.log.Info("closing a client after a protocol error", "client", c.id, "addr", c.remote, "err", err)
	if c.closed() || c.nc == nil {
		return // killed meanwhile: its past deadline must stay
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.mu.Lock()
	c.w.Error("ERR " + pe.Error())
	_ = c.w.Flush()
	c.mu.Unlock()
}

// exec runs one command and reports whether the connection stays open. The
// checks come in Redis's order: command lookup and arity, then
// authentication, then the subscribed-context rule.
func (c *conn) exec(args [][]byte) bool {
	cmd, sub := c.lookupCommand(args)
	return c.execLookedUp(args, cmd, sub)
}

// lookupCommand finds the command args name, and its subcommand when the
// command is a container and args name one it has.
func (c *conn) lookupCommand(args [][]byte) (cmd, sub *command) {
	cmd = c.cmdCache.lookup(nil, commandTable, args[0])
	if cmd != nil && len(cmd.subs) > 0 && len(args) >= 2 {
		sub = c.subCache.lookup(cmd, cmd.subs, args[1])
	}
	return cmd, sub
}

// execLookedUp is exec for a caller that has looked the command up already.
func (c *conn) execLookedUp(args [][]byte, cmd, sub *command) bool {
	c.lastActive.Store(c.s.now())
	switch {
	case cmd == nil, len(cmd.subs) > 0 && len(args) >= 2 && sub == nil:
		c.s.count(nil)
	case sub != nil:
		c.s.count(sub)
	default:
		c.s.count(cmd)
	}
	c.mu.Lock()
	switch {
	case cmd == nil:
		// Logged because a client library that needs a command this front
		// end lacks shows up here first.
		c.s.log.Debug("unknown command", "client", c.id, "command", string(trunc(args[0], 64)))
		c.w.Error(unknownCommand(args))
	case len(cmd.subs) > 0 && len(args) >= 2 && sub == nil:
		c.s.log.Debug("unknown subcommand", "client", c.id, "command", cmd.name, "subcommand", string(trunc(args[1], 64)))
		c.w.Error(fmt.Sprintf("ERR unknown subcommand '%s'. Try %s HELP.", trunc(args[1], 128), strings.ToUpper(cmd.name)))
	default:
		if sub != nil {
			cmd = sub
		}
		switch {
		case !arityOK(cmd.arity, len(args)):
			c.w.Error(wrongArity(cmd.name))
		case !c.authed && cmd.flags&flagNoAuth == 0:
			c.w.Error("NOAUTH Authentication required.")
		case c.readOnly && cmd.flags&flagDiscovery == 0:
			c.w.Error(fmt.Sprintf("NOPERM User %s has no permissions to run the '%s' command", c.user, cmd.name))
		case c.w.Protocol() == 2 && c.subscriptions() > 0 && cmd.flags&flagPubSub == 0:
			c.w.Error(fmt.Sprintf("ERR Can't execute '%s': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", cmd.name))
		default:
			c.lastCmd.Store(cmd)
			if cmd.flags&flagUnlocked != 0 {
				// Writes wait for Raft; the pump must be able to deliver
				// events meanwhile, so the handler takes mu itself.
				c.mu.Unlock()
				cmd.run(c, args)
				c.mu.Lock()
			} else {
				cmd.run(c, args)
			}
		}
	}
	var err error
	if c.r.Buffered() == 0 || c.closeAfter {
		// Flush once per pipeline: replies to queued commands go out together.
		err = c.w.Flush()
	}
	c.mu.Unlock()
	return err == nil && !c.closeAfter
}

func arityOK(arity, n int) bool {
	if arity >= 0 {
		return n == arity
	}
	return n >= -arity
}

func wrongArity(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

// unknownCommand is Redis 7's text: the name and the first arguments, each
// quoted and followed by a space, up to 128 bytes.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(trunc(args[0], 128))
	b.WriteString("', with args beginning with: ")
	n := 0
	for _, a := range args[1:] {
		if n >= 128 {
			break
		}
		a = trunc(a, 128-n)
		b.WriteByte('\'')
		b.Write(a)
		b.WriteString("' ")
		n += len(a) + 3
	}
	return b.String()
}

func trunc(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// lookupCache remembers the last name looked up in one table and what it
// found: a client sends the same command over and over, and comparing a
// few bytes is cheaper than lowering and hashing them. The table is named
// by its owner: nil for the command table, else the command whose
// subcommands it holds.
type lookupCache struct {
	valid bool
	owner *command
	n     int
	name  [32]byte
	cmd   *command
}

func (lc *lookupCache) lookup(owner *command, table map[string]*command, name []byte) *command {
	if lc.valid && lc.owner == owner && len(name) == lc.n && string(name) == string(lc.name[:lc.n]) {
		return lc.cmd
	}
	cmd := lookup(table, name)
	lc.valid = len(name) <= len(lc.name)
	if lc.valid {
		lc.owner, lc.n, lc.cmd = owner, copy(lc.name[:], name), cmd
	}
	return cmd
}

// lookup finds a command by name, ignoring ASCII case, without allocating.
func lookup(table map[string]*command, name []byte) *command {
	var buf [32]byte
	if len(name) > len(buf) {
		return nil
	}
	for i, b := range name {
		buf[i] = lower(b)
	}
	return table[string(buf[:len(name)])]
}

func (c *conn) subscriptions() int {
	return int(c.nChan.Load() + c.nPat.Load())
}

// checkPassword compares in constant time: the default user against the
// shared password, any other against the configured ACL users.
func (c *conn) checkPassword(user, pass []byte) (User, bool) {
	if user != nil && string(user) != "default" {
		if c.s.cfg.Users == nil {
			return User{}, false
		}
		return c.s.cfg.Users.Lookup(string(user), string(pass))
	}
	def := User{Name: "default"}
	if c.s.cfg.Password == "" {
		// The default user has nopass, unless ACL users exist: then it is
		// off, or the users would protect nothing.
		return def, c.s.defaultOpen()
	}
	return def, subtle.ConstantTimeCompare(pass, []byte(c.s.cfg.Password)) == 1
}

// authenticate makes the connection u's; a later AUTH may change the user.
func (c *conn) authenticate(u User) {
	c.user, c.readOnly = u.Name, u.ReadOnly
	if c.authed {
		return
	}
	c.authed = true
	c.r.SetLimits(c.s.cfg.Limits)
}

// wants reports whether an event on channel should be queued for c.
func (c *conn) wants(channel string) bool {
	c.subMu.RLock()
	defer c.subMu.RUnlock()
	if _, ok := c.channels[channel]; ok {
		return true
	}
	for _, p := range c.patList {
		if globMatch(p, channel, false) {
			return true
		}
	}
	return false
}

// eventCost approximates the bytes an event occupies until it is written.
func eventCost(ev *fsmv1.Event) int { return len(ev.GetType()) + len(ev.GetPayload()) + 64 }

// enqueue queues ev for the pump without blocking. It reports false when
// the subscriber's buffer is full.
func (c *conn) enqueue(ev *fsmv1.Event) bool {
	cost := eventCost(ev)
	c.qmu.Lock()
	if c.qbytes+cost > c.s.cfg.SubscriberBuffer {
		c.qmu.Unlock()
		return false
	}
	c.queue = append(c.queue, ev)
	c.qbytes += cost
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // already poked; the pump will see this event too
	}
	return true
}

// pump writes queued events until the connection closes, everything queued
// at once with one flush.
func (c *conn) pump() {
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.qmu.Lock()
		batch := c.queue
		c.queue = nil
		c.qmu.Unlock()
		c.mu.Lock()
		for _, ev := range batch {
			c.writeEvent(ev)
		}
		err := c.w.Flush()
		c.mu.Unlock()
		// The bytes are released only once written, so a client whose
		// socket is full keeps its queue full and is dropped.
		c.qmu.Lock()
		for _, ev := range batch {
			c.qbytes -= eventCost(ev)
		}
		c.qmu.Unlock()
		if err != nil {
			c.close()
			return
		}
	}
}

// writeEvent writes the message frames for ev, with mu held: one "message"
// if the channel is subscribed, then one "pmessage" per matching pattern,
// as Redis does. Subscriptions are checked again here so nothing is sent
// for a channel after its UNSUBSCRIBE confirmation.
func (c *conn) writeEvent(ev *fsmv1.Event) {
	channel, payload := ev.GetType(), ev.GetPayload()
	c.subMu.RLock()
	defer c.subMu.RUnlock()
	if _, ok := c.channels[channel]; ok {
		c.w.PushHeader(3)
		c.w.BulkString("message")
		c.w.BulkString(channel)
		c.w.BulkString(payload)
	}
	for _, p := range c.patList {
		if globMatch(p, channel, false) {
			c.w.PushHeader(4)
			c.w.BulkString("pmessage")
			c.w.BulkString(p)
			c.w.BulkString(channel)
			c.w.BulkString(payload)
		}
	}
}

// clientLine is this connection's CLIENT LIST / CLIENT INFO line.
func (c *conn) clientLine() string {
	c.infoMu.Lock()
	name, lib, ver := c.name, c.libName, c.libVer
	c.infoMu.Unlock()
	now := time.Now()
	flags := "N"
	if c.subscriptions() > 0 {
		flags = "P"
	}
	cmd := "NULL"
	if k := c.lastCmd.Load(); k != nil {
		cmd = k.name
	}
	idle := now.Sub(time.Unix(0, c.lastActive.Load()))
	return "id=" + strconv.FormatInt(c.id, 10) +
		" addr=" + c.remote + " laddr=" + c.local + " fd=-1 name=" + name +
		" age=" + strconv.FormatInt(int64(now.Sub(c.created)/time.Second), 10) +
		" idle=" + strconv.FormatInt(int64(idle/time.Second), 10) +
		" flags=" + flags + " db=0 sub=" + strconv.Itoa(int(c.nChan.Load())) +
		" psub=" + strconv.Itoa(int(c.nPat.Load())) + " ssub=0 multi=-1 watch=0 cmd=" + cmd +
		" user=default redir=-1 resp=" + strconv.Itoa(int(c.proto.Load())) +
		" lib-name=" + lib + " lib-ver=" + ver + "\n"
}
