package sentinel

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The poll loop serves every plain TCP connection from one goroutine, the
// way redis-sentinel serves all of its clients from one thread.
//
// With a goroutine per connection, each request wakes its goroutine through
// Go's poller, and on a machine whose other core is busy (the clients, the
// Redis servers) the runtime hands that wake-up to an idle processor: a
// thread wake-up per request, which the profile of one node under 50
// clients showed as about a third of its time, and which made the endpoint
// about 10% slower than redis-sentinel. The loop waits for every connection
// in one epoll_wait, reads each ready socket once and answers what it read,
// so a request costs a read and a write.
//
// The loop owns a duplicate of the socket's descriptor and closes the net.Conn
// it was accepted as, so that Go's poller no longer watches the socket (it
// would wake a thread for every request too). It runs only the commands
// that answer at once. A connection leaves the loop, for the goroutine
// loops of rawread.go, before anything that could make the loop wait or
// needs a goroutine of its own: a write through Raft (flagUnlocked), a
// subscription (its events are written from another goroutine), a request
// the one-pass parse does not take whole (cut by the network, or of an
// unusual form), and a reply the socket cannot take now. It never comes
// back: those are rare, and a connection's goroutine is what served every
// connection before.

// pollLoop is the loop of one server.
type pollLoop struct {
	s     *Server
	epfd  int
	wakeR int // the read end of the pipe that wakes the loop to stop
	wakeW int

	// mu guards conns, and stopped with the descriptors above: once the
	// loop has stopped they are closed, and their numbers may be reused.
	mu      sync.Mutex
	conns   map[int32]*conn // by the loop's descriptor
	stopped bool
}

// newPollLoop returns a loop, or nil when the system refuses one (the
// connections then each get a goroutine, as on other systems).
func newPollLoop(s *Server) *pollLoop {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		s.log.Warn("no poll loop; a goroutine per connection", "err", err)
		return nil
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		s.log.Warn("no poll loop; a goroutine per connection", "err", err)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(p[0])
		_ = syscall.Close(p[1])
		s.log.Warn("no poll loop; a goroutine per connection", "err", err)
		return nil
	}
	return &pollLoop{s: s, epfd: epfd, wakeR: p[0], wakeW: p[1], conns: map[int32]*conn{}}
}

// add moves c, a plain TCP connection just accepted, into the loop. It
// reports false when c stays with its net.Conn (and then needs a goroutine).
func (l *pollLoop) add(c *conn) bool {
	var fd int
	var dupErr error
	if err := c.raw.rc.Control(func(sysfd uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, sysfd, syscall.F_DUPFD_CLOEXEC, 0)
		fd = int(r)
		if errno != 0 {
			dupErr = errno
		}
	}); err != nil || dupErr != nil {
		return false
	}
	nc := c.nc
	c.lfd, c.nc = fd, nil
	c.raw.fd = fd
	c.lw = &fdWriter{fd: fd}
	c.w.Reset(c.lw)
	l.mu.Lock()
	var err error = syscall.EBADF // a stopped loop takes no connection
	if !l.stopped {
		l.conns[int32(fd)] = c
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			delete(l.conns, int32(fd))
		}
	}
	l.mu.Unlock()
	if err != nil {
		_ = syscall.Close(fd)
		c.lfd, c.nc, c.raw.fd, c.lw = -1, nc, -1, nil
		c.w.Reset(nc)
		return false
	}
	// The socket stays open through fd; closing the net.Conn takes it out
	// of Go's poller.
	_ = nc.Close()
	return true
}

// run serves the loop's connections until stop.
func (l *pollLoop) run() {
	events := make([]syscall.EpollEvent, 256)
	defer l.closeAll()
	busy := false
	for {
		var n int
		var err error
		n, busy, err = l.wait(events, busy)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			l.s.log.Error("poll loop stopped; its connections are closed", "err", err)
			return
		}
		for i := range events[:n] {
			fd := events[i].Fd
			if int(fd) == l.wakeR {
				return
			}
			l.mu.Lock()
			c := l.conns[fd]
			l.mu.Unlock()
			if c != nil {
				l.serve(c)
			}
		}
	}
}

// Busy polling. Under dense load (50 redis-benchmark clients) a fifth of
// the loop's time went to putting its thread to sleep in epoll_wait and
// waking it a few microseconds later, for the next request. Once requests
// come densely (busyReady connections ready at once, within the busy-poll
// time of the previous round), the loop asks for ready connections without
// sleeping for up to that time before it sleeps. Measured on 2 cores
// against the loop without it: 1.12 times the requests per second with 50
// clients, for about a fifth more CPU per request; 1.8 times with 5, for
// about the same CPU per request. Requests that come one at a time, or
// further apart than the busy-poll time, never make it poll, so an idle or
// lightly used endpoint costs nothing more.
const busyReady = 2

// wait returns the ready connections in events, polling first when the
// loop is busy, and whether it is busy now.
func (l *pollLoop) wait(events []syscall.EpollEvent, busy bool) (int, bool, error) {
	budget := l.s.cfg.BusyPoll
	if busy && budget > 0 {
		until := time.Now().Add(budget)
		for {
			r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd),
				uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
			if errno != 0 && errno != syscall.EINTR {
				return 0, false, errno
			}
			if errno == 0 && r > 0 {
				return int(r), true, nil
			}
			if !time.Now().Before(until) {
				break
			}
		}
	}
	start := time.Now()
	n, err := syscall.EpollWait(l.epfd, events, -1)
	return n, budget > 0 && n >= busyReady && time.Since(start) < budget, err
}

