package sentinel

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// discardConn is a net.Conn that swallows replies, so a benchmark measures
// the command path and not the socket.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)    { return 0, io.EOF }
func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) Close() error                { return nil }
func (discardConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 26379} }
func (discardConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkGetMasterAddrByName measures the command clients send on every
// new connection:
//   - handler: dispatch, state lookup and reply encoding, no socket;
//   - handler-clone-per-call: the same with a Backend without Changed, so
//     every call clones the whole State (what the cache avoids);
//   - loopback: one request and reply at a time over TCP on 127.0.0.1.
func BenchmarkGetMasterAddrByName(b *testing.B) {
	args := [][]byte{[]byte("SENTINEL"), []byte("get-master-addr-by-name"), []byte("mymaster")}
	handler := func(b *testing.B, backend Backend) {
		s := New(Config{}, backend)
		b.Cleanup(func() { _ = s.Close() })
		c := newConn(s, discardConn{})
		if !c.exec(args) {
			b.Fatal("connection closed")
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			c.exec(args)
		}
	}
	b.Run("handler", func(b *testing.B) {
		f := newFake()
		topology(f)
		handler(b, f)
	})
	b.Run("handler-clone-per-call", func(b *testing.B) {
		f := newFake()
		topology(f)
		handler(b, noNotify{f})
	})
	b.Run("loopback", func(b *testing.B) {
		f := newFake()
		topology(f)
		s := start(b, f, Config{})
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = nc.Close() })
		req := encode("SENTINEL", "get-master-addr-by-name", "mymaster")
		want := "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n"
		buf := make([]byte, len(want))
		r := bufio.NewReader(nc)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := nc.Write(req); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(r, buf); err != nil || string(buf) != want {
				b.Fatalf("reply %q: %v", buf, err)
			}
		}
	})
}

// repeatConn is a net.Conn whose every Read returns the same bytes (one
// request, or a pipeline of them) and that swallows replies.
type repeatConn struct {
	discardConn
	chunk []byte
}

func (c repeatConn) Read(p []byte) (int, error) { return copy(p, c.chunk), nil }

// BenchmarkGetMasterAddrByNameRequest is one request's whole path in the
// server, without a socket: parse (resp.Reader), dispatch, reply, and the
// flush, which comes once per read, that is once per request (P1) or once
// per 16 (P16, as redis-benchmark -P 16 sends them).
func BenchmarkGetMasterAddrByNameRequest(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("P%d", depth), func(b *testing.B) {
			f := newFake()
			topology(f)
			s := New(Config{}, f)
			b.Cleanup(func() { _ = s.Close() })
			c := newConn(s, repeatConn{chunk: bytes.Repeat(encode("SENTINEL", "get-master-addr-by-name", "mymaster"), depth)})
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				args, err := c.r.ReadCommandShared()
				if err != nil {
					b.Fatal(err)
				}
				if !c.exec(args) {
					b.Fatal("connection closed")
				}
			}
		})
	}
}

// BenchmarkGetMasterAddrByNameParallel is the endpoint under many clients:
// 50 connections over TCP on 127.0.0.1 (redis-benchmark's default), each
// sending depth requests per round trip, as redis-benchmark -P does. The
// allocations per request are the server's and this client's together;
// the client reuses its buffers, so they are the server's.
func BenchmarkGetMasterAddrByNameParallel(b *testing.B) {
	for _, depth := range []int{1, 16} {
		b.Run(fmt.Sprintf("P%d", depth), func(b *testing.B) {
			f := newFake()
			topology(f)
			s := start(b, f, Config{})
			one := encode("SENTINEL", "get-master-addr-by-name", "mymaster")
			want := "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n"
			req := bytes.Repeat(one, depth)
			const clients = 50
			conns := make(chan net.Conn, clients)
			for range clients {
				nc, err := net.Dial("tcp", s.Addr())
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = nc.Close() })
				conns <- nc
			}
			b.SetParallelism((clients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var requests atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				nc := <-conns
				buf := make([]byte, len(want)*depth)
				for pb.Next() {
					if _, err := nc.Write(req); err != nil {
						b.Error(err)
						return
					}
					if _, err := io.ReadFull(nc, buf); err != nil || string(buf[:len(want)]) != want {
						b.Errorf("reply %q: %v", buf, err)
						return
					}
					requests.Add(int64(depth))
				}
			})
			b.ReportMetric(float64(requests.Load())/time.Since(start).Seconds(), "req/s")
		})
	}
}

// The handler path must not allocate beyond what reading the request takes.
func TestGetMasterAddrByNameAllocations(t *testing.T) {
	f := newFake()
	topology(f)
	s := New(Config{}, f)
	t.Cleanup(func() { _ = s.Close() })
	c := newConn(s, discardConn{})
	args := [][]byte{[]byte("SENTINEL"), []byte("get-master-addr-by-name"), []byte("mymaster")}
	c.exec(args)
	if n := testing.AllocsPerRun(100, func() { c.exec(args) }); n != 0 {
		t.Errorf("%v allocations per GET-MASTER-ADDR-BY-NAME, want 0", n)
	}
}
