package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	"github.com/redis/go-redis/v9"
)

const testClientName = "raftinel-test"

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newTestConn(t *testing.T, addr string, auth Auth) *Conn {
	t.Helper()
	c, err := NewConn(ConnConfig{Addr: addr, Auth: auth, ClientName: testClientName, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// clientID is the server-side id of the connection c's next command uses.
func clientID(t *testing.T, ctx context.Context, c *Conn) int64 {
	t.Helper()
	id, err := c.client.Do(ctx, "CLIENT", "ID").Int64()
	if err != nil {
		t.Fatalf("CLIENT ID: %v", err)
	}
	return id
}

func hostPort(t *testing.T, s *redistest.Server) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

type fakeRedisError string

func (e fakeRedisError) Error() string { return string(e) }
func (fakeRedisError) RedisError()     {}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassifyPing(t *testing.T) {
	for _, tc := range []struct {
		name           string
		reply          string
		err            error
		valid, replied bool
		text           string
	}{
		{"pong", "PONG", nil, true, true, "PONG"},
		{"unexpected status", "OK", nil, false, true, "OK"},
		{"loading", "", fakeRedisError("LOADING Redis is loading the dataset in memory"), true, true, "LOADING Redis is loading the dataset in memory"},
		{"masterdown", "", fakeRedisError("MASTERDOWN Link with MASTER is down"), true, true, "MASTERDOWN Link with MASTER is down"},
		{"misconf", "", fakeRedisError("MISCONF Errors writing to the AOF file"), false, true, "MISCONF Errors writing to the AOF file"},
		{"busy", "", fakeRedisError("BUSY Redis is busy running a script"), false, true, "BUSY Redis is busy running a script"},
		{"noauth during handshake", "", fmt.Errorf("failed to initialize connection options: %w", fakeRedisError("NOAUTH Authentication required.")), false, true, "NOAUTH Authentication required."},
		{"timeout", "", &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, false, false, "read tcp: i/o timeout"},
		{"closed", "", redis.ErrClosed, false, false, redis.ErrClosed.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classifyPing(tc.reply, tc.err)
			if got.Valid != tc.valid || got.Replied != tc.replied || got.Reply != tc.text {
				t.Fatalf("classifyPing = %+v, want valid=%v replied=%v reply=%q", got, tc.valid, tc.replied, tc.text)
			}
			if (got.Err == nil) != (tc.text == "PONG") {
				t.Fatalf("Err = %v; want nil exactly for PONG", got.Err)
			}
		})
	}
}

// TestPingRepliesThroughGoRedis drives the classification end to end with
// replies a real server gives only in rare states, and checks that go-redis
// does not retry them behind our back (one PING per call).
func TestPingRepliesThroughGoRedis(t *testing.T) {
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
			fake := startFakeRedis(t, func([]string) string { return tc.wire })
			c := newTestConn(t, fake.Addr(), Auth{})
			ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
			defer cancel()
			res := c.Ping(ctx)
			if res.Valid != tc.valid || !res.Replied {
				t.Fatalf("Ping = %+v, want valid=%v replied", res, tc.valid)
			}
			if want := strings.TrimRight(tc.wire[1:], "\r\n"); res.Reply != want {
				t.Fatalf("Reply = %q, want %q", res.Reply, want)
			}
			if n := len(fake.received()); n != 1 {
				t.Fatalf("the server saw %d commands (%v), want exactly one PING", n, fake.received())
			}
		})
	}
}

