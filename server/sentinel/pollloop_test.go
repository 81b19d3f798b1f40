//go:build linux

package sentinel

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// inLoop reports whether c is served by the poll loop.
func inLoop(c *conn) bool {
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	return c.lfd >= 0
}

// A plain TCP connection is served by the poll loop, and Close ends the
// loop with its connections.
func TestPollLoopServesPlainTCP(t *testing.T) {
	f := newFake()
	topology(f)
	s := start(t, f, Config{})
	if s.loop == nil {
		t.Fatal("no poll loop on Linux")
	}
	c := dial(t, s.Addr())
	if got := c.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != addrReply {
		t.Fatalf("reply %q", got)
	}
	if !inLoop(onlyConn(t, s)) {
		t.Fatal("the connection is not in the poll loop")
	}
}

// blockingBackend's MONITOR waits until release is closed, as a write
// waits for Raft.
type blockingBackend struct {
	*fakeBackend
	entered chan struct{}
	release chan struct{}
}

func (b *blockingBackend) Monitor(ctx context.Context, name, addr string, quorum int) error {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.fakeBackend.Monitor(ctx, name, addr, quorum)
}

// A write that waits for Raft leaves the loop first: other clients are
// answered meanwhile, and the writer gets its reply, then goes on being
// served.
func TestPollLoopHandsOffAWaitingWrite(t *testing.T) {
	f := newFake()
	topology(f)
	b := &blockingBackend{fakeBackend: f, entered: make(chan struct{}), release: make(chan struct{})}
	s := start(t, b, Config{})
	writer := dial(t, s.Addr())
	// The write and a request after it, in one segment.
	if _, err := writer.nc.Write(append(encode("SENTINEL", "MONITOR", "other", "10.0.0.9", "6379", "2"), encode("PING")...)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("MONITOR never reached the backend")
	}
	other := dial(t, s.Addr())
	for range 3 {
		if got := other.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != addrReply {
			t.Fatalf("while a write waits, reply %q", got)
		}
	}
	close(b.release)
	if got := writer.read(); got != "+OK\r\n" {
		t.Fatalf("MONITOR: %q", got)
	}
	if got := writer.read(); got != "+PONG\r\n" {
		t.Fatalf("PING after MONITOR: %q", got)
	}
	if got := writer.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != addrReply {
		t.Fatalf("after the hand-off, reply %q", got)
	}
}

// A subscriber leaves the loop (its events are written by its pump) and
// receives events; the reply to a request pipelined after SUBSCRIBE comes
// after the confirmation.
func TestPollLoopHandsOffASubscriber(t *testing.T) {
	f := newFake()
	topology(f)
	s := start(t, f, Config{})
	c := dial(t, s.Addr())
	if got := c.do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	if _, err := c.nc.Write(append(encode("SUBSCRIBE", "+switch-master"), encode("PING")...)); err != nil {
		t.Fatal(err)
	}
	if got := c.read(); got != "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	if got := c.read(); got != "*2\r\n$4\r\npong\r\n$0\r\n\r\n" {
		t.Fatalf("PING while subscribed: %q", got)
	}
	if inLoop(onlyConn(t, s)) {
		t.Fatal("a subscriber is still in the poll loop")
	}
	testwait.Until(t, 10*time.Second, "the subscription to be registered", func() bool { return s.Stats().Subscribers == 1 })
	f.emit(&fsmv1.Event{Type: "+switch-master", Payload: "mymaster 10.0.0.1 6379 10.0.0.2 6379"})
	want := "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$36\r\nmymaster 10.0.0.1 6379 10.0.0.2 6379\r\n"
	if got := c.read(); got != want {
		t.Fatalf("event %q, want %q", got, want)
	}
}

// A client that sends a long pipeline without reading fills its socket: the
// connection leaves the loop (for the replies the socket cannot take, or
// for a request cut at the read buffer's end, whichever comes first), and
// every reply arrives, in order, once the client reads. Meanwhile the loop
// serves the others.
func TestPollLoopFullSocket(t *testing.T) {
	f := newFake()
	topology(f)
	s := start(t, f, Config{})
	c := dial(t, s.Addr())
	const n = 4000
	var req bytes.Buffer
	for i := range n {
		req.Write(encode("PING", strconv.Itoa(i)+string(bytes.Repeat([]byte{'x'}, 4000))))
	}
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() { _, werr = c.nc.Write(req.Bytes()) })
	sc := onlyConn(t, s)
	testwait.Until(t, 30*time.Second, "the connection to leave the loop", func() bool { return !inLoop(sc) })
	other := dial(t, s.Addr())
	if got := other.do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING from another client: %q", got)
	}
	for i := range n {
		arg := strconv.Itoa(i) + string(bytes.Repeat([]byte{'x'}, 4000))
		want := "$" + strconv.Itoa(len(arg)) + "\r\n" + arg + "\r\n"
		if got := c.read(); got != want {
			t.Fatalf("reply %d: %q", i, trunc([]byte(got), 40))
		}
	}
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
}

