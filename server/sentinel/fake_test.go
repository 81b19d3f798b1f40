package sentinel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// fakeBackend is a Backend whose state the test sets directly.
type fakeBackend struct {
	mu        sync.Mutex
	nodeID    string
	st        *fsmv1.State
	changed   chan struct{}
	views     map[string]InstanceView
	peers     []Peer
	tilt      bool
	tiltSince time.Time
	calls     []string
	errs      map[string]error // by method name
	streams   []chan *fsmv1.Event
	bufSize   int
}

func newFake() *fakeBackend {
	return &fakeBackend{
		nodeID: "node-a", st: &fsmv1.State{Masters: map[string]*fsmv1.Master{}},
		changed: make(chan struct{}), views: map[string]InstanceView{}, errs: map[string]error{}, bufSize: 4096,
	}
}

func (f *fakeBackend) MyID() string { return RunID(f.nodeID) }

func (f *fakeBackend) State() *fsmv1.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return proto.Clone(f.st).(*fsmv1.State)
}

func (f *fakeBackend) Changed() (<-chan struct{}, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed, f.st.GetAppliedIndex()
}

// update changes the state and wakes the front end's cache, as Apply does.
func (f *fakeBackend) update(fn func(st *fsmv1.State)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.st)
	f.st.AppliedIndex++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeBackend) setView(addr string, v InstanceView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.views[addr] = v
}

func (f *fakeBackend) Instance(addr string) (InstanceView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.views[addr]
	return v, ok
}

func (f *fakeBackend) setPeers(ps ...Peer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = ps
}

func (f *fakeBackend) Peers(bool) []Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Peer(nil), f.peers...)
}

func (f *fakeBackend) Tilt() (bool, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tilt, f.tiltSince
}

func (f *fakeBackend) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	method, _, _ := strings.Cut(call, " ")
	return f.errs[method]
}

func (f *fakeBackend) setErr(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = err
}

func (f *fakeBackend) lastCall() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeBackend) Monitor(_ context.Context, name, addr string, quorum int) error {
	return f.record(fmt.Sprintf("monitor %s %s %d", name, addr, quorum))
}

func (f *fakeBackend) Remove(_ context.Context, name string) error {
	return f.record("remove " + name)
}

func (f *fakeBackend) Set(_ context.Context, name string, options [][2]string) error {
	return f.record(fmt.Sprintf("set %s %q", name, options))
}

func (f *fakeBackend) Reset(_ context.Context, name string) error {
	return f.record("reset " + name)
}

func (f *fakeBackend) Failover(_ context.Context, name string) error {
	return f.record("failover " + name)
}

func (f *fakeBackend) Events() (<-chan *fsmv1.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan *fsmv1.Event, f.bufSize)
	f.streams = append(f.streams, ch)
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			for i, s := range f.streams {
				if s == ch {
					f.streams = append(f.streams[:i], f.streams[i+1:]...)
					close(ch)
					return
				}
			}
		})
	}
}

// emit delivers an event to every stream without blocking; a stream that is
// full is closed, as the node does to a consumer that falls behind.
func (f *fakeBackend) emit(ev *fsmv1.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.streams[:0]
	for _, ch := range f.streams {
		select {
		case ch <- ev:
			kept = append(kept, ch)
		default:
			close(ch)
		}
	}
	f.streams = kept
}

func (f *fakeBackend) streamCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

// noNotify hides Changed, so the server clones State on every command.
type noNotify struct{ Backend }

// Topology used by most tests: mymaster at 10.0.0.1:6379 with two replicas,
// this node (node-a) and two peers.
const (
	masterAddr   = "10.0.0.1:6379"
	replica1Addr = "10.0.0.2:6380"
	replica2Addr = "10.0.0.3:6381"
)

func topology(f *fakeBackend) {
	now := time.Now()
	f.update(func(st *fsmv1.State) {
		st.Nodes = map[string]*fsmv1.Node{
			"node-a": {Id: "node-a", SentinelAddress: "127.0.0.1:26379"},
			"node-b": {Id: "node-b", SentinelAddress: "127.0.0.1:26380"},
			"node-c": {Id: "node-c", SentinelAddress: "127.0.0.1:26381"},
		}
		st.Masters["mymaster"] = &fsmv1.Master{
			Name: "mymaster", Address: masterAddr, Epoch: 3,
			Settings:             &fsmv1.MasterSettings{Quorum: 2, DownAfterMs: 5000, FailoverTimeoutMs: 60000, ParallelSyncs: 1},
			MonitoredAtUnixNanos: now.Add(-time.Hour).UnixNano(),
			MasterRunId:          strings.Repeat("a", 40),
			Replicas: []*fsmv1.Replica{
				{Address: replica1Addr, RunId: strings.Repeat("b", 40), Role: "slave", MasterHost: "10.0.0.1", MasterPort: 6379,
					MasterLinkUp: true, Priority: 100, Offset: 1234, Announced: true, ObservedAtUnixNanos: now.UnixNano()},
				{Address: replica2Addr, RunId: strings.Repeat("c", 40), Role: "slave", MasterHost: "10.0.0.1", MasterPort: 6379,
					MasterLinkUp: true, Priority: 50, Offset: 1200, Announced: true, ObservedAtUnixNanos: now.UnixNano()},
			},
		}
	})
	f.setView(masterAddr, InstanceView{
		LastOKPingReply: now.Add(-200 * time.Millisecond), LastPingReply: now.Add(-200 * time.Millisecond),
		InfoRefresh: now.Add(-time.Second), RoleReported: "master", RoleReportedTime: now.Add(-time.Minute),
		RunID: strings.Repeat("a", 40),
	})
	f.setView(replica1Addr, InstanceView{
		LastOKPingReply: now.Add(-300 * time.Millisecond), LastPingReply: now.Add(-300 * time.Millisecond),
		InfoRefresh: now.Add(-2 * time.Second), RoleReported: "slave", RoleReportedTime: now.Add(-time.Minute),
		RunID: strings.Repeat("b", 40), MasterHost: "10.0.0.1", MasterPort: 6379, MasterLinkUp: true,
		SlavePriority: 100, SlaveReplOffset: 1234, ReplicaAnnounced: true,
	})
	f.setPeers(
		Peer{ID: "node-b", SentinelAddr: "127.0.0.1:26380", Reachable: true},
		Peer{ID: "node-c", SentinelAddr: "127.0.0.1:26381", Reachable: false},
	)
}

