package probe

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

func newTestLink(addr string) *link {
	return &link{addr: addr, clientName: testClientName, dialTimeout: time.Second}
}

// pingWithin and infoWithin contact by ctx's deadline, if any.
func pingWithin(l *link, ctx context.Context, auth Auth) PingResult {
	dl, _ := ctx.Deadline()
	return l.ping(ctx, dl, auth)
}

func infoWithin(l *link, ctx context.Context, auth Auth) (Info, error) {
	dl, _ := ctx.Deadline()
	return l.info(ctx, dl, auth)
}

func shortCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), d)
	t.Cleanup(cancel)
	return ctx
}

// TestLinkPingReplies classifies every kind of PING reply read off the wire
// the way Conn.Ping does, one PING per call; and with pingWithReplication,
// PING and INFO replication in one write, whose INFO is kept only after
// PONG (a loading server answers LOADING, and its INFO is left to a read
// of its own, which includes persistence).
func TestLinkPingReplies(t *testing.T) {
	info := "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6380,state=online,offset=5,lag=1\r\nmin_slaves_good_slaves:1\r\n"
	for _, tc := range []struct {
		wire  string
		valid bool
	}{
		{"+PONG\r\n", true},
		{"-LOADING Redis is loading the dataset in memory\r\n", true},
		{"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n", true},
		{"-MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.\r\n", false},
		{"-BUSY Redis is busy running a script.\r\n", false},
		{"-ERR unknown command 'PING'\r\n", false},
		{"+OK\r\n", false},
	} {
		t.Run(strings.Fields(tc.wire)[0], func(t *testing.T) {
			fake := startFakeRedis(t, func(args []string) string {
				if strings.EqualFold(args[0], "PING") {
					return tc.wire
				}
				return "$" + strconv.Itoa(len(info)) + "\r\n" + info + "\r\n"
			})
			l := newTestLink(fake.Addr())
			defer l.close()
			res := pingWithin(l, shortCtx(t, 2*time.Second), Auth{})
			if res.Valid != tc.valid || !res.Replied {
				t.Fatalf("ping = %+v, want valid=%v replied", res, tc.valid)
			}
			if want := strings.TrimRight(tc.wire[1:], "\r\n"); res.Reply != want {
				t.Fatalf("Reply = %q, want %q", res.Reply, want)
			}
			if got := fake.received(); len(got) != 1 || got[0][0] != "PING" {
				t.Fatalf("the server saw %v, want exactly one PING", got)
			}

			ctx := shortCtx(t, 2*time.Second)
			dl, _ := ctx.Deadline()
			withRepl, got := l.pingWithReplication(ctx, dl, Auth{})
			if withRepl.Valid != tc.valid || withRepl.Reply != res.Reply {
				t.Fatalf("pingWithReplication = %+v, want it classified as ping's %+v", withRepl, res)
			}
			if want := tc.wire == "+PONG\r\n"; (got != nil) != want {
				t.Fatalf("INFO with the PING = %+v, want one: %v", got, want)
			}
			if got != nil && (got.Role != RoleMaster || got.Loading || len(got.ConnectedReplicas) != 1 || got.ConnectedReplicas[0].Lag != 1 || !got.MinReplicasOn) {
				t.Fatalf("INFO with the PING = %+v", got)
			}
			if sent := fake.received()[1:]; len(sent) != 2 || sent[0][0] != "PING" || strings.Join(sent[1], " ") != "INFO replication" {
				t.Fatalf("the server saw %v after the PING, want PING and INFO replication", sent)
			}
		})
	}
}