func TestPingRetriesOnceWhenTheServerHungUp(t *testing.T) {
	var mu sync.Mutex
	pings := 0
	fake := startFakeRedis(t, func([]string) string {
		mu.Lock()
		defer mu.Unlock()
		pings++
		if pings%2 == 1 {
			return "" // what a connection closed by CLIENT KILL looks like
		}
		return "+PONG\r\n"
	})
	c := newTestConn(t, fake.Addr(), Auth{})
	if res := c.Ping(testCtx(t)); !res.Valid {
		t.Fatalf("Ping = %+v, want the retry's PONG", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if pings != 2 {
		t.Fatalf("%d PINGs sent, want 2", pings)
	}
}

func TestPingRealServer(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	c := newTestConn(t, s.Addr(), Auth{})
	ctx := testCtx(t)
	if res := c.Ping(ctx); !res.Valid || !res.Replied || res.Reply != "PONG" || res.Err != nil {
		t.Fatalf("Ping = %+v", res)
	}
	// The connection carries the name we gave it.
	name, err := c.client.Do(ctx, "CLIENT", "GETNAME").Text()
	if err != nil || name != testClientName {
		t.Fatalf("CLIENT GETNAME = %q, %v", name, err)
	}

	s.Kill()
	res := c.Ping(ctx)
	if res.Valid || res.Replied || res.Err == nil {
		t.Fatalf("Ping of a killed server = %+v, want invalid without reply", res)
	}
}

func TestPingAuth(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.RequirePass("hunter2"))
	ctx := testCtx(t)

	res := newTestConn(t, s.Addr(), Auth{}).Ping(ctx)
	if res.Valid || !res.Replied || !strings.HasPrefix(res.Reply, "NOAUTH") {
		t.Fatalf("Ping without auth = %+v, want an invalid NOAUTH reply", res)
	}
	res = newTestConn(t, s.Addr(), Auth{Pass: "wrong"}).Ping(ctx)
	if res.Valid || !res.Replied || !strings.HasPrefix(res.Reply, "WRONGPASS") {
		t.Fatalf("Ping with a wrong password = %+v, want an invalid WRONGPASS reply", res)
	}
	if res := newTestConn(t, s.Addr(), Auth{Pass: "hunter2"}).Ping(ctx); !res.Valid {
		t.Fatalf("Ping with the password = %+v", res)
	}
	if res := newTestConn(t, s.Addr(), Auth{User: "default", Pass: "hunter2"}).Ping(ctx); !res.Valid {
		t.Fatalf("Ping as user default = %+v", res)
	}
}

func TestPingPausedServerTimesOut(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	c := newTestConn(t, s.Addr(), Auth{})
	if res := c.Ping(testCtx(t)); !res.Valid {
		t.Fatalf("Ping = %+v", res)
	}
	s.Pause()
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := c.Ping(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Ping of a stopped server took %v with a 300ms deadline", took)
	}
	if res.Valid || res.Replied {
		t.Fatalf("Ping of a stopped server = %+v, want a timeout", res)
	}
	s.Resume()
	testwait.Until(t, 10*time.Second, "a valid Ping after SIGCONT", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Valid
	})
}

func TestPingMasterDownIsValid(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()), redistest.Args("replica-serve-stale-data no"))
	redistest.WaitReplicating(t, replica, master)
	master.Kill()
	c := newTestConn(t, replica.Addr(), Auth{})
	testwait.Until(t, 10*time.Second, "the replica of a dead master to answer MASTERDOWN", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res := c.Ping(ctx)
		return res.Valid && strings.HasPrefix(res.Reply, "MASTERDOWN")
	})
}