// fdWriter keeps what a full socket cannot take, in order, and writes
// nothing more itself once it keeps something.
func TestFDWriterKeepsWhatTheSocketCannotTake(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	w := &fdWriter{fd: fds[0]}
	var sent bytes.Buffer
	for i := 0; len(w.pending) == 0; i++ {
		if i == 10000 {
			t.Fatal("the socket never filled")
		}
		p := bytes.Repeat([]byte{byte('a' + i%26)}, 4096)
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
		sent.Write(p)
	}
	if n, err := w.Write([]byte("tail")); n != 4 || err != nil {
		t.Fatalf("Write after the socket filled: %d, %v", n, err)
	}
	sent.WriteString("tail")
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(fds[1], buf)
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got.Write(buf[:n])
	}
	got.Write(w.pending)
	if !bytes.Equal(got.Bytes(), sent.Bytes()) {
		t.Fatalf("the socket and pending hold %d bytes, not the %d written in order", got.Len(), sent.Len())
	}
}

// The loop polls without sleeping only once requests come densely: after a
// wait that found several connections ready, and while polling finds more.
func TestPollLoopBusyPollsOnlyUnderDenseLoad(t *testing.T) {
	for _, tc := range []struct {
		name     string
		busyPoll time.Duration
		ready    int  // pipes written to before the wait
		busy     bool // the loop's state before the wait
		late     bool // one more pipe written to 20 ms after the wait began
		wantN    int
		wantBusy bool
	}{
		{name: "several ready: busy", busyPoll: DefaultBusyPoll, ready: 2, wantN: 2, wantBusy: true},
		{name: "one ready: not busy", busyPoll: DefaultBusyPoll, ready: 1, wantN: 1},
		{name: "busy and ready: stays busy", busyPoll: DefaultBusyPoll, ready: 1, busy: true, wantN: 1, wantBusy: true},
		{name: "busy, nothing within the poll time: sleeps, then not busy", busyPoll: DefaultBusyPoll, busy: true, late: true, wantN: 1},
		{name: "one, after a while: not busy", busyPoll: DefaultBusyPoll, late: true, wantN: 1},
		{name: "off", busyPoll: -1, ready: 2, wantN: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Config{BusyPoll: tc.busyPoll, Logger: testLogger(t)}, newFake())
			l := newPollLoop(s)
			if l == nil {
				t.Fatal("no poll loop on Linux")
			}
			t.Cleanup(l.closeAll)
			var writers []int
			for range 3 {
				var p [2]int
				if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = syscall.Close(p[0]); _ = syscall.Close(p[1]) })
				ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
				if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
					t.Fatal(err)
				}
				writers = append(writers, p[1])
			}
			for _, w := range writers[:tc.ready] {
				if _, err := syscall.Write(w, []byte{1}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.late {
				timer := time.AfterFunc(200*time.Millisecond, func() { _, _ = syscall.Write(writers[2], []byte{1}) })
				t.Cleanup(func() { timer.Stop() })
			}
			events := make([]syscall.EpollEvent, 8)
			n, busy, err := l.wait(events, tc.busy)
			if err != nil || n != tc.wantN || busy != tc.wantBusy {
				t.Fatalf("wait: %d ready, busy %v, err %v; want %d, busy %v", n, busy, err, tc.wantN, tc.wantBusy)
			}
		})
	}
}

// Many clients at once, each with requests in flight one at a time, are
// all answered right, with the loop busy polling and without.
func TestPollLoopManyClients(t *testing.T) {
	for _, busyPoll := range []time.Duration{DefaultBusyPoll, -1} {
		t.Run("busy-poll "+busyPoll.String(), func(t *testing.T) {
			f := newFake()
			topology(f)
			s := start(t, f, Config{BusyPoll: busyPoll})
			var wg sync.WaitGroup
			errs := make(chan string, 20)
			for range 20 {
				c := dial(t, s.Addr())
				wg.Go(func() {
					for range 200 {
						if got := c.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != addrReply {
							errs <- got
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for got := range errs {
				t.Errorf("reply %q", got)
			}
		})
	}
}