// stop wakes the loop to close its connections and return.
func (l *pollLoop) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		_, _ = syscall.Write(l.wakeW, []byte{0})
	}
}

// closeAll ends the loop: it closes its connections and descriptors.
func (l *pollLoop) closeAll() {
	l.mu.Lock()
	l.stopped = true
	conns := make([]*conn, 0, len(l.conns))
	for _, c := range l.conns {
		conns = append(conns, c)
	}
	_ = syscall.Close(l.epfd)
	_ = syscall.Close(l.wakeR)
	_ = syscall.Close(l.wakeW)
	l.mu.Unlock()
	for _, c := range conns {
		l.drop(c)
	}
}

// serve reads c's socket once and runs the complete requests it holds.
func (l *pollLoop) serve(c *conn) {
	defer func() {
		// A bug in a handler must cost one connection, not the node.
		if r := recover(); r != nil {
			c.s.recovered(c, r)
			l.drop(c)
		}
	}()
	if err := c.r.Fill(); err != nil {
		if err != errWouldBlock {
			c.readFailed(err)
			l.drop(c)
		}
		return
	}
	for {
		args, ok := c.r.ReadBufferedCommand()
		if !ok {
			break
		}
		cmd, sub := c.lookupCommand(args)
		if needsGoroutine(cmd, sub) {
			l.handOff(c, args)
			return
		}
		if !c.execLookedUp(args, cmd, sub) {
			l.drop(c)
			return
		}
		if len(c.lw.pending) > 0 {
			l.handOff(c, nil)
			return
		}
	}
	if c.r.Buffered() > 0 {
		l.handOff(c, nil)
	}
}

// needsGoroutine reports whether the request must run outside the loop:
// it could wait (a write through Raft) or it subscribes (events are then
// written by another goroutine). cmd and sub are lookupCommand's.
func needsGoroutine(cmd, sub *command) bool {
	if sub != nil {
		cmd = sub
	}
	return cmd != nil && cmd.flags&(flagUnlocked|flagSubscribes) != 0
}

// drop closes a connection of the loop.
func (l *pollLoop) drop(c *conn) {
	if c.lfd < 0 {
		return
	}
	c.close() // shuts the socket down, so nothing more is sent or read
	l.mu.Lock()
	delete(l.conns, int32(c.lfd))
	l.mu.Unlock()
	c.fdMu.Lock()
	_ = syscall.Close(c.lfd)
	c.lfd = -1
	c.fdMu.Unlock()
	c.s.forget(c)
}

// handOff moves c out of the loop to a goroutine of its own, which first
// writes what the socket could not take and runs args (when not nil), then
// serves c as the raw read loop does.
func (l *pollLoop) handOff(c *conn, args [][]byte) {
	c.mu.Lock()
	err := c.w.Flush()
	c.mu.Unlock()
	if err != nil {
		l.drop(c)
		return
	}
	fd := c.lfd
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	l.mu.Lock()
	delete(l.conns, int32(fd))
	l.mu.Unlock()
	c.fdMu.Lock()
	var nc net.Conn
	var rc syscall.RawConn
	if c.closed() {
		_ = syscall.Close(fd)
	} else {
		nc, rc, err = connOf(fd)
	}
	c.lfd = -1
	if nc != nil {
		c.nc = nc
		c.raw.nc, c.raw.rc, c.raw.fd = nc, rc, -1
	}
	c.fdMu.Unlock()
	if nc == nil {
		if err != nil {
			c.s.log.Warn("a client could not leave the poll loop; closed", "client", c.id, "err", err)
		}
		c.close()
		c.s.forget(c)
		return
	}
	pending := c.lw.pending
	c.mu.Lock()
	c.lw = nil
	c.w.Reset(nc)
	c.mu.Unlock()
	c.s.wg.Go(func() { c.serveHandedOff(pending, args) })
}

// connOf returns a net.Conn of its own, in Go's poller, for the socket of
// the loop's descriptor fd, and closes fd.
func connOf(fd int) (net.Conn, syscall.RawConn, error) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, nil, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		_ = nc.Close()
		return nil, nil, fmt.Errorf("not a TCP connection: %T", nc)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	return nc, rc, nil
}

// fdWriter writes to the loop's descriptor without waiting. What the socket
// cannot take now is kept in pending; the connection then leaves the loop,
// and its goroutine writes it.
type fdWriter struct {
	fd      int
	pending []byte
}

func (w *fdWriter) Write(p []byte) (int, error) {
	if len(w.pending) > 0 {
		w.pending = append(w.pending, p...)
		return len(p), nil
	}
	n := 0
	for n < len(p) {
		m, err := nonblockingIO(syscall.SYS_WRITE, w.fd, p[n:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			w.pending = append(w.pending, p[n:]...)
			return len(p), nil
		case err != nil:
			return n, os.NewSyscallError("write", err)
		}
		n += m
	}
	return n, nil
}

// shutdownLoopFD ends a connection of the loop from any goroutine: the loop
// sees the socket end and closes it. Called with c.fdMu held.
func shutdownLoopFD(fd int) { _ = syscall.Shutdown(fd, syscall.SHUT_RDWR) }
