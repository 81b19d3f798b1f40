package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// NewRedisClient returns a go-redis client that always talks to the master
// w follows. Its Dialer asks w for the current address (waiting for the
// first one within the dial timeout), and when the master changes the
// pooled connections to the old address are closed, so the next command
// dials the new master. A command in flight on the old master fails as it
// would with Sentinel's clients.
//
// opts is copied; its Addr is ignored, and its Dialer, when set, is used to
// dial the current address. Close the Redis client before the watcher.
func NewRedisClient(w *Watcher, opts *redis.Options) *redis.Client {
	o := *opts
	dial := o.Dialer
	if dial == nil {
		d := &net.Dialer{Timeout: o.DialTimeout}
		dial = d.DialContext
	}
	t := &connTracker{conns: map[net.Conn]string{}}
	o.Addr = "raftinel:" + w.name // shown by go-redis in errors and String
	o.Dialer = func(ctx context.Context, network, _ string) (net.Conn, error) {
		for range 3 {
			m, err := w.Wait(ctx)
			if err != nil {
				return nil, err
			}
			conn, err := dial(ctx, network, m.Address)
			if err != nil {
				return nil, err
			}
			tracked := t.track(conn, m.Address)
			// The master may have changed during the dial, before the
			// tracker knew this connection: then it is stale already.
			if cur, _ := w.Current(); cur.Address == m.Address {
				return tracked, nil
			}
			_ = tracked.Close()
		}
		return nil, errors.New("raftinel: the master kept changing while dialing it")
	}
	go t.follow(w)
	return redis.NewClient(&o)
}

// connTracker remembers the connections the Dialer made, by address.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]string // raw connection -> address
}

func (t *connTracker) track(conn net.Conn, addr string) net.Conn {
	t.mu.Lock()
	t.conns[conn] = addr
	t.mu.Unlock()
	base := trackedConn{Conn: conn, t: t}
	// go-redis checks a pooled connection's health through syscall.Conn;
	// keep that visible, so a connection closed here is seen as dead and
	// replaced instead of failing a command.
	if sc, ok := conn.(syscall.Conn); ok {
		return &trackedSyscallConn{trackedConn: base, sc: sc}
	}
	return &base
}

func (t *connTracker) forget(conn net.Conn) {
	t.mu.Lock()
	delete(t.conns, conn)
	t.mu.Unlock()
}

// closeExcept closes every connection to an address other than addr.
func (t *connTracker) closeExcept(addr string) {
	t.mu.Lock()
	var stale []net.Conn
	for c, a := range t.conns {
		if a != addr {
			stale = append(stale, c)
			delete(t.conns, c)
		}
	}
	t.mu.Unlock()
	for _, c := range stale {
		_ = c.Close()
	}
}

// follow closes the connections to a previous master at every change,
// until the watcher stops.
func (t *connTracker) follow(w *Watcher) {
	for {
		changed := w.Changed()
		if m, ok := w.Current(); ok {
			t.closeExcept(m.Address)
		}
		select {
		case <-changed:
		case <-w.Done():
			return
		}
	}
}

type trackedConn struct {
	net.Conn
	t *connTracker
}

func (c *trackedConn) Close() error {
	c.t.forget(c.Conn)
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil // closed already at a master change
	}
	return err
}

type trackedSyscallConn struct {
	trackedConn
	sc syscall.Conn
}

func (c *trackedSyscallConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }
