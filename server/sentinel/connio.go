package sentinel

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// errWouldBlock is what a connection's reads return in the event loop when
// the socket has nothing more to read.
var errWouldBlock = errors.New("sentinel: no data ready")

// connIO is what a connection's resp.Reader reads from and its resp.Writer
// writes to. Served by its own goroutine it is the net.Conn. Parked in the
// event loop (loop true) it reads and writes the socket without blocking: a
// read that finds nothing returns errWouldBlock, and what a write cannot
// send now is kept in pending, so the loop never waits on one client; the
// connection then goes back to a goroutine, which sends pending first.
//
// Only the connection's current owner (its goroutine or the loop) uses it.
type connIO struct {
	nc      net.Conn
	raw     syscall.RawConn // nil when the connection cannot be parked (TLS, pipes)
	loop    bool
	pending []byte

	// The raw read and write, made once so that a call allocates nothing,
	// and what they pass in and out.
	readFn, writeFn func(fd uintptr) bool
	buf             []byte
	n               int
	err             error
}

func newConnIO(nc net.Conn) *connIO {
	x := &connIO{nc: nc}
	if tc, ok := nc.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			x.raw = raw
			x.readFn = func(fd uintptr) bool {
				for {
					x.n, x.err = syscall.Read(int(fd), x.buf)
					if x.err != syscall.EINTR {
						return true
					}
				}
			}
			x.writeFn = func(fd uintptr) bool {
				for {
					x.n, x.err = syscall.Write(int(fd), x.buf)
					if x.err != syscall.EINTR {
						return true
					}
				}
			}
		}
	}
	return x
}

func (x *connIO) Read(p []byte) (int, error) {
	if !x.loop {
		return x.nc.Read(p)
	}
	x.buf = p
	cerr := x.raw.Read(x.readFn)
	n, err := x.n, x.err
	x.buf, x.err = nil, nil
	if cerr != nil {
		return 0, cerr
	}
	switch {
	case err == syscall.EAGAIN:
		return 0, errWouldBlock
	case err != nil:
		return 0, err
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

func (x *connIO) Write(p []byte) (int, error) {
	if !x.loop {
		if err := x.flushPending(); err != nil {
			return 0, err
		}
		return x.nc.Write(p)
	}
	if len(x.pending) > 0 {
		x.pending = append(x.pending, p...)
		return len(p), nil
	}
	sent := 0
	for sent < len(p) {
		x.buf = p[sent:]
		cerr := x.raw.Write(x.writeFn)
		n, err := x.n, x.err
		x.buf, x.err = nil, nil
		if cerr != nil {
			return sent, cerr
		}
		switch {
		case err == syscall.EAGAIN:
			x.pending = append(x.pending, p[sent:]...)
			return len(p), nil
		case err != nil:
			return sent, err
		}
		sent += n
	}
	return len(p), nil
}

// flushPending sends, blocking, what the loop could not; goroutine only.
func (x *connIO) flushPending() error {
	if len(x.pending) == 0 {
		return nil
	}
	_, err := x.nc.Write(x.pending)
	x.pending = nil
	return err
}
