package sentinel

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/resp"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"github.com/redis/go-redis/v9"
)

const switchPayload = "mymaster 10.0.0.1 6379 10.0.0.3 6381"

func switchEvent() *fsmv1.Event {
	return &fsmv1.Event{Type: "+switch-master", Payload: switchPayload, Master: "mymaster", Epoch: 4}
}

func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

func TestPubSubRESP2(t *testing.T) {
	f, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	c.send("SUBSCRIBE", "+switch-master", "+sdown")
	if got := c.read() + c.read(); got != "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:2\r\n" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"PING"}, "*2\r\n$4\r\npong\r\n$0\r\n\r\n"},
		{[]string{"PING", "hi"}, "*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"},
		{[]string{"SENTINEL", "MASTERS"}, "-ERR Can't execute 'sentinel|masters': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"},
		{[]string{"SENTINEL", "nope"}, "-ERR unknown subcommand 'nope'. Try SENTINEL HELP.\r\n"},
		{[]string{"GET", "x"}, "-ERR unknown command 'GET', with args beginning with: 'x' \r\n"},
		{[]string{"SUBSCRIBE", "+sdown"}, "*3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:2\r\n"},
		{[]string{"PSUBSCRIBE", "*"}, "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:3\r\n"},
		{[]string{"PSUBSCRIBE", "+switch-*"}, "*3\r\n$10\r\npsubscribe\r\n$9\r\n+switch-*\r\n:4\r\n"},
	} {
		if got := c.do(tc.cmd...); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.cmd, got, tc.want)
		}
	}

	// One event: a message for the channel, then a pmessage per pattern.
	f.emit(switchEvent())
	want := "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n" + bulk(switchPayload) +
		"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$14\r\n+switch-master\r\n" + bulk(switchPayload) +
		"*4\r\n$8\r\npmessage\r\n$9\r\n+switch-*\r\n$14\r\n+switch-master\r\n" + bulk(switchPayload)
	if got := c.read() + c.read() + c.read(); got != want {
		t.Errorf("event frames:\n got  %q\n want %q", got, want)
	}

	c.send("UNSUBSCRIBE")
	if got := c.read() + c.read(); got != "*3\r\n$11\r\nunsubscribe\r\n$14\r\n+switch-master\r\n:3\r\n*3\r\n$11\r\nunsubscribe\r\n$6\r\n+sdown\r\n:2\r\n" {
		t.Errorf("UNSUBSCRIBE all: %q", got)
	}
	c.send("PUNSUBSCRIBE", "+switch-*", "nope")
	if got := c.read() + c.read(); got != "*3\r\n$12\r\npunsubscribe\r\n$9\r\n+switch-*\r\n:1\r\n*3\r\n$12\r\npunsubscribe\r\n$4\r\nnope\r\n:1\r\n" {
		t.Errorf("PUNSUBSCRIBE: %q", got)
	}
	if got := c.do("PUNSUBSCRIBE"); got != "*3\r\n$12\r\npunsubscribe\r\n$1\r\n*\r\n:0\r\n" {
		t.Errorf("PUNSUBSCRIBE all: %q", got)
	}
	if got := c.do("UNSUBSCRIBE"); got != "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n" {
		t.Errorf("UNSUBSCRIBE with nothing subscribed: %q", got)
	}
	// Out of the subscribed context, everything works again and nothing
	// more is delivered.
	f.emit(switchEvent())
	if got := c.do("PING"); got != "+PONG\r\n" {
		t.Errorf("PING after unsubscribing: %q", got)
	}
	if got := c.do("SUBSCRIBE"); got != arity("subscribe") {
		t.Errorf("SUBSCRIBE without channels: %q", got)
	}
}

