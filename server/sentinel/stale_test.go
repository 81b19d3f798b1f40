package sentinel

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
)

// staleBackend is the fake backend with a switch for Voucher.
type staleBackend struct {
	*fakeBackend
	stale atomic.Bool
}

func (b *staleBackend) Vouches() bool { return !b.stale.Load() }

// closedWithoutReply reports whether the server closed the connection
// without sending anything more.
func (c *client) closedWithoutReply() error {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := c.r.ReadByte()
	switch {
	case err == nil:
		rest, _ := c.r.Peek(c.r.Buffered())
		return errors.New("got a reply: " + string(b) + string(rest))
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return nil
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("no reply and no close within 10 s")
		}
		return nil // reset by peer: closed too
	}
}

// A node that cannot vouch for its state closes the connection of every
// discovery command, without a reply, and of a new subscription; the
// replies to the commands before it in a pipeline still go out, and the
// commands that name no master keep answering.
func TestStaleNodeClosesDiscovery(t *testing.T) {
	f := newFake()
	topology(f)
	b := &staleBackend{fakeBackend: f}
	s := start(t, b, Config{})
	testwait.Until(t, 5*time.Second, "the event stream", func() bool { return f.streamCount() == 1 })

	c := dial(t, s.Addr())
	if got := c.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n" {
		t.Fatalf("while vouching: %q", got)
	}
	b.stale.Store(true)
	for _, cmd := range [][]string{
		{"SENTINEL", "get-master-addr-by-name", "mymaster"},
		{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"},
		{"SENTINEL", "MASTERS"},
		{"SENTINEL", "MASTER", "mymaster"},
		{"SENTINEL", "REPLICAS", "mymaster"},
		{"SENTINEL", "SLAVES", "mymaster"},
		{"SENTINEL", "SENTINELS", "mymaster"},
		{"SUBSCRIBE", "+switch-master"},
		{"PSUBSCRIBE", "*"},
	} {
		c := dial(t, s.Addr())
		c.send(cmd...)
		if err := c.closedWithoutReply(); err != nil {
			t.Errorf("%q while not vouching: %v", cmd, err)
		}
	}
	// Pipelined: the reply before it, then the close.
	c = dial(t, s.Addr())
	if _, err := c.nc.Write(append(encode("PING"), encode("SENTINEL", "get-master-addr-by-name", "mymaster")...)); err != nil {
		t.Fatal(err)
	}
	if got := c.read(); got != "+PONG\r\n" {
		t.Fatalf("PING before it: %q", got)
	}
	if err := c.closedWithoutReply(); err != nil {
		t.Fatalf("the discovery command after it: %v", err)
	}
	c = dial(t, s.Addr())
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"SENTINEL", "MYID"}, "$40\r\n" + RunID("node-a") + "\r\n"},
		{[]string{"SENTINEL", "CKQUORUM", "mymaster"}, "+OK 2 usable Sentinels. Quorum and failover authorization can be reached\r\n"},
	} {
		if got := c.do(tc.cmd...); got != tc.want {
			t.Errorf("%q while not vouching: %q, want %q", tc.cmd, got, tc.want)
		}
	}
	b.stale.Store(false)
	if got := c.do("SENTINEL", "get-master-addr-by-name", "mymaster"); got != "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n" {
		t.Fatalf("vouching again: %q", got)
	}
}

// DisconnectSubscribers closes the subscribers' connections, and only
// theirs.
func TestDisconnectSubscribers(t *testing.T) {
	_, s := startFake(t, Config{})
	sub := dial(t, s.Addr())
	if got := sub.do("SUBSCRIBE", "+switch-master"); got != "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	other := dial(t, s.Addr())
	if got := other.do("PING"); got != "+PONG\r\n" {
		t.Fatalf("PING: %q", got)
	}
	if n := s.DisconnectSubscribers(); n != 1 {
		t.Fatalf("disconnected %d subscribers, want 1", n)
	}
	if err := sub.closedWithoutReply(); err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	if got := other.do("PING"); got != "+PONG\r\n" {
		t.Fatalf("the other client after it: %q", got)
	}
	testwait.Until(t, 5*time.Second, "no subscriber left", func() bool { return s.Stats().Subscribers == 0 })
}
