//go:build unix

package sentinel

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// The read loop of a plain TCP connection.
//
// Go's net.Conn.Read reads until the socket has nothing left: after the
// replies to what it read, the next Read finds nothing (EAGAIN) and only
// then parks the goroutine on the poller. Under many clients sending one
// request per round trip that empty read is a system call in about one
// request in five. The raw loop skips it: it holds syscall.RawConn.Read for
// the connection's life and, inside the callback, reads the socket itself;
// when a read returns less than the buffer could take, the socket was
// drained at that instant, so after running the requests and writing the
// replies it parks at once. That is safe because Go's poller is
// edge-triggered: data that arrives after the drain raises a new edge, and
// an edge that arrived while the requests ran leaves the descriptor marked
// ready, so the wait returns at once and the next read finds the data (or
// EAGAIN, and parks again).
//
// RawConn.Read clears the ready mark once, when it is called, before it
// runs the callback, which reads first; so the loop calls it once and stays
// inside, and leaves it only for a request that is not wholly buffered (the
// general path then reads it with blocking reads, and the loop calls
// RawConn.Read again, reading before it parks).
//
// Inside the callback the connection's read lock is held, and net.Conn.Close
// waits for it: a connection in the raw loop is therefore closed by setting
// a past deadline, which wakes its goroutine wherever it waits, and the
// goroutine closes the socket on its way out.

// errWouldBlock is a raw read that found nothing.
var errWouldBlock = errors.New("sentinel: read would block")

// rawSource is the resp.Reader's source on a plain TCP connection. Inside
// the callback (fd >= 0) it reads the socket with one system call;
// elsewhere it reads through the net.Conn, which waits for data.
type rawSource struct {
	nc net.Conn
	rc syscall.RawConn
	fd int
	// drained: the last raw read returned less than it was offered, so the
	// socket had nothing more at that instant.
	drained bool
}

// rawSourceFor returns the raw source for nc, or nil when nc is served by
// the general loop (TLS, net.Pipe, anything but a plain TCP connection).
// This is the one place that chooses.
func rawSourceFor(nc net.Conn) *rawSource {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawSource{nc: nc, rc: rc, fd: -1}
}

func (s *rawSource) Read(p []byte) (int, error) {
	if s.fd < 0 {
		return s.nc.Read(p)
	}
	for {
		n, err := nonblockingIO(syscall.SYS_READ, s.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			s.drained = false
			return 0, errWouldBlock
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		s.drained = n < len(p)
		return n, nil
	}
}

// serveRaw is serve's loop on a plain TCP connection.
func (c *conn) serveRaw() {
	src := c.raw
	var stop bool
	var readErr error
	// The callback runs every request already buffered, then reads; it
	// returns true to leave RawConn.Read (the connection ends, or the
	// buffer holds only part of a request), false to wait for data.
	callback := func(fd uintptr) bool {
		src.fd = int(fd)
		for {
			for {
				args, ok := c.r.ReadBufferedCommand()
				if !ok {
					break
				}
				if !c.exec(args) {
					stop = true
					return true
				}
			}
			if c.r.Buffered() > 0 {
				return true
			}
			if src.drained {
				src.drained = false
				return false
			}
			if err := c.r.Fill(); err != nil {
				if err == errWouldBlock {
					return false
				}
				readErr = err
				return true
			}
		}
	}
	for {
		src.drained = false // the general path may have left data in the socket
		err := src.rc.Read(callback)
		src.fd = -1
		switch {
		case stop:
			return
		case readErr != nil:
			c.readFailed(readErr)
			return
		case err != nil:
			c.readFailed(err)
			return
		}
		// A request that is not wholly buffered, or not of the common form:
		// the replies so far go out first (its rest may wait for them), then
		// the general path reads it.
		c.mu.Lock()
		err = c.w.Flush()
		c.mu.Unlock()
		if err != nil {
			return
		}
		if !c.serveOne() {
			return
		}
	}
}

// nonblockingIO reads or writes (op) a non-blocking descriptor. It is a raw
// system call, without telling the scheduler: it never waits, and the
// bookkeeping of a call that might was a visible part of a request's cost.
func nonblockingIO(op uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, errno := syscall.RawSyscall(op, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)
