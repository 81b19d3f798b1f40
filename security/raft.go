package security

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftLayer is a raft.StreamLayer over mutual TLS: it accepts only peers
// whose certificate is from the CA and names a node, and dials peers the
// same way. Raft's own messages then travel only between nodes.
type RaftLayer struct {
	lis       net.Listener
	advertise net.Addr
	tls       *TLS
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	// Rejected, when set, is told of every connection refused at the
	// handshake (for the log).
	rejected func(remote net.Addr, err error)
}

// NewRaftLayer listens on bind. advertise is the address peers reach this
// node at (nil: the bound one). rejected, when not nil, hears of every
// connection refused at the handshake.
func NewRaftLayer(bind string, advertise net.Addr, t *TLS, rejected func(net.Addr, error)) (*RaftLayer, error) {
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = lis.Addr()
	}
	if tcp, ok := advertise.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		_ = lis.Close()
		return nil, errors.New("raft address must be one peers can reach, not an unspecified address")
	}
	l := &RaftLayer{lis: tls.NewListener(lis, t.NodeServerConfig()), advertise: advertise, tls: t,
		conns: make(chan net.Conn), closed: make(chan struct{}), rejected: rejected}
	go l.acceptLoop()
	return l, nil
}

// acceptLoop hands Accept only connections whose handshake succeeded, so
// that a peer without a node certificate never reaches Raft; handshakes
// run concurrently, so a slow or silent peer delays nobody else.
func (l *RaftLayer) acceptLoop() {
	for {
		c, err := l.lis.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.Close()
			return
		}
		go func() {
			tc := c.(*tls.Conn)
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				if l.rejected != nil {
					l.rejected(c.RemoteAddr(), err)
				}
				_ = tc.Close()
				return
			}
			_ = tc.SetDeadline(time.Time{})
			select {
			case l.conns <- tc:
			case <-l.closed:
				_ = tc.Close()
			}
		}()
	}
}

// Accept returns the next connection from a verified node.
func (l *RaftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops listening.
func (l *RaftLayer) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.lis.Close()
	})
	return err
}

// Addr is the advertised address.
func (l *RaftLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer over TLS and completes the handshake.
func (l *RaftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(address), l.tls.NodeClientConfig())
}
