//go:build linux && (amd64 || arm64)

package sentinel

import (
	"bufio"
	"errors"
	"runtime/debug"
	"sync"
	"syscall"
)

// pollLoop serves parked connections from one goroutine, as Redis serves
// its clients from one thread: it asks epoll which sockets have data, and
// for each reads once, runs every whole request that a parked connection
// may run without blocking (flagLoop: the discovery reads clients send on
// every connect) and writes the replies, without a goroutine to wake per
// request and without the read that finds nothing before a goroutine
// parks. Anything else (a request cut in two, another command, a reply the
// socket cannot take now, a subscription) hands the connection back to a
// goroutine of its own, which parks it again once it is idle.
//
// A connection is owned by one of its goroutine or the loop at a time
// (conn.state). Its socket is in the epoll set (level-triggered) from the
// moment its goroutine parks it until the loop hands it back, so a
// connection the loop keeps serving costs no epoll call per request.
type pollLoop struct {
	s     *Server
	epfd  int
	wakeR int // a pipe whose read end is in the epoll set, to stop the loop
	wakeW int

	mu      sync.Mutex
	stopped bool
	conns   map[int64]*conn // every connection parked at least once, by id
}

func newPollLoop(s *Server) *pollLoop {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		s.log.Warn("no event loop; every connection has its own goroutine", "err", err)
		return nil
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		s.log.Warn("no event loop; every connection has its own goroutine", "err", err)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // id 0: no connection has it
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(p[0])
		_ = syscall.Close(p[1])
		s.log.Warn("no event loop; every connection has its own goroutine", "err", err)
		return nil
	}
	return &pollLoop{s: s, epfd: epfd, wakeR: p[0], wakeW: p[1], conns: map[int64]*conn{}}
}

// run serves parked connections until stop.
func (l *pollLoop) run() {
	defer func() {
		_ = syscall.Close(l.epfd)
		_ = syscall.Close(l.wakeR)
		_ = syscall.Close(l.wakeW)
	}()
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			l.s.log.Error("event loop failed; every connection goes back to its own goroutine", "err", err)
			l.fail()
			return
		}
		for _, ev := range events[:n] {
			id := int64(uint32(ev.Fd)) | int64(ev.Pad)<<32
			if id == 0 {
				return // stop
			}
			l.mu.Lock()
			c := l.conns[id]
			l.mu.Unlock()
			if c != nil {
				l.serve(c)
			}
		}
	}
}

// stop ends run; connections parked then stay parked until they are closed
// (the server is closing them all), and none parks any more.
func (l *pollLoop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	_, _ = syscall.Write(l.wakeW, []byte{0})
}

// fail hands every parked connection back to a goroutine.
func (l *pollLoop) fail() {
	l.mu.Lock()
	l.stopped = true
	conns := make([]*conn, 0, len(l.conns))
	for _, c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		if c.state.CompareAndSwap(stateParked, stateLoop) {
			l.handoff(c, nil)
		}
	}
}

// remove forgets a connection that has ended.
func (l *pollLoop) remove(c *conn) {
	l.mu.Lock()
	delete(l.conns, c.id)
	l.mu.Unlock()
}

// epollCtl adds a connection's socket to the epoll set or removes it. It
// runs when a connection parks or is handed back, not per request, and
// uses only its arguments: it may run while the loop already owns the
// connection.
func epollCtl(epfd int, raw syscall.RawConn, op int, id int64) error {
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(uint32(id)), Pad: int32(id >> 32)}
	var err error
	if cerr := raw.Control(func(fd uintptr) {
		err = syscall.EpollCtl(epfd, op, int(fd), &ev)
		if err == syscall.EEXIST && op == syscall.EPOLL_CTL_ADD {
			err = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		}
	}); cerr != nil {
		return cerr
	}
	return err
}

// park hands an idle connection (nothing buffered) from its goroutine to
// the loop. On true the goroutine must return without touching c again.
func (l *pollLoop) park(c *conn) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.conns[c.id] = c
	l.mu.Unlock()
	raw, id := c.io.raw, c.id
	c.io.loop = true
	// Parked before its socket is in the set: the loop may take c at once,
	// so from here only the locals are used.
	c.state.Store(stateParked)
	if err := epollCtl(l.epfd, raw, syscall.EPOLL_CTL_ADD, id); err != nil {
		if c.state.CompareAndSwap(stateParked, stateGoroutine) {
			c.io.loop = false
			return false
		}
		// Closed meanwhile: close did the cleanup.
	}
	return true
}

// serve runs what a parked connection has sent, if it can.
func (l *pollLoop) serve(c *conn) {
	if !c.state.CompareAndSwap(stateParked, stateLoop) {
		return // closed
	}
	defer func() {
		// A bug in a handler must cost one connection, not the node.
		if r := recover(); r != nil {
			c.s.panics.Add(1)
			c.s.log.Error("panic while serving a client; connection closed", "client", c.id, "panic", r, "stack", string(debug.Stack()))
			c.close()
			c.s.forget(c)
		}
	}()
	if err := c.r.Fill(); err != nil {
		switch {
		case errors.Is(err, errWouldBlock):
			l.release(c)
		case errors.Is(err, bufio.ErrBufferFull):
			l.handoff(c, nil)
		default: // the client left, or the socket failed
			c.close()
			c.s.forget(c)
		}
		return
	}
	for c.r.BufferedCommand() {
		args, err := c.r.ReadCommandShared()
		if err != nil {
			l.handoff(c, nil) // not expected: BufferedCommand vouched for it
			return
		}
		if !c.loopRuns(args) {
			l.handoff(c, args)
			return
		}
		if !c.exec(args) {
			c.close()
			c.s.forget(c)
			return
		}
		if len(c.io.pending) > 0 {
			l.handoff(c, nil)
			return
		}
	}
	if c.r.Buffered() > 0 || !c.parkable() {
		l.handoff(c, nil)
		return
	}
	l.release(c)
}

// release parks c again after the loop served it; its socket stays in the
// set. A close while the loop served c found it not parked and left the
// cleanup to the loop: it is done here.
func (l *pollLoop) release(c *conn) {
	c.state.Store(stateParked)
	select {
	case <-c.done:
		if c.state.CompareAndSwap(stateParked, stateClosed) {
			c.s.forget(c)
		}
	default:
	}
}

// handoff gives c back to a goroutine, which first runs args (a request
// the loop read but may not run) if any.
func (l *pollLoop) handoff(c *conn, args [][]byte) {
	_ = epollCtl(l.epfd, c.io.raw, syscall.EPOLL_CTL_DEL, c.id) // a closed socket has left the set already
	c.mu.Lock()
	_ = c.w.Flush() // what the socket does not take now waits in pending
	c.mu.Unlock()
	c.state.Store(stateGoroutine)
	c.s.wg.Go(func() { c.serveFrom(args) })
}