func TestPubSubRESP3PushFrame(t *testing.T) {
	f, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	if got := c.do("HELLO", "3"); !strings.HasPrefix(got, "%6\r\n") {
		t.Fatalf("HELLO 3: %q", got)
	}
	if got := c.do("SUBSCRIBE", "+switch-master"); got != ">3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	// RESP3 subscribers may run any command.
	if got := c.do("PING"); got != "+PONG\r\n" {
		t.Errorf("PING: %q", got)
	}
	if got := c.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"); got != "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n" {
		t.Errorf("GET-MASTER-ADDR-BY-NAME: %q", got)
	}
	f.emit(switchEvent())
	want := ">3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$36\r\nmymaster 10.0.0.1 6379 10.0.0.3 6381\r\n"
	if got := c.read(); got != want {
		t.Errorf("push frame:\n got  %q\n want %q", got, want)
	}
	if got := c.do("PSUBSCRIBE", "*"); got != ">3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:2\r\n" {
		t.Errorf("PSUBSCRIBE: %q", got)
	}
	f.emit(&fsmv1.Event{Type: "+sdown", Payload: "master mymaster 10.0.0.1 6379"})
	if got := c.read(); got != ">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$6\r\n+sdown\r\n$29\r\nmaster mymaster 10.0.0.1 6379\r\n" {
		t.Errorf("pmessage push: %q", got)
	}
	if got := c.do("UNSUBSCRIBE", "a", "+switch-master"); got != ">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n" {
		t.Errorf("UNSUBSCRIBE a: %q", got)
	}
	if got := c.read(); got != ">3\r\n$11\r\nunsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n" {
		t.Errorf("UNSUBSCRIBE +switch-master: %q", got)
	}
}