// A reused connection the server closed (CLIENT KILL during a failover
// step) is redialed at once: one failed read says nothing about health.
// A fresh connection that breaks is not retried.
func TestLinkRetriesOnceOnAReusedConnection(t *testing.T) {
	var mu sync.Mutex
	pings := 0
	fake := startFakeRedis(t, func([]string) string {
		mu.Lock()
		defer mu.Unlock()
		pings++
		if pings == 2 || pings == 4 {
			return "" // hang up, as CLIENT KILL does
		}
		return "+PONG\r\n"
	})
	l := newTestLink(fake.Addr())
	defer l.close()
	for i, want := range []bool{true, true, true} {
		if res := pingWithin(l, shortCtx(t, 2*time.Second), Auth{}); res.Valid != want {
			t.Fatalf("ping %d = %+v", i, res)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if pings != 5 {
		t.Fatalf("%d PINGs reached the server, want 5 (two of them retries)", pings)
	}

	// A server that hangs up on every fresh connection is not retried.
	closer := startFakeRedis(t, func([]string) string { return "" })
	l2 := newTestLink(closer.Addr())
	defer l2.close()
	if res := pingWithin(l2, shortCtx(t, 2*time.Second), Auth{}); res.Valid || res.Replied {
		t.Fatalf("ping = %+v, want a failure", res)
	}
	if n := len(closer.received()); n != 1 {
		t.Fatalf("%d PINGs on a fresh connection that broke, want 1", n)
	}
}

// TestLinkNoDialBackoff: however many dials were refused, the next attempt
// dials again, so an instance that is back is seen at the next period. (A
// go-redis pool of size n stops dialing after n failures and retries only
// in the background, once a second.)
func TestLinkNoDialBackoff(t *testing.T) {
	// Another process may take the closed port before it is listened on
	// again: then the whole attempt is repeated on a fresh port.
	var (
		l  *link
		ln net.Listener
	)
	for attempt := 1; ln == nil; attempt++ {
		probeLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := probeLn.Addr().String()
		probeLn.Close()
		l = newTestLink(addr)
		for i := range 10 {
			res := pingWithin(l, shortCtx(t, time.Second), Auth{})
			if res.Replied || res.TimedOut || !strings.Contains(res.Reply, "refused") {
				t.Fatalf("attempt %d on a closed port: %+v", i, res)
			}
		}
		if ln, err = net.Listen("tcp", addr); err != nil {
			l.close()
			if attempt == 5 {
				t.Fatalf("the closed port was taken by another process in %d attempts: %v", attempt, err)
			}
		}
	}
	defer l.close()
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			args, err := readCommand(r)
			if err != nil {
				return
			}
			reply := "+PONG\r\n"
			if strings.EqualFold(args[0], "CLIENT") {
				reply = "+OK\r\n"
			}
			if _, err := io.WriteString(c, reply); err != nil {
				return
			}
		}
	}()
	if res := pingWithin(l, shortCtx(t, 2*time.Second), Auth{}); !res.Valid {
		t.Fatalf("the first attempt after the port opened: %+v", res)
	}
}

// A frozen server: the PING returns by its deadline as a timeout, and a
// cancelled context ends a blocked read at once.
func TestLinkDeadlineAndCancel(t *testing.T) {
	block := make(chan struct{})
	fake := startFakeRedis(t, func([]string) string { <-block; return "+PONG\r\n" })
	t.Cleanup(func() { close(block) }) // before the fake's cleanup, which waits for it
	l := newTestLink(fake.Addr())
	defer l.close()

	start := time.Now()
	res := pingWithin(l, shortCtx(t, 100*time.Millisecond), Auth{})
	if res.Valid || res.Replied || !res.TimedOut {
		t.Fatalf("ping of a frozen server = %+v, want a timeout", res)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("ping took %v with a 100ms deadline", took)
	}

	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan PingResult, 1)
	go func() { done <- pingWithin(l, ctx, Auth{}) }()
	cancel()
	select {
	case res := <-done:
		if res.Valid || res.Replied {
			t.Fatalf("cancelled ping = %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelling did not end a read blocked on a frozen server")
	}
}

// A bound link (the Watcher's loops) takes only a deadline per contact:
// the deadline still times a frozen server out, the end of the link's
// life ends a read in flight at once, and no contact starts after it.
func TestLinkBoundDeadlineAndCancel(t *testing.T) {
	block := make(chan struct{})
	fake := startFakeRedis(t, func([]string) string { <-block; return "+PONG\r\n" })
	t.Cleanup(func() { close(block) })
	l := newTestLink(fake.Addr())
	defer l.close()
	life, end := context.WithCancel(testCtx(t))
	defer l.bind(life)()

	res := l.ping(life, time.Now().Add(100*time.Millisecond), Auth{})
	if res.Valid || res.Replied || !res.TimedOut || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("ping of a frozen server = %+v, want a timeout", res)
	}

	done := make(chan PingResult, 1)
	go func() { done <- l.ping(life, time.Now().Add(time.Hour), Auth{}) }()
	// The read must be in flight: the fake has the PING.
	testwait.Until(t, 10*time.Second, "the second PING to reach the server", func() bool { return len(fake.received()) >= 2 })
	end()
	select {
	case res := <-done:
		if res.Valid || res.Replied || !errors.Is(res.Err, context.Canceled) {
			t.Fatalf("ping when the link's life ended = %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the end of the link's life did not end a read blocked on a frozen server")
	}
	if res := l.ping(life, time.Now().Add(time.Hour), Auth{}); res.Valid || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("ping after the link's life ended = %+v", res)
	}
}

