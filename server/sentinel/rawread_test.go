//go:build unix

package sentinel

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	"github.com/raftinel/raftinel/security"
)

const addrReply = "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n"

// The one function that chooses: plain TCP gets the raw loop, anything
// else (TLS, net.Pipe) the general one.
func TestRawSourceChoice(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if rawSourceFor(sc) == nil {
		t.Error("a plain TCP connection is not served by the raw loop")
	}
	if rawSourceFor(tls.Server(sc, &tls.Config{})) != nil {
		t.Error("a TLS connection is served by the raw loop")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if rawSourceFor(p1) != nil {
		t.Error("a net.Pipe connection is served by the raw loop")
	}
}

// forEachServing runs fn with the poll loop, where the system has one, and
// with a goroutine per connection (the raw read loop, which also serves a
// connection that left the poll loop).
func forEachServing(t *testing.T, fn func(t *testing.T, goroutines bool)) {
	t.Run("poll-loop", func(t *testing.T) { fn(t, false) })
	t.Run("goroutines", func(t *testing.T) { fn(t, true) })
}

// onlyConn returns the server's one connection.
func onlyConn(t *testing.T, s *Server) *conn {
	t.Helper()
	var c *conn
	testwait.Until(t, 10*time.Second, "one connection", func() bool {
		cs := s.connections()
		if len(cs) == 1 {
			c = cs[0]
		}
		return c != nil
	})
	return c
}

// A request cut at any byte, with the part before the cut sent (after a
// complete PING, so the test knows the server has read up to there) and
// the rest later, is answered once whole; the replies to what came before
// the cut are not held back by it.
func TestRawReadSplitAtEveryByte(t *testing.T) {
	forEachServing(t, func(t *testing.T, goroutines bool) {
		f := newFake()
		topology(f)
		s := startServing(t, f, Config{}, goroutines)
		c := dial(t, s.Addr())
		if onlyConn(t, s).raw == nil {
			t.Fatal("the connection is not in the raw loop")
		}
		requests := []struct {
			req, reply string
		}{
			{string(encode("SENTINEL", "get-master-addr-by-name", "mymaster")), addrReply},
			{"PING hello\r\n", "$5\r\nhello\r\n"},
			{string(encode("PING", strings.Repeat("x", 5000))), "$5000\r\n" + strings.Repeat("x", 5000) + "\r\n"},
		}
		for _, r := range requests {
			for cut := 1; cut < len(r.req); cut++ {
				if _, err := c.nc.Write([]byte(string(encode("PING")) + r.req[:cut])); err != nil {
					t.Fatal(err)
				}
				if got := c.read(); got != "+PONG\r\n" {
					t.Fatalf("cut at %d of %q: first reply %q", cut, trunc([]byte(r.req), 40), got)
				}
				if _, err := c.nc.Write([]byte(r.req[cut:])); err != nil {
					t.Fatal(err)
				}
				if got := c.read(); got != r.reply {
					t.Fatalf("cut at %d of %q: reply %q, want %q", cut, trunc([]byte(r.req), 40), trunc([]byte(got), 60), trunc([]byte(r.reply), 60))
				}
			}
		}
	})
}

// A pipeline many times the read buffer, of small requests and of
// requests with arguments too large for the one-pass parse, is answered in
// order, reply for reply.
func TestRawReadPipelineLargerThanBuffer(t *testing.T) {
	forEachServing(t, func(t *testing.T, goroutines bool) {
		f := newFake()
		topology(f)
		s := startServing(t, f, Config{}, goroutines)
		c := dial(t, s.Addr())
		var req, want bytes.Buffer
		for i := range 3000 {
			switch i % 100 {
			case 7:
				arg := strings.Repeat(strconv.Itoa(i%10), 4097+i)
				req.Write(encode("PING", arg))
				want.WriteString("$" + strconv.Itoa(len(arg)) + "\r\n" + arg + "\r\n")
			case 50:
				req.WriteString("PING\r\n")
				want.WriteString("+PONG\r\n")
			default:
				req.Write(encode("SENTINEL", "get-master-addr-by-name", "mymaster"))
				want.WriteString(addrReply)
			}
		}
		// The client writes and reads at once: the replies alone overflow the
		// socket buffers.
		errc := make(chan error, 1)
		go func() {
			_, err := c.nc.Write(req.Bytes())
			errc <- err
		}()
		_ = c.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
		got := make([]byte, want.Len())
		if _, err := io.ReadFull(c.r, got); err != nil {
			t.Fatalf("after %d of %d reply bytes: %v", len(got), want.Len(), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			i := 0
			for i < len(got) && got[i] == want.Bytes()[i] {
				i++
			}
			t.Fatalf("replies differ from byte %d: %q, want %q", i, trunc(got[i:], 60), trunc(want.Bytes()[i:], 60))
		}
	})
}

// A client that hangs up in the middle of a request ends its connection.
func TestRawReadClientClosesMidRequest(t *testing.T) {
	forEachServing(t, func(t *testing.T, goroutines bool) {
		f := newFake()
		topology(f)
		s := startServing(t, f, Config{}, goroutines)
		req := encode("SENTINEL", "get-master-addr-by-name", "mymaster")
		for _, cut := range []int{1, 5, len(req) / 2, len(req) - 1} {
			c := dial(t, s.Addr())
			if got := c.do("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING: %q", got)
			}
			if _, err := c.nc.Write(req[:cut]); err != nil {
				t.Fatal(err)
			}
			_ = c.nc.Close()
			testwait.Until(t, 10*time.Second, "the connection to end", func() bool { return s.Stats().Clients == 0 })
		}
	})
}

// expectEOF waits until the server closes c's connection.
func expectEOF(t *testing.T, c *client) {
	t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	// A reset, when the server closes with bytes it has not read.
	if b, err := c.r.ReadByte(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %q, %v: want the connection closed", b, err)
	}
}

// CLIENT KILL from another connection ends a connection parked on the
// poller; CLIENT KILL of itself ends it after the reply.
func TestRawReadClientKill(t *testing.T) {
	forEachServing(t, func(t *testing.T, goroutines bool) {
		f := newFake()
		topology(f)
		s := startServing(t, f, Config{}, goroutines)
		victim := dial(t, s.Addr())
		id := strings.TrimSuffix(strings.TrimPrefix(victim.do("CLIENT", "ID"), ":"), "\r\n")
		killer := dial(t, s.Addr())
		if got := killer.do("CLIENT", "KILL", "ID", id); got != ":1\r\n" {
			t.Fatalf("CLIENT KILL: %q", got)
		}
		expectEOF(t, victim)
		testwait.Until(t, 10*time.Second, "one client left", func() bool { return s.Stats().Clients == 1 })

		id = strings.TrimSuffix(strings.TrimPrefix(killer.do("CLIENT", "ID"), ":"), "\r\n")
		if got := killer.do("CLIENT", "KILL", "ID", id, "SKIPME", "no"); got != ":1\r\n" {
			t.Fatalf("CLIENT KILL of itself: %q", got)
		}
		expectEOF(t, killer)
		testwait.Until(t, 10*time.Second, "no client left", func() bool { return s.Stats().Clients == 0 })
	})
}

// Two connections that kill each other at the same moment: each kill runs
// inside the killer's read callback, and closing the other's socket there
// would wait for the other's callback, which may be waiting in turn.
func TestRawReadMutualKill(t *testing.T) {
	forEachServing(t, func(t *testing.T, goroutines bool) {
		f := newFake()
		topology(f)
		s := startServing(t, f, Config{}, goroutines)
		for range 50 {
			a, b := dial(t, s.Addr()), dial(t, s.Addr())
			idA := strings.TrimSuffix(strings.TrimPrefix(a.do("CLIENT", "ID"), ":"), "\r\n")
			idB := strings.TrimSuffix(strings.TrimPrefix(b.do("CLIENT", "ID"), ":"), "\r\n")
			var wg sync.WaitGroup
			wg.Go(func() { a.send("CLIENT", "KILL", "ID", idB) })
			wg.Go(func() { b.send("CLIENT", "KILL", "ID", idA) })
			wg.Wait()
			// At least one is killed (both, when each runs its kill before the
			// other's lands); the survivor ends when its client hangs up. A
			// kill stuck on the other's callback would keep both.
			testwait.Until(t, 10*time.Second, "a connection to end", func() bool { return s.Stats().Clients <= 1 })
			_ = a.nc.Close()
			_ = b.nc.Close()
			testwait.Until(t, 10*time.Second, "both connections to end", func() bool { return s.Stats().Clients == 0 })
		}
	})
}

// Close ends connections parked on the poller and returns.
func TestRawReadServerCloseEndsParkedConnections(t *testing.T) {
	forEachServing(t, func(t *testing.T, goroutines bool) {
		f := newFake()
		topology(f)
		s := startServing(t, f, Config{}, goroutines)
		var clients []*client
		for range 5 {
			c := dial(t, s.Addr())
			if got := c.do("PING"); got != "+PONG\r\n" {
				t.Fatalf("PING: %q", got)
			}
			clients = append(clients, c)
		}
		// One more in the middle of a request, waiting for its rest.
		half := dial(t, s.Addr())
		if _, err := half.nc.Write([]byte("*3\r\n$8\r\nSENTINEL\r\n")); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, half)
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not return")
		}
		for _, c := range clients {
			expectEOF(t, c)
		}
	})
}

// TLS connections are served by the general loop, as before.
func TestTLSConnectionsTakeTheGeneralLoop(t *testing.T) {
	ca, err := security.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(security.CertRequest{Server: "sentinel", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFake()
	topology(f)
	s := start(t, f, Config{Listener: tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	nc, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &client{t: t, nc: nc, r: bufio.NewReader(nc)}
	if got := c.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != addrReply {
		t.Fatalf("reply %q", got)
	}
	if onlyConn(t, s).raw != nil {
		t.Fatal("a TLS connection is in the raw loop")
	}
	// A pipeline answered in order, and CLIENT KILL of itself closes it.
	if _, err := nc.Write(bytes.Repeat(encode("SENTINEL", "get-master-addr-by-name", "mymaster"), 500)); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if got := c.read(); got != addrReply {
			t.Fatalf("reply %d: %q", i, got)
		}
	}
	c.send("CLIENT", "KILL", "SKIPME", "no")
	if got := c.read(); got != ":1\r\n" {
		t.Fatalf("CLIENT KILL: %q", got)
	}
	testwait.Until(t, 10*time.Second, "the connection to end", func() bool { return s.Stats().Clients == 0 })
}