// Another node's SDOWN opinion is its own event; only this node's is
// published here, as each Sentinel publishes its own +sdown.
func TestOwnOpinionEventsOnly(t *testing.T) {
	f, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	c.do("PSUBSCRIBE", "*")
	f.emit(&fsmv1.Event{Type: "+sdown", Payload: "master mymaster 10.0.0.1 6379", NodeId: "node-b"})
	f.emit(&fsmv1.Event{Type: "+sdown", Payload: "master mymaster 10.0.0.1 6379", NodeId: "node-a"})
	f.emit(&fsmv1.Event{Type: "+odown", Payload: "master mymaster 10.0.0.1 6379 #quorum 2/2"})
	got := c.read() + c.read()
	want := "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$6\r\n+sdown\r\n$29\r\nmaster mymaster 10.0.0.1 6379\r\n" +
		"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$6\r\n+odown\r\n$41\r\nmaster mymaster 10.0.0.1 6379 #quorum 2/2\r\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// A subscriber that never reads is disconnected once its buffer fills; the
// others keep receiving every event, and the fan-out never waits.
func TestSlowSubscriberDropped(t *testing.T) {
	f, s := startFake(t, Config{SubscriberBuffer: 256 << 10})
	slow := dial(t, s.Addr())
	slow.do("PSUBSCRIBE", "*")
	fast := redis.NewClient(&redis.Options{Addr: s.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = fast.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ps := fast.PSubscribe(ctx, "*")
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	// 32 MiB of events outgrow the slow client's socket buffers and then
	// its 256 KiB queue. The emitter waits for the fast client to receive
	// each event, so the fast client's queue never holds more than one.
	const n = 2000
	payload := strings.Repeat("x", 16<<10)
	for i := range n {
		want := fmt.Sprintf("%d %s", i, payload)
		f.emit(&fsmv1.Event{Type: "+sdown", Payload: want})
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil || msg.Payload != want {
			t.Fatalf("fast subscriber, event %d: %v", i, err)
		}
	}
	testwait.Until(t, 10*time.Second, "the slow subscriber to be dropped", func() bool { return s.dropped.Load() == 1 })
	// The slow client's stream ends: it reads what was buffered, then EOF.
	_ = slow.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, slow.nc); err != nil {
		t.Errorf("slow client: %v, want EOF", err)
	}
	if f.streamCount() != 1 {
		t.Errorf("the server lost its event stream")
	}
}

// If the node closes the event stream (the front end fell behind), the
// server subscribes again and keeps publishing.
func TestEventStreamResubscribe(t *testing.T) {
	f, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	c.do("SUBSCRIBE", "+switch-master")
	f.mu.Lock()
	for _, ch := range f.streams {
		close(ch)
	}
	f.streams = nil
	f.mu.Unlock()
	testwait.Until(t, 5*time.Second, "a new event stream", func() bool { return f.streamCount() == 1 })
	f.emit(switchEvent())
	if got := c.read(); !strings.Contains(got, switchPayload) {
		t.Errorf("after resubscribing: %q", got)
	}
}

func TestMalformedRequestClosesOnlyThatConnection(t *testing.T) {
	_, s := startFake(t, Config{Limits: resp.Limits{MaxBulkLen: 1024}})
	good := dial(t, s.Addr())
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$abc\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*1\r\n$2000\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"PING \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
	} {
		bad := dial(t, s.Addr())
		if _, err := bad.nc.Write([]byte(tc.in)); err != nil {
			t.Fatal(err)
		}
		_ = bad.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, err := io.ReadAll(bad.nc)
		if err != nil || string(out) != tc.want {
			t.Errorf("%q: got %q (%v), want %q then EOF", tc.in, out, err, tc.want)
		}
		if got := good.do("PING"); got != "+PONG\r\n" {
			t.Fatalf("other connection after %q: %q", tc.in, got)
		}
	}
	// Inline commands work, as in Redis.
	c := dial(t, s.Addr())
	if _, err := c.nc.Write([]byte("SENTINEL get-master-addr-by-name mymaster\r\n")); err != nil {
		t.Fatal(err)
	}
	if got := c.read(); got != "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n" {
		t.Errorf("inline: %q", got)
	}
}

func TestAuth(t *testing.T) {
	_, s := startFake(t, Config{Password: "sekret"})
	c := dial(t, s.Addr())
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"PING"}, "-NOAUTH Authentication required.\r\n"},
		{[]string{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"}, "-NOAUTH Authentication required.\r\n"},
		{[]string{"SUBSCRIBE", "x"}, "-NOAUTH Authentication required.\r\n"},
		// Lookup and arity come first, as in Redis.
		{[]string{"FOO"}, "-ERR unknown command 'FOO', with args beginning with: \r\n"},
		{[]string{"SENTINEL", "MASTER"}, arity("sentinel|master")},
		{[]string{"HELLO", "3"}, "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"},
		{[]string{"HELLO", "3", "AUTH", "default", "bad"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "bad"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "default", "bad"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "bob", "sekret"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "sekret"}, "+OK\r\n"},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"AUTH", "bad"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"PING"}, "+PONG\r\n"}, // a failed AUTH keeps the session
	} {
		if got := c.do(tc.cmd...); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.cmd, got, tc.want)
		}
	}
	c2 := dial(t, s.Addr())
	if got := c2.do("HELLO", "3", "AUTH", "default", "sekret"); !strings.HasPrefix(got, "%6\r\n") {
		t.Errorf("HELLO 3 AUTH: %q", got)
	}
	if got := c2.do("PING"); got != "+PONG\r\n" {
		t.Errorf("PING after HELLO AUTH: %q", got)
	}
	// Before AUTH the request limits are tight, as in Redis.
	c3 := dial(t, s.Addr())
	big := make([]string, 12)
	for i := range big {
		big[i] = "x"
	}
	c3.send(big...)
	_ = c3.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if out, _ := io.ReadAll(c3.nc); !strings.HasPrefix(string(out), "-ERR Protocol error: ") {
		t.Errorf("12 arguments before AUTH: %q", out)
	}
	// go-redis authenticates through HELLO 3 AUTH, and falls back to AUTH
	// with RESP2.
	for _, proto := range []int{2, 3} {
		rc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Password: "sekret", Protocol: proto})
		addr, err := rc.GetMasterAddrByName(context.Background(), "mymaster").Result()
		_ = rc.Close()
		if err != nil || len(addr) != 2 || addr[0] != "10.0.0.1" {
			t.Errorf("go-redis RESP%d with password: %v %v", proto, addr, err)
		}
	}
}