func TestLinkAuth(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.RequirePass("hunter2"))
	l := newTestLink(s.Addr())
	defer l.close()
	ctx := testCtx(t)
	res := pingWithin(l, ctx, Auth{})
	if res.Valid || !res.Replied || !strings.HasPrefix(res.Reply, "NOAUTH") {
		t.Fatalf("without a password: %+v", res)
	}
	res = pingWithin(l, ctx, Auth{Pass: "wrong"})
	if res.Valid || !res.Replied || !strings.HasPrefix(res.Reply, "WRONGPASS") {
		t.Fatalf("wrong password: %+v", res)
	}
	if res := pingWithin(l, ctx, Auth{Pass: "hunter2"}); !res.Valid || res.Reply != "PONG" {
		t.Fatalf("right password: %+v", res)
	}
	if res := pingWithin(l, ctx, Auth{User: "default", Pass: "hunter2"}); !res.Valid {
		t.Fatalf("ACL user: %+v", res)
	}
	// The link reconnected for each change of credentials, and the last
	// connection carries the client name.
	c := newTestConn(t, s.Addr(), Auth{Pass: "hunter2"})
	testwait.Until(t, 10*time.Second, "the link's earlier connections to close", func() bool {
		return countClients(t, ctx, c, "name="+testClientName) == 2 // the link's and ours
	})
}

func TestLinkInfo(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	ctx := testCtx(t)
	lm, lr := newTestLink(master.Addr()), newTestLink(replica.Addr())
	defer lm.close()
	defer lr.close()
	mi, err := infoWithin(lm, ctx, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	ri, err := infoWithin(lr, ctx, Auth{})
	if err != nil {
		t.Fatal(err)
	}
	_, mport := hostPort(t, master)
	_, rport := hostPort(t, replica)
	if mi.Role != RoleMaster || len(mi.RunID) != 40 || len(mi.ConnectedReplicas) != 1 || mi.ConnectedReplicas[0].Port != rport {
		t.Fatalf("master INFO = %+v", mi)
	}
	if ri.Role != RoleSlave || ri.MasterPort != mport || !ri.MasterLinkUp() {
		t.Fatalf("replica INFO = %+v", ri)
	}

	fake := startFakeRedis(t, func([]string) string { return "-NOAUTH Authentication required.\r\n" })
	lf := newTestLink(fake.Addr())
	defer lf.close()
	if _, err := infoWithin(lf, ctx, Auth{}); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("INFO refused: err = %v", err)
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		wire string
		want any
		err  bool
	}{
		{"+PONG\r\n", "PONG", false},
		{":42\r\n", "42", false},
		{"-ERR x\r\n", replyError("ERR x"), false},
		{"$5\r\nhello\r\n", "hello", false},
		{"$0\r\n\r\n", "", false},
		{"$-1\r\n", "", false},
		{"*2\r\n$1\r\na\r\n:1\r\n", "", false},
		{"*-1\r\n", "", false},
		{"$5\r\nhel", nil, true},
		{"$5\r\nhelloXY", nil, true},
		{"$-2\r\n", nil, true},
		{"$99999999999\r\n", nil, true},
		{"*x\r\n", nil, true},
		{"!3\r\nabc\r\n", nil, true},
		{"+PONG\n", nil, true},
		{"\r\n", nil, true},
		{"", nil, true},
	} {
		got, err := readReply(bufio.NewReader(strings.NewReader(tc.wire)))
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("readReply(%q) = %#v, %v; want %#v, error %v", tc.wire, got, err, tc.want, tc.err)
		}
		if err != nil && errors.Is(err, io.EOF) && tc.wire != "" {
			t.Errorf("readReply(%q): a truncated reply must not look like a clean EOF: %v", tc.wire, err)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+PONG\r\n", "$5\r\nhello\r\n", "*2\r\n$1\r\na\r\n:1\r\n", "-ERR\r\n", "$-1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(strings.NewReader(string(b)))
		for range 4 {
			if _, err := readReply(r); err != nil {
				return
			}
		}
	})
}