func TestPingLoadingIsValid(t *testing.T) {
	t.Parallel()
	// key-load-delay (microseconds per key) keeps the server loading long
	// enough to be seen; the small event interval lets it answer meanwhile.
	s := redistest.Start(t, redistest.Args("key-load-delay 1000", "loading-process-events-interval-bytes 1024"))
	ctx := testCtx(t)
	pipe := s.Client().Pipeline()
	for i := range 3000 {
		pipe.Set(ctx, "key:"+strconv.Itoa(i), "v", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Client().Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	c := newTestConn(t, s.Addr(), Auth{})
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res := c.Ping(pingCtx)
	if !res.Valid || !strings.HasPrefix(res.Reply, "LOADING") {
		t.Fatalf("Ping while loading = %+v, want a valid LOADING reply", res)
	}
	testwait.Until(t, 30*time.Second, "the server to finish loading", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Reply == "PONG"
	})
}

func TestNewConnValidates(t *testing.T) {
	for _, cfg := range []ConnConfig{
		{Addr: "localhost"},
		{Addr: ":6379"},
		{Addr: "localhost:0"},
		{Addr: "localhost:65536"},
		{Addr: "localhost:http"},
		{Addr: "localhost:6379", ClientName: "has space"},
		{Addr: "localhost:6379", ClientName: "new\nline"},
	} {
		if c, err := NewConn(cfg); err == nil {
			c.Close()
			t.Errorf("NewConn(%+v) succeeded", cfg)
		}
	}
}

func TestInfoMasterAndReplica(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()), redistest.ReplicaPriority(5))
	redistest.WaitReplicating(t, replica, master)
	ctx := testCtx(t)
	_, masterPort := hostPort(t, master)
	_, replicaPort := hostPort(t, replica)

	mc := newTestConn(t, master.Addr(), Auth{})
	var mi Info
	testwait.For(t, 10*time.Second, "the master to list its replica online", func() error {
		var err error
		if mi, err = mc.Info(ctx); err != nil {
			return err
		}
		if len(mi.ConnectedReplicas) != 1 || mi.ConnectedReplicas[0].State != "online" {
			return fmt.Errorf("master lists replicas %+v", mi.ConnectedReplicas)
		}
		return nil
	})
	if mi.Role != RoleMaster || len(mi.RunID) != 40 || mi.RedisVersion == "" || mi.MasterFailoverState != "no-failover" {
		t.Fatalf("master Info = %+v", mi)
	}
	if r := mi.ConnectedReplicas[0]; r.IP != "127.0.0.1" || r.Port != replicaPort {
		t.Fatalf("master lists replica %+v, want port %d", r, replicaPort)
	}

	ri, err := newTestConn(t, replica.Addr(), Auth{}).Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ri.Role != RoleSlave || ri.MasterHost != "127.0.0.1" || ri.MasterPort != masterPort ||
		!ri.MasterLinkUp() || ri.HasMasterLinkDownSince || ri.ReplicaPriority != 5 || !ri.ReplicaAnnounced {
		t.Fatalf("replica Info = %+v", ri)
	}
	if ri.RunID == mi.RunID {
		t.Fatal("master and replica report the same run id")
	}

	master.Kill()
	testwait.For(t, 10*time.Second, "the replica to see its master's link down", func() error {
		ri, err := newTestConn(t, replica.Addr(), Auth{}).Info(ctx)
		if err != nil {
			return err
		}
		if ri.MasterLinkUp() || !ri.HasMasterLinkDownSince {
			return fmt.Errorf("replica Info after the master died: %+v", ri)
		}
		return nil
	})
}

// FenceInfo reads what the fence needs, on its own connection or, while
// that one is busy, through the pool, with the same result; a closed Conn
// refuses.
func TestFenceInfoReadsTheReplicationFields(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	ctx := testCtx(t)
	_, replicaPort := hostPort(t, replica)
	mc := newTestConn(t, master.Addr(), Auth{})
	check := func(fi Info) error {
		if fi.Role != RoleMaster || fi.Loading || len(fi.ConnectedReplicas) != 1 {
			return fmt.Errorf("FenceInfo = %+v", fi)
		}
		if r := fi.ConnectedReplicas[0]; r.IP != "127.0.0.1" || r.Port != replicaPort || r.State != "online" {
			return fmt.Errorf("FenceInfo lists replica %+v, want port %d online", r, replicaPort)
		}
		return nil
	}
	testwait.For(t, 10*time.Second, "FenceInfo to list the replica online", func() error {
		fi, err := mc.FenceInfo(ctx)
		if err != nil {
			return err
		}
		return check(fi)
	})
	mc.infoMu.Lock() // the own connection busy: the pool serves
	fi, err := mc.FenceInfo(ctx)
	mc.infoMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := check(fi); err != nil {
		t.Fatal(err)
	}
	if err := mc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := mc.FenceInfo(ctx); err == nil {
		t.Fatal("FenceInfo on a closed Conn succeeded")
	}
	if _, err := mc.Info(ctx); err == nil {
		t.Fatal("Info on a closed Conn succeeded")
	}
}