// testLogger sends the server's log to t.Log, so it shows only on failure.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a server for b on a free loopback port until the test ends.
func start(t testing.TB, b Backend, cfg Config) *Server {
	t.Helper()
	return startServing(t, b, cfg, false)
}

// startServing starts a server; goroutines turns its poll loop off, so
// every connection has a goroutine.
func startServing(t testing.TB, b Backend, cfg Config, goroutines bool) *Server {
	t.Helper()
	if cfg.Listener == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listener = ln
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s := New(cfg, b)
	s.noPollLoop = goroutines
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// client is a raw RESP connection that returns replies as their exact bytes.
type client struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func encode(args ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return []byte(b.String())
}

func (c *client) send(args ...string) {
	c.t.Helper()
	if _, err := c.nc.Write(encode(args...)); err != nil {
		c.t.Fatalf("write %q: %v", args, err)
	}
}

// do sends a command and returns its raw reply.
func (c *client) do(args ...string) string {
	c.t.Helper()
	c.send(args...)
	return c.read()
}

func (c *client) read() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	raw, err := readRaw(c.r)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return raw
}

// value sends a command and parses its reply.
func (c *client) value(args ...string) any {
	c.t.Helper()
	v, err := parse(c.do(args...))
	if err != nil {
		c.t.Fatal(err)
	}
	return v
}

// readRaw reads exactly one RESP2/RESP3 reply and returns its bytes.
func readRaw(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return line, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return line, fmt.Errorf("malformed line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', '-', ':', '_', '#', ',', '(':
		return line, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil {
			return line, err
		}
		if n < 0 {
			return line, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return line, err
		}
		return line + string(buf), nil
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil {
			return line, err
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		out := line
		for range max(n, 0) {
			s, err := readRaw(r)
			out += s
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}
	return line, fmt.Errorf("unknown type in %q", line)
}

// respErr is a parsed error reply.
type respErr string

// parse turns raw reply bytes into Go values: strings for simple and bulk
// strings, int64, nil, respErr, and []any for arrays, sets, pushes and maps
// (maps as flat key/value lists, so order is kept).
func parse(raw string) (any, error) {
	v, rest, err := parseOne(raw)
	if err == nil && rest != "" {
		err = fmt.Errorf("trailing bytes %q", rest)
	}
	return v, err
}

func parseOne(s string) (any, string, error) {
	i := strings.Index(s, "\r\n")
	if i < 1 {
		return nil, s, fmt.Errorf("malformed %q", s)
	}
	body, rest := s[1:i], s[i+2:]
	switch s[0] {
	case '+':
		return body, rest, nil
	case '-':
		return respErr(body), rest, nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		return n, rest, err
	case '_':
		return nil, rest, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, rest, err
		}
		return rest[:n], rest[n+2:], nil
	case '*', '~', '>', '%':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 {
			return nil, rest, err
		}
		if s[0] == '%' {
			n *= 2
		}
		out := []any{}
		for range n {
			var v any
			v, rest, err = parseOne(rest)
			if err != nil {
				return nil, rest, err
			}
			out = append(out, v)
		}
		return out, rest, nil
	}
	return nil, s, errors.New("unsupported type " + string(s[0]))
}

// pairs turns a parsed map reply into its keys (in order) and a lookup.
func pairs(t testing.TB, v any) ([]string, map[string]string) {
	t.Helper()
	list, ok := v.([]any)
	if !ok || len(list)%2 != 0 {
		t.Fatalf("not a map reply: %#v", v)
	}
	var keys []string
	m := map[string]string{}
	for i := 0; i < len(list); i += 2 {
		k, _ := list[i].(string)
		val, ok := list[i+1].(string)
		if !ok {
			t.Fatalf("field %s is %#v, want a bulk string", k, list[i+1])
		}
		keys = append(keys, k)
		m[k] = val
	}
	return keys, m
}
