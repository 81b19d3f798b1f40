package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	"github.com/raftinel/raftinel/server/sentinel"
	"github.com/redis/go-redis/v9"
)

func sentinelClient(t testing.TB, nd *inmemNode) *redis.SentinelClient {
	sc := redis.NewSentinelClient(&redis.Options{Addr: nd.srv.SentinelAddr(), DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// sentinelsRegistered waits until every node's FSM holds every node's
// bound Sentinel address, so SENTINELS can list all peers.
func (c *testCluster) sentinelsRegistered() {
	c.t.Helper()
	testwait.For(c.t, 10*time.Second, "every node's Sentinel address registered", func() error {
		for _, nd := range c.nodes {
			for _, other := range c.nodes {
				n, ok := nd.srv.FSM().Node(other.id)
				if !ok || n.GetSentinelAddress() != other.srv.SentinelAddr() {
					return fmt.Errorf("%s has %s's node record %v, want Sentinel address %s", nd.id, other.id, n, other.srv.SentinelAddr())
				}
			}
		}
		return nil
	})
}

func hostPort(ip, port string) string { return net.JoinHostPort(ip, port) }

// matchesFSM checks what one node's Sentinel endpoint says about a master
// against the node's own FSM: MASTERS, MASTER, REPLICAS and SENTINELS.
func matchesFSM(ctx context.Context, c *testCluster, nd *inmemNode, sc *redis.SentinelClient, name string) error {
	want, _, ok := nd.srv.FSM().Master(name)
	if !ok {
		return fmt.Errorf("%s's FSM has no master %s", nd.id, name)
	}
	masters, err := sc.Masters(ctx).Result()
	if err != nil || len(masters) != 1 {
		return fmt.Errorf("MASTERS: %v %v", masters, err)
	}
	m, err := sc.Master(ctx, name).Result()
	if err != nil {
		return fmt.Errorf("MASTER: %w", err)
	}
	if got := hostPort(m["ip"], m["port"]); got != want.GetAddress() {
		return fmt.Errorf("MASTER says %s, the FSM %s", got, want.GetAddress())
	}
	if m["num-slaves"] != strconv.Itoa(len(want.GetReplicas())) || m["config-epoch"] != strconv.FormatUint(want.GetEpoch(), 10) {
		return fmt.Errorf("MASTER num-slaves %s config-epoch %s, the FSM %d replicas at epoch %d", m["num-slaves"], m["config-epoch"], len(want.GetReplicas()), want.GetEpoch())
	}
	if m["num-other-sentinels"] != strconv.Itoa(len(c.nodes)-1) {
		return fmt.Errorf("MASTER num-other-sentinels %s, want %d", m["num-other-sentinels"], len(c.nodes)-1)
	}
	replicas, err := sc.Replicas(ctx, name).Result()
	if err != nil {
		return fmt.Errorf("REPLICAS: %w", err)
	}
	var got, exp []string
	for _, r := range replicas {
		got = append(got, hostPort(r["ip"], r["port"]))
	}
	for _, r := range want.GetReplicas() {
		exp = append(exp, r.GetAddress())
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		return fmt.Errorf("REPLICAS %v, the FSM %v", got, exp)
	}
	sentinels, err := sc.Sentinels(ctx, name).Result()
	if err != nil {
		return fmt.Errorf("SENTINELS: %w", err)
	}
	got, exp = nil, nil
	for _, s := range sentinels {
		got = append(got, s["name"]+"@"+hostPort(s["ip"], s["port"]))
	}
	for _, n := range nd.srv.FSM().Nodes() {
		if n.GetId() != nd.id {
			exp = append(exp, sentinel.RunID(n.GetId())+"@"+n.GetSentinelAddress())
		}
	}
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		return fmt.Errorf("SENTINELS %v, the FSM %v", got, exp)
	}
	return nil
}

// pushRecorder is a raw RESP3 subscriber: it keeps every byte the server
// sends, so a test can look for an exact push frame.
type pushRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func subscribeRESP3(t testing.TB, addr, channel string) *pushRecorder {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	p := &pushRecorder{}
	go func() {
		r := bufio.NewReader(nc)
		chunk := make([]byte, 4096)
		for {
			n, err := r.Read(chunk)
			p.mu.Lock()
			p.buf.Write(chunk[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	for _, args := range [][]string{{"HELLO", "3"}, {"SUBSCRIBE", channel}} {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := nc.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
	}
	confirm := fmt.Sprintf(">3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n", len(channel), channel)
	testwait.For(t, 10*time.Second, "RESP3 SUBSCRIBE confirmed as a push frame", func() error {
		if !p.has(confirm) {
			return fmt.Errorf("received %q", p.String())
		}
		return nil
	})
	return p
}

func (p *pushRecorder) has(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Contains(p.buf.Bytes(), []byte(s))
}

func (p *pushRecorder) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// redisCLI runs redis-cli against one Sentinel endpoint.
func redisCLI(addr string, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	return string(out), err
}

// Sentinel clients pointed at the three nodes follow a SIGKILL of the
// master: go-redis's failover client ends up writing to the promoted
// replica, every node describes the group as its FSM does, a RESP3
// subscriber gets +switch-master as a push frame, and redis-cli reads the
// new address.
func TestSentinelClientsFollowFailover(t *testing.T) {
	redistest.Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli is not installed: run make redis")
	}
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	c.sentinelsRegistered()
	g := startGroup(t, 100, 100)
	c.monitorGroup(t, "mymaster", g, 2)
	ctx := ctxT(t, 3*time.Minute)

	var addrs []string
	for _, nd := range c.nodes {
		addrs = append(addrs, nd.srv.SentinelAddr())
		sc := sentinelClient(t, nd)
		testwait.For(t, 20*time.Second, nd.id+"'s Sentinel view matches its FSM", func() error { return matchesFSM(ctx, c, nd, sc, "mymaster") })
	}
	for _, nd := range c.nodes {
		// The link, ping and role fields come from this node's own probes.
		sc := sentinelClient(t, nd)
		testwait.For(t, 20*time.Second, nd.id+" reports its own probe view of the master", func() error {
			m, err := sc.Master(ctx, "mymaster").Result()
			if err != nil {
				return err
			}
			if m["flags"] != "master" || m["role-reported"] != "master" || m["info-refresh"] == "0" || m["runid"] == "" {
				return fmt.Errorf("MASTER %v", m)
			}
			return nil
		})
	}
	fc := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: "mymaster", SentinelAddrs: addrs,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1,
	})
	t.Cleanup(func() { _ = fc.Close() })
	write := func(i int) error {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return fc.Set(wctx, "seq", i, 0).Err()
	}
	seq := 1
	if err := write(seq); err != nil {
		t.Fatalf("first write through the failover client: %v", err)
	}
	if v, err := g.master.Client().Get(ctx, "seq").Result(); err != nil || v != "1" {
		t.Fatalf("the first write is not on the master: %q %v", v, err)
	}
	sub := subscribeRESP3(t, c.nodes[2].srv.SentinelAddr(), "+switch-master")

	old := g.master.Addr()
	g.master.Kill()
	// Keep writing sequential values until every node serves the new master
	// and ten writes after that have been acknowledged.
	var promoted *redistest.Server
	lastOK, failed, promotedSeq := 0, 0, 0
	deadline := time.Now().Add(90 * time.Second)
	for promoted == nil || lastOK < promotedSeq+10 {
		if time.Now().After(deadline) {
			t.Fatalf("no ten acknowledged writes to a new master within 90 s (last acknowledged %d, %d failed, promotion seen at %d)", lastOK, failed, promotedSeq)
		}
		seq++
		if err := write(seq); err != nil {
			failed++
			time.Sleep(20 * time.Millisecond)
		} else {
			lastOK = seq
		}
		if promoted == nil {
			if promoted = servedEverywhere(c, g, old); promoted != nil {
				promotedSeq = seq
			}
		}
	}
	if v, err := promoted.Client().Get(ctx, "seq").Result(); err != nil || v != strconv.Itoa(lastOK) {
		t.Fatalf("promoted %s holds seq %q (%v), the last acknowledged write was %d", promoted.Addr(), v, err, lastOK)
	}
	t.Logf("wrote up to %d, %d writes failed during the failover, the last ones on %s", lastOK, failed, promoted.Addr())

	oh, op, _ := net.SplitHostPort(old)
	nh, np, _ := net.SplitHostPort(promoted.Addr())
	payload := fmt.Sprintf("mymaster %s %s %s %s", oh, op, nh, np)
	frame := fmt.Sprintf(">3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%d\r\n%s\r\n", len(payload), payload)
	testwait.For(t, 20*time.Second, "+switch-master pushed to the RESP3 subscriber", func() error {
		if !sub.has(frame) {
			return fmt.Errorf("want %q in %q", frame, sub.String())
		}
		return nil
	})
	for _, nd := range c.nodes {
		sc := sentinelClient(t, nd)
		testwait.For(t, 20*time.Second, nd.id+"'s Sentinel view matches its FSM after the failover", func() error { return matchesFSM(ctx, c, nd, sc, "mymaster") })
		testwait.For(t, 20*time.Second, nd.id+" shows the killed master as a replica that is down", func() error {
			replicas, err := sc.Replicas(ctx, "mymaster").Result()
			if err != nil {
				return err
			}
			for _, r := range replicas {
				if hostPort(r["ip"], r["port"]) == old {
					if r["flags"] != "s_down,slave,disconnected" {
						return fmt.Errorf("old master's flags %q", r["flags"])
					}
					return nil
				}
			}
			return fmt.Errorf("old master %s not among the replicas %v", old, replicas)
		})
		out, err := redisCLI(nd.srv.SentinelAddr(), "SENTINEL", "get-master-addr-by-name", "mymaster")
		if want := nh + "\n" + np + "\n"; err != nil || out != want {
			t.Errorf("redis-cli on %s: %q (%v), want %q", nd.id, out, err, want)
		}
	}
}

// servedEverywhere returns the promoted replica once every node's FSM
// serves it at epoch 1, or nil.
func servedEverywhere(c *testCluster, g *group, old string) *redistest.Server {
	var addr string
	for _, nd := range c.nodes {
		m, _, ok := nd.srv.FSM().Master("mymaster")
		if !ok || m.GetEpoch() != 1 || m.GetAddress() == old || (addr != "" && m.GetAddress() != addr) {
			return nil
		}
		addr = m.GetAddress()
	}
	for _, s := range []*redistest.Server{g.r1, g.r2} {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// Sentinel writes sent to a follower are committed through the leader and
// applied on every node; rejected ones carry Sentinel's error texts.
func TestSentinelWritesOnFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	c.sentinelsRegistered()
	follower := c.followers(leader)[0]
	sc := sentinelClient(t, follower)
	ctx := ctxT(t, time.Minute)

	// Nothing listens on this address; monitoring it is still valid.
	if err := sc.Monitor(ctx, "other", "127.0.0.1", "1", "2").Err(); err != nil {
		t.Fatalf("MONITOR: %v", err)
	}
	everywhere := func(what string, check func(nd *inmemNode) error) {
		t.Helper()
		for _, nd := range c.nodes {
			testwait.For(t, 10*time.Second, what+" on "+nd.id, func() error { return check(nd) })
		}
	}
	quorum := func(q uint32) func(nd *inmemNode) error {
		return func(nd *inmemNode) error {
			m, _, ok := nd.srv.FSM().Master("other")
			if !ok || m.GetSettings().GetQuorum() != q || m.GetAddress() != "127.0.0.1:1" {
				return fmt.Errorf("master %v", m)
			}
			return nil
		}
	}
	everywhere("MONITOR applied", quorum(2))
	if err := sc.Set(ctx, "other", "quorum", "3").Err(); err != nil {
		t.Fatalf("SET quorum 3: %v", err)
	}
	everywhere("SET applied", quorum(3))
	if err := sc.Set(ctx, "other", "ping-period", "150").Err(); err != nil {
		t.Fatalf("SET ping-period 150: %v", err)
	}
	everywhere("SET ping-period applied", func(nd *inmemNode) error {
		if m, _, ok := nd.srv.FSM().Master("other"); !ok || m.GetSettings().GetPingPeriodMs() != 150 {
			return fmt.Errorf("master %v", m)
		}
		return nil
	})
	if err := sc.Set(ctx, "other", "master-reboot-down-after-period", "5000").Err(); err != nil {
		t.Fatalf("SET master-reboot-down-after-period 5000: %v", err)
	}
	everywhere("SET master-reboot-down-after-period applied", func(nd *inmemNode) error {
		m, _, ok := nd.srv.FSM().Master("other")
		if !ok || m.GetSettings().GetMasterRebootDownAfterPeriodMs() != 5000 {
			return fmt.Errorf("master %v", m)
		}
		return nil
	})
	if n, err := sc.Reset(ctx, "oth*").Result(); err != nil || n != 1 {
		t.Errorf("RESET oth*: %d %v", n, err)
	}

	errText := func(cmd redis.Cmder) string {
		if cmd.Err() == nil {
			return "(no error)"
		}
		return cmd.Err().Error()
	}
	for _, tc := range []struct {
		cmd  redis.Cmder
		want string
	}{
		{sc.Set(ctx, "other", "quorum", "0"), "ERR Invalid argument '0' for SENTINEL SET 'quorum'"},
		{sc.Set(ctx, "other", "down-after-milliseconds", "soon"), "ERR Invalid argument 'soon' for SENTINEL SET 'down-after-milliseconds'"},
		{sc.Set(ctx, "other", "no-such-option", "1"), "ERR Unknown option or number of arguments for SENTINEL SET 'no-such-option'"},
		{sc.Set(ctx, "other", "ping-period", "5"), "ERR ping-period must be between 10 and 86400000 milliseconds, got 5 (or 0 for automatic)"},
		{sc.Set(ctx, "other", "master-reboot-down-after-period", "-1"), "ERR Invalid argument '-1' for SENTINEL SET 'master-reboot-down-after-period'"},
		{sc.Set(ctx, "nope", "quorum", "2"), "ERR No such master with that name"},
		{sc.Monitor(ctx, "other", "127.0.0.1", "2", "2"), "ERR Duplicate master name."},
		{sc.Remove(ctx, "nope"), "ERR No such master with that name"},
		{sc.Failover(ctx, "other"), "NOGOODSLAVE No suitable replica to promote"},
		{sc.Failover(ctx, "nope"), "ERR No such master with that name"},
	} {
		if got := errText(tc.cmd); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.cmd.Args(), got, tc.want)
		}
	}
	everywhere("rejected SETs changed nothing", quorum(3))
	auth := redis.NewCmd(ctx, "AUTH", "secret")
	_ = sc.Process(ctx, auth)
	if err := auth.Err(); err == nil || !strings.Contains(err.Error(), "without any password configured") {
		t.Errorf("AUTH without --sentinel-pass: %v", err)
	}

	if err := sc.Remove(ctx, "other").Err(); err != nil {
		t.Fatalf("REMOVE: %v", err)
	}
	everywhere("REMOVE applied", func(nd *inmemNode) error {
		if _, _, ok := nd.srv.FSM().Master("other"); ok {
			return errors.New("still monitored")
		}
		return nil
	})
}

// A stopped node is shown as down by the others' SENTINELS, and CKQUORUM
// counts only the reachable nodes.
func TestSentinelPeerReachability(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	c.sentinelsRegistered()
	ctx := ctxT(t, time.Minute)
	sc := sentinelClient(t, leader)
	if err := sc.Monitor(ctx, "m", "127.0.0.1", "1", "3").Err(); err != nil {
		t.Fatalf("MONITOR: %v", err)
	}
	testwait.For(t, 15*time.Second, "both peers reachable", func() error {
		q, err := sc.CkQuorum(ctx, "m").Result()
		if err != nil || q != "OK 3 usable Sentinels. Quorum and failover authorization can be reached" {
			return fmt.Errorf("CKQUORUM %q %v", q, err)
		}
		return nil
	})
	victim := c.followers(leader)[0]
	c.stop(victim)
	testwait.For(t, 15*time.Second, "the stopped node shown down", func() error {
		sentinels, err := sc.Sentinels(ctx, "m").Result()
		if err != nil {
			return err
		}
		for _, s := range sentinels {
			down := strings.HasPrefix(s["flags"], "s_down,sentinel,disconnected")
			if (s["name"] == sentinel.RunID(victim.id)) != down {
				return fmt.Errorf("SENTINELS %v", sentinels)
			}
		}
		return nil
	})
	err := sc.CkQuorum(ctx, "m").Err()
	if want := "NOQUORUM 2 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master"; err == nil || err.Error() != want {
		t.Errorf("CKQUORUM with one node stopped: %v, want %q", err, want)
	}
}

// With a password, every command but AUTH (and HELLO AUTH) is refused until
// the client authenticates; the advertised address is the bound one.
func TestSentinelPassword(t *testing.T) {
	addr, trans := raft.NewInmemTransport("127.0.0.1:17999") // registered, so host:port
	store := raft.NewInmemStore()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{
		ID: "solo", RaftAddr: string(addr), GRPCListener: lis, Transport: trans,
		LogStore: store, StableStore: store, SnapshotStore: raft.NewInmemSnapshotStore(),
		Bootstrap:    []raft.Server{{Suffrage: raft.Voter, ID: "solo", Address: addr}},
		SentinelAddr: "127.0.0.1:0", SentinelPass: "s3cret", TuneRaft: fastRaft, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	if strings.HasSuffix(srv.SentinelAddr(), ":0") {
		t.Fatalf("advertised Sentinel address %s is not the bound one", srv.SentinelAddr())
	}
	testwait.For(t, 10*time.Second, "the bound Sentinel address registered", func() error {
		if n, ok := srv.FSM().Node("solo"); !ok || n.GetSentinelAddress() != srv.SentinelAddr() {
			return fmt.Errorf("node record %v, want %s", n, srv.SentinelAddr())
		}
		return nil
	})
	ctx := ctxT(t, 20*time.Second)
	anon := redis.NewSentinelClient(&redis.Options{Addr: srv.SentinelAddr(), Protocol: 2})
	t.Cleanup(func() { _ = anon.Close() })
	if err := anon.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("PING without AUTH: %v", err)
	}
	authed := redis.NewSentinelClient(&redis.Options{Addr: srv.SentinelAddr(), Password: "s3cret"})
	t.Cleanup(func() { _ = authed.Close() })
	myID := redis.NewStringCmd(ctx, "SENTINEL", "MYID")
	_ = authed.Process(ctx, myID)
	if id, err := myID.Result(); err != nil || id != sentinel.RunID("solo") {
		t.Errorf("SENTINEL MYID with the password: %q %v", id, err)
	}
}