func TestPromote(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	ctx := testCtx(t)

	// A plain client and a subscriber, both of which must be disconnected.
	bystander := redis.NewClient(&redis.Options{Addr: replica.Addr(), Protocol: 2, DisableIdentity: true, ClientName: "bystander", MaxRetries: -1})
	defer bystander.Close()
	if err := bystander.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	sub := bystander.Subscribe(ctx, "news")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	// Another coordinator's prober: killed like any client, it must still
	// PING validly afterwards.
	prober, err := NewConn(ConnConfig{Addr: replica.Addr(), ClientName: "raftinel-prober"})
	if err != nil {
		t.Fatal(err)
	}
	defer prober.Close()
	if res := prober.Ping(ctx); !res.Valid {
		t.Fatalf("prober Ping = %+v", res)
	}

	c := newTestConn(t, replica.Addr(), Auth{})
	ownID := clientID(t, ctx, c)
	if n := countClients(t, ctx, c, "name=bystander"); n != 2 {
		t.Fatalf("%d bystander connections before Promote, want 2", n)
	}

	// A fence the replica kept from its days as a master goes in the
	// promotion's transaction.
	if err := replica.Client().ConfigSet(ctx, "min-replicas-to-write", "2").Err(); err != nil {
		t.Fatal(err)
	}
	info, err := c.Promote(ctx, PromoteOptions{Unfence: true})
	if err != nil || info.Role != RoleMaster {
		t.Fatalf("Promote: %+v, %v", info, err)
	}
	if got := replica.Client().ConfigGet(ctx, "min-replicas-to-write").Val()["min-replicas-to-write"]; got != "0" {
		t.Fatalf("min-replicas-to-write %q after Promote with Unfence, want 0", got)
	}
	if id := clientID(t, ctx, c); id != ownID {
		t.Fatalf("our connection was replaced (client id %d -> %d)", ownID, id)
	}
	if n := countClients(t, ctx, c, "name=bystander") + countClients(t, ctx, c, "name=raftinel-prober"); n != 0 {
		t.Fatalf("%d bystander connections survived Promote", n)
	}
	if res := prober.Ping(ctx); !res.Valid {
		t.Fatalf("prober Ping after its connection was killed = %+v", res)
	}
	conf, err := os.ReadFile(replica.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), "\nreplicaof") {
		t.Fatalf("CONFIG REWRITE did not drop replicaof:\n%s", conf)
	}
	if info, err := c.Promote(ctx, PromoteOptions{}); err != nil || info.Role != RoleMaster {
		t.Fatalf("second Promote: %+v, %v", info, err)
	}
	if err := master.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := replica.Client().Set(ctx, "k", "mine", 0).Err(); err != nil {
		t.Fatalf("writing to the promoted replica: %v", err)
	}
}

// RefusesConnections is true only where nothing listens: a killed
// server refuses, a live one and a silent listener (a frozen process, or
// a firewall that drops) do not.
func TestRefusesConnections(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := redistest.Start(t)
	c := newTestConn(t, s.Addr(), Auth{})
	if c.RefusesConnections(ctx) {
		t.Fatal("a live server refuses connections")
	}
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if newTestConn(t, silent.Addr().String(), Auth{}).RefusesConnections(ctx) {
		t.Fatal("a listener that never answers refuses connections")
	}
	s.Kill()
	if !c.RefusesConnections(ctx) {
		t.Fatal("a killed server does not refuse connections")
	}
}

func countClients(t *testing.T, ctx context.Context, c *Conn, field string) int {
	t.Helper()
	list, err := c.client.Do(ctx, "CLIENT", "LIST").Text()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if f == field {
				n++
			}
		}
	}
	return n
}

func TestReplicaOfRepoints(t *testing.T) {
	t.Parallel()
	a := redistest.Start(t)
	b := redistest.Start(t)
	replica := redistest.Start(t)
	ctx := testCtx(t)
	c := newTestConn(t, replica.Addr(), Auth{})

	host, port := hostPort(t, a)
	if err := c.ReplicaOf(ctx, host, port); err != nil {
		t.Fatalf("ReplicaOf a: %v", err)
	}
	redistest.WaitReplicating(t, replica, a)
	if err := c.ReplicaOf(ctx, host, port); err != nil {
		t.Fatalf("repeated ReplicaOf a: %v", err)
	}

	host, port = hostPort(t, b)
	if err := c.ReplicaOf(ctx, host, port); err != nil {
		t.Fatalf("ReplicaOf b: %v", err)
	}
	redistest.WaitReplicating(t, replica, b)
	// The rewritten config follows b, so a restart keeps the new master.
	replica.Restart()
	redistest.WaitReplicating(t, replica, b)
}