func TestMaxClients(t *testing.T) {
	_, s := startFake(t, Config{MaxClients: 1})
	first := dial(t, s.Addr())
	first.do("PING")
	second := dial(t, s.Addr())
	_ = second.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, _ := io.ReadAll(second.nc)
	if string(out) != "-ERR max number of clients reached\r\n" {
		t.Errorf("over MaxClients: %q", out)
	}
	if got := first.do("PING"); got != "+PONG\r\n" {
		t.Errorf("first client: %q", got)
	}
}

// Close returns with clients connected, subscribed and mid-pipeline, and
// afterwards every connection is closed.
func TestCloseWithClients(t *testing.T) {
	f := newFake()
	topology(f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Listener: ln, Logger: testLogger(t)}, f)
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	testwait.Until(t, 5*time.Second, "the server to start", func() bool { return s.Addr() != "" && f.streamCount() == 1 })
	sub := dial(t, s.Addr())
	sub.do("SUBSCRIBE", "+switch-master")
	idle := dial(t, s.Addr())
	idle.do("PING")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	for _, c := range []*client{sub, idle} {
		_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := bufio.NewReader(c.nc).ReadByte(); err == nil {
			t.Error("connection open after Close")
		}
	}
	if f.streamCount() != 0 {
		t.Error("event stream not released")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

type testUsers map[string]User

func (u testUsers) Lookup(user, pass string) (User, bool) {
	x, ok := u[user+":"+pass]
	return x, ok
}
func (u testUsers) Any() bool { return len(u) > 0 }

// ACL users as Sentinel 6.2: AUTH user pass and HELLO 3 AUTH user pass; a
// read-only user runs discovery commands only; with users and no
// password, the default user is off.
func TestACLUsers(t *testing.T) {
	users := testUsers{"app:apppass": {Name: "app", ReadOnly: true}, "ops:opspass": {Name: "ops"}}
	_, s := startFake(t, Config{Users: users})
	c := dial(t, s.Addr())
	noperm := func(cmd string) string {
		return "-NOPERM User app has no permissions to run the '" + cmd + "' command\r\n"
	}
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"PING"}, "-NOAUTH Authentication required.\r\n"},
		{[]string{"AUTH", "default", ""}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "app", "bad"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "app", "apppass"}, "+OK\r\n"},
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nosuch"}, "*-1\r\n"},
		{[]string{"SENTINEL", "FAILOVER", "mymaster"}, noperm("sentinel|failover")},
		{[]string{"SENTINEL", "SET", "mymaster", "quorum", "1"}, noperm("sentinel|set")},
		{[]string{"SENTINEL", "MONITOR", "x", "127.0.0.1", "1", "1"}, noperm("sentinel|monitor")},
		{[]string{"CLIENT", "KILL", "ID", "1"}, noperm("client|kill")},
		{[]string{"SHUTDOWN"}, noperm("shutdown")},
		{[]string{"AUTH", "ops", "opspass"}, "+OK\r\n"},
		{[]string{"SENTINEL", "FAILOVER", "nosuch"}, "-ERR No such master with that name\r\n"},
	} {
		if got := c.do(tc.cmd...); got != tc.want {
			t.Errorf("%q:\n got  %q\n want %q", tc.cmd, got, tc.want)
		}
	}
	c2 := dial(t, s.Addr())
	if got := c2.do("HELLO", "3", "AUTH", "app", "apppass"); !strings.HasPrefix(got, "%6\r\n") {
		t.Errorf("HELLO 3 AUTH app: %q", got)
	}
	if got := c2.do("SENTINEL", "RESET", "*"); got != noperm("sentinel|reset") {
		t.Errorf("RESET as app: %q", got)
	}
	if got := c2.do("SUBSCRIBE", "+switch-master"); !strings.Contains(got, "subscribe") {
		t.Errorf("SUBSCRIBE as app: %q", got)
	}
	// With users and a password, the default user keeps the password.
	_, s2 := startFake(t, Config{Users: users, Password: "sekret"})
	c3 := dial(t, s2.Addr())
	if got := c3.do("AUTH", "sekret"); got != "+OK\r\n" {
		t.Errorf("AUTH with the shared password beside users: %q", got)
	}
}