func TestReplicaOfRefusesSelf(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	ctx := testCtx(t)
	c := newTestConn(t, s.Addr(), Auth{})
	_, port := hostPort(t, s)
	for _, host := range []string{"127.0.0.1", "localhost", "LOCALHOST", "::1"} {
		if err := c.ReplicaOf(ctx, host, port); !errors.Is(err, ErrSelfReplication) {
			t.Errorf("ReplicaOf(%s, own port) = %v, want ErrSelfReplication", host, err)
		}
		if err := c.FailoverTo(ctx, host, port, time.Second); !errors.Is(err, ErrSelfReplication) {
			t.Errorf("FailoverTo(%s, own port) = %v, want ErrSelfReplication", host, err)
		}
	}
	if role, _, err := s.Role(ctx); err != nil || role != "master" {
		t.Fatalf("role after refused commands = %q, %v", role, err)
	}
}

func TestCheckTarget(t *testing.T) {
	c, err := NewConn(ConnConfig{Addr: "10.1.2.3:6379"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testCtx(t)
	for _, tc := range []struct {
		host string
		port int
		self bool
		bad  bool
	}{
		{"10.1.2.3", 6379, true, false},
		{"::ffff:10.1.2.3", 6379, true, false},
		{"127.0.0.1", 6379, true, false}, // the instance would connect to itself
		{"0.0.0.0", 6379, true, false},
		{"10.1.2.3", 6380, false, false},
		{"10.1.2.4", 6379, false, false},
		{"", 6379, false, true},
		{"10.1.2.4", 0, false, true},
		{"10.1.2.4", 70000, false, true},
	} {
		err := c.checkTarget(ctx, tc.host, tc.port)
		switch {
		case tc.self && !errors.Is(err, ErrSelfReplication):
			t.Errorf("checkTarget(%s, %d) = %v, want ErrSelfReplication", tc.host, tc.port, err)
		case tc.bad && err == nil:
			t.Errorf("checkTarget(%s, %d) accepted a bad target", tc.host, tc.port)
		case !tc.self && !tc.bad && err != nil:
			t.Errorf("checkTarget(%s, %d) = %v", tc.host, tc.port, err)
		}
	}
}

func TestReconfigureErrors(t *testing.T) {
	var execReply string
	fake := startFakeRedis(t, func(args []string) string {
		switch strings.ToUpper(args[0]) {
		case "MULTI":
			return "+OK\r\n"
		case "EXEC":
			return execReply
		default:
			return "+QUEUED\r\n"
		}
	})
	c := newTestConn(t, fake.Addr(), Auth{})
	ctx := testCtx(t)

	const infoReply = "$28\r\n# Replication\r\nrole:master\r\n\r\n"
	execReply = "*6\r\n+OK\r\n+OK\r\n-ERR The server is running without a config file\r\n:3\r\n:0\r\n" + infoReply
	info, err := c.Promote(ctx, PromoteOptions{Unfence: true})
	if err != nil || info.Role != RoleMaster {
		t.Fatalf("Promote on a server without a config file: %+v, %v", info, err)
	}
	want := [][]string{
		{"MULTI"}, {"CONFIG", "SET", "min-replicas-to-write", "0"}, {"REPLICAOF", "NO", "ONE"}, {"CONFIG", "REWRITE"},
		{"CLIENT", "KILL", "TYPE", "normal"}, {"CLIENT", "KILL", "TYPE", "pubsub"}, {"INFO", "replication"}, {"EXEC"},
	}
	got := fake.received()
	for _, cmd := range got {
		cmd[0] = strings.ToUpper(cmd[0])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("commands sent:\n got %q\nwant %q", got, want)
	}

	execReply = "*6\r\n-ERR min-replicas-to-write is odd\r\n+OK\r\n+OK\r\n:0\r\n:0\r\n" + infoReply
	if _, err := c.Promote(ctx, PromoteOptions{Unfence: true}); err == nil || !strings.Contains(err.Error(), "applied, but CONFIG SET min-replicas-to-write 0 failed") {
		t.Fatalf("Promote with a failing unfence = %v", err)
	}
	execReply = "*5\r\n+OK\r\n+OK\r\n:0\r\n:0\r\n$5\r\nodd:1\r\n"
	if _, err := c.Promote(ctx, PromoteOptions{}); err == nil || !strings.Contains(err.Error(), "applied, but its INFO") {
		t.Fatalf("Promote whose INFO has no role = %v", err)
	}

	execReply = "*5\r\n+OK\r\n-ERR Rewriting config file: Permission denied\r\n:0\r\n:0\r\n" + infoReply
	if err := c.ReplicaOf(ctx, "10.9.9.9", 6379); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Fatalf("ReplicaOf with a failing CONFIG REWRITE = %v", err)
	}
	execReply = "*5\r\n-ERR something odd\r\n+OK\r\n:0\r\n:0\r\n" + infoReply
	if _, err := c.Promote(ctx, PromoteOptions{}); err == nil || !strings.Contains(err.Error(), "something odd") {
		t.Fatalf("Promote with a failing REPLICAOF = %v", err)
	}
	execReply = "-EXECABORT Transaction discarded because of previous errors.\r\n"
	if _, err := c.Promote(ctx, PromoteOptions{}); err == nil || !strings.Contains(err.Error(), "EXECABORT") {
		t.Fatalf("Promote with EXECABORT = %v", err)
	}
}

func TestFailoverToSwapsRoles(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	ctx := testCtx(t)
	if err := master.Client().Set(ctx, "before", "failover", 0).Err(); err != nil {
		t.Fatal(err)
	}

	c := newTestConn(t, master.Addr(), Auth{})
	host, port := hostPort(t, replica)
	if err := c.FailoverTo(ctx, host, port, 10*time.Second); err != nil {
		t.Fatalf("FailoverTo: %v", err)
	}
	redistest.WaitRole(t, replica, "master")
	redistest.WaitReplicating(t, master, replica)
	if v, err := replica.Client().Get(ctx, "before").Result(); err != nil || v != "failover" {
		t.Fatalf("the write before the failover on the new master: %q, %v", v, err)
	}
	if err := c.FailoverAbort(ctx); err != nil {
		t.Fatalf("FailoverAbort with nothing in progress: %v", err)
	}
}

func TestFailoverAbort(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	ctx := testCtx(t)
	c := newTestConn(t, master.Addr(), Auth{})

	// A frozen replica never acknowledges the last write, so the failover
	// stays in waiting-for-sync until we abort it.
	replica.Pause()
	defer replica.Resume()
	if err := master.Client().Set(ctx, "unacked", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(t, replica)
	if err := c.FailoverTo(ctx, host, port, time.Minute); err != nil {
		t.Fatalf("FailoverTo: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.MasterFailoverState != "waiting-for-sync" {
		t.Fatalf("during FAILOVER: %+v, %v", info, err)
	}
	if err := c.FailoverAbort(ctx); err != nil {
		t.Fatalf("FailoverAbort: %v", err)
	}
	info, err = c.Info(ctx)
	if err != nil || info.MasterFailoverState != "no-failover" || info.Role != RoleMaster {
		t.Fatalf("after FailoverAbort: %+v, %v", info, err)
	}
	// Writes flow again once the failover is aborted.
	if err := master.Client().Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestPauseWritesBlocksUntilUnpause(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	ctx := testCtx(t)
	c := newTestConn(t, s.Addr(), Auth{})
	writer := redis.NewClient(&redis.Options{Addr: s.Addr(), Protocol: 2, DisableIdentity: true, ReadTimeout: 30 * time.Second, MaxRetries: -1})
	defer writer.Close()

	if err := c.PauseWrites(ctx, time.Minute); err != nil {
		t.Fatalf("PauseWrites: %v", err)
	}
	written := make(chan error, 1)
	go func() { written <- writer.Set(ctx, "k", "v", 0).Err() }()
	testwait.For(t, 10*time.Second, "the SET to be held by the pause", func() error {
		f, err := s.Info(ctx, "clients")
		if err != nil {
			return err
		}
		if f["blocked_clients"] != "1" {
			return fmt.Errorf("blocked_clients:%s, want the SET held", f["blocked_clients"])
		}
		return nil
	})
	select {
	case err := <-written:
		t.Fatalf("SET completed during the pause: %v", err)
	default:
	}
	// Reads are not paused.
	if err := s.Client().Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET during a write pause: %v", err)
	}
	if err := c.Unpause(ctx); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	select {
	case err := <-written:
		if err != nil {
			t.Fatalf("SET after Unpause: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SET still blocked 10s after Unpause")
	}
	if err := c.PauseWrites(ctx, 0); err == nil {
		t.Fatal("PauseWrites(0) accepted")
	}
}

func TestSetFence(t *testing.T) {
	redistest.Require(t)
	s := redistest.Start(t)
	c, err := NewConn(ConnConfig{Addr: s.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		n   int
		lag int64
	}{{2, 2}, {2, 2}, {1, 5}, {0, 2}} {
		if err := c.SetFence(ctx, tc.n, tc.lag); err != nil {
			t.Fatal(err)
		}
		got, err := s.Client().ConfigGet(ctx, "min-replicas-*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if got["min-replicas-to-write"] != strconv.Itoa(tc.n) || got["min-replicas-max-lag"] != strconv.FormatInt(tc.lag, 10) {
			t.Fatalf("after SetFence(%d, %d): %v", tc.n, tc.lag, got)
		}
		// The fence's INFO shows whether a fence is in force: how the
		// leader sees a master that lost it.
		info, err := c.FenceInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := tc.n > 0; info.MinReplicasOn != want {
			t.Fatalf("after SetFence(%d, %d): MinReplicasOn %v, want %v", tc.n, tc.lag, info.MinReplicasOn, want)
		}
		if has, err := c.HasFence(ctx, tc.n, tc.lag); err != nil || !has {
			t.Fatalf("HasFence(%d, %d) after setting it: %v, %v; want true", tc.n, tc.lag, has, err)
		}
		if has, err := c.HasFence(ctx, tc.n+1, tc.lag); err != nil || has {
			t.Fatalf("HasFence(%d, %d) with %d set: %v, %v; want false", tc.n+1, tc.lag, tc.n, has, err)
		}
	}
	if err := c.SetFence(ctx, -1, 2); err == nil {
		t.Fatal("a negative count was accepted")
	}
}

// A server with CONFIG renamed away (rename-command CONFIG "") refuses the
// whole MULTI at EXEC when CONFIG REWRITE is queued in it; the role change
// is then made without the rewrite, as an operator who hid CONFIG asks,
// and the error says a restart would undo it.
func TestReconfigureWithConfigRenamed(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, redistest.Args(`rename-command CONFIG ""`))
	replica := redistest.Start(t, redistest.Args(`rename-command CONFIG ""`), redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	ctx := testCtx(t)
	c := newTestConn(t, replica.Addr(), Auth{})
	info, err := c.Promote(ctx, PromoteOptions{Unfence: true})
	if !errors.Is(err, ErrNotRewritten) || info.Role != RoleMaster {
		t.Fatalf("Promote with CONFIG renamed = %+v, %v, want role master and ErrNotRewritten", info, err)
	}
	if role, err := replica.Client().Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("after Promote the instance reports %v (%v)", role, err)
	}
	mh, mp, _ := strings.Cut(master.Addr(), ":")
	port, _ := strconv.Atoi(mp)
	if err := c.ReplicaOf(ctx, mh, port); !errors.Is(err, ErrNotRewritten) {
		t.Fatalf("ReplicaOf with CONFIG renamed = %v, want ErrNotRewritten", err)
	}
	redistest.WaitReplicating(t, replica, master)
}
