package resp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testbin"
	"github.com/redis/go-redis/v9"
)

// testServer is the smallest server that can sit behind a real Redis
// client: it runs the Reader and Writer the way the Sentinel front end will,
// and answers a few commands.
type testServer struct {
	ln   net.Listener
	addr string

	mu    sync.Mutex
	conns map[net.Conn]bool
	seen  [][]string // every command received, in order
	wg    sync.WaitGroup
}

func startTestServer(t *testing.T) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[conn] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(conn)
	}
}

func (s *testServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *testServer) commands() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.seen...)
}

func (s *testServer) handle(conn net.Conn) {
	defer s.wg.Done()
	defer func() {
		_ = conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	r := NewReader(conn, Limits{})
	w := NewWriter(conn)
	for {
		args, err := r.ReadCommand()
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				w.Error("ERR " + pe.Error())
				_ = w.Flush()
			}
			return
		}
		cmd := make([]string, len(args))
		for i, a := range args {
			cmd[i] = string(a)
		}
		s.mu.Lock()
		s.seen = append(s.seen, cmd)
		s.mu.Unlock()
		serve(w, cmd)
		// Replies to a pipeline go out together once it is drained.
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

func serve(w *Writer, cmd []string) {
	name := strings.ToUpper(cmd[0])
	switch {
	case name == "PING" && len(cmd) == 1:
		w.SimpleString("PONG")
	case (name == "PING" || name == "ECHO") && len(cmd) == 2:
		w.BulkString(cmd[1])
	case name == "HELLO":
		if len(cmd) > 1 {
			v, err := strconv.Atoi(cmd[1])
			if err != nil || w.SetProtocol(v) != nil {
				w.Error("NOPROTO unsupported protocol version")
				return
			}
		}
		w.MapHeader(7)
		w.BulkString("server")
		w.BulkString("redis")
		w.BulkString("version")
		w.BulkString("7.2.0")
		w.BulkString("proto")
		w.Int(int64(w.Protocol()))
		w.BulkString("id")
		w.Int(7)
		w.BulkString("mode")
		w.BulkString("sentinel")
		w.BulkString("role")
		w.BulkString("sentinel")
		w.BulkString("modules")
		w.ArrayHeader(0)
	case name == "SENTINEL" && len(cmd) == 3 && strings.EqualFold(cmd[1], "get-master-addr-by-name"):
		if cmd[2] != "mymaster" {
			w.NullArray()
			return
		}
		w.StringArray("127.0.0.1", "6379")
	case name == "SENTINEL" && len(cmd) == 3 && strings.EqualFold(cmd[1], "master"):
		if cmd[2] != "mymaster" {
			w.Error("ERR No such master with that name")
			return
		}
		w.StringMap("name", "mymaster", "ip", "127.0.0.1", "port", "6379", "flags", "master", "num-other-sentinels", "2", "quorum", "2")
	case name == "REPLY" && len(cmd) == 2:
		reply(w, cmd[1])
	default:
		w.Error(fmt.Sprintf("ERR unknown command '%s'", cmd[0]))
	}
}

// reply writes one reply of each kind the Writer has, for the client to
// parse.
func reply(w *Writer, kind string) {
	switch kind {
	case "simple":
		w.SimpleString("OK")
	case "empty-simple":
		w.SimpleString("")
	case "error":
		w.Error("NOGOODSLAVE No suitable replica to promote")
	case "int":
		w.Int(-42)
	case "bulk":
		w.Bulk([]byte("a\r\n\x00b"))
	case "null-bulk":
		w.NullBulk()
	case "null-array":
		w.NullArray()
	case "array":
		w.ArrayHeader(3)
		w.Int(1)
		w.BulkString("x")
		w.ArrayHeader(0)
	case "map":
		w.StringMap("k", "v")
	case "set":
		w.SetHeader(2)
		w.BulkString("a")
		w.BulkString("b")
	case "double":
		w.Double(1.5)
	case "inf":
		w.Double(math.Inf(-1))
	case "bool":
		w.Bool(true)
	default:
		w.Error("ERR unknown kind")
	}
}

// TestGoRedis drives the test server with go-redis in both protocols: the
// handshake go-redis performs, every reply type through its generic parser,
// a pipeline, and the two Sentinel calls its failover client depends on.
func TestGoRedis(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			srv := startTestServer(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			opts := func() *redis.Options {
				return &redis.Options{
					Addr:         srv.addr,
					Protocol:     proto,
					PoolSize:     1,
					MaxRetries:   -1,
					DialTimeout:  5 * time.Second,
					ReadTimeout:  5 * time.Second,
					WriteTimeout: 5 * time.Second,
				}
			}
			client := redis.NewClient(opts())
			defer func() { _ = client.Close() }()

			if got, err := client.Ping(ctx).Result(); err != nil || got != "PONG" {
				t.Fatalf("PING = %q, %v", got, err)
			}
			// go-redis opens every connection with HELLO <proto>; with an
			// unparsable reply it would have dropped the connection.
			if seen := srv.commands(); len(seen) == 0 || !reflect.DeepEqual(seen[0], []string{"hello", strconv.Itoa(proto)}) {
				t.Fatalf("first command %q, want [hello %d]", seen, proto)
			}
			if got, err := client.Echo(ctx, "hello\r\nworld\x00").Result(); err != nil || got != "hello\r\nworld\x00" {
				t.Fatalf("ECHO = %q, %v", got, err)
			}

			hello, err := client.Do(ctx, "HELLO", proto).Result()
			if err != nil {
				t.Fatalf("HELLO %d: %v", proto, err)
			}
			var fields map[string]any
			switch h := hello.(type) {
			case map[any]any: // RESP3 map
				fields = map[string]any{}
				for k, v := range h {
					fields[fmt.Sprint(k)] = v
				}
			case []any: // RESP2 flat array
				if proto != 2 || len(h)%2 != 0 {
					t.Fatalf("HELLO %d reply %#v", proto, h)
				}
				fields = map[string]any{}
				for i := 0; i < len(h); i += 2 {
					fields[fmt.Sprint(h[i])] = h[i+1]
				}
			default:
				t.Fatalf("HELLO %d reply of type %T", proto, hello)
			}
			if _, isMap := hello.(map[any]any); isMap != (proto == 3) {
				t.Errorf("HELLO %d: map reply %v", proto, isMap)
			}
			if fields["proto"] != int64(proto) || fields["mode"] != "sentinel" || len(fields) != 7 {
				t.Errorf("HELLO %d fields %v", proto, fields)
			}

			inf := math.Inf(-1)
			tests := []struct {
				kind         string
				resp2, resp3 any
				err          error
			}{
				{"simple", "OK", "OK", nil},
				{"empty-simple", "", "", nil},
				{"int", int64(-42), int64(-42), nil},
				{"bulk", "a\r\n\x00b", "a\r\n\x00b", nil},
				{"null-bulk", nil, nil, redis.Nil},
				{"null-array", nil, nil, redis.Nil},
				{"array", []any{int64(1), "x", []any{}}, []any{int64(1), "x", []any{}}, nil},
				{"map", []any{"k", "v"}, map[any]any{"k": "v"}, nil},
				{"set", []any{"a", "b"}, []any{"a", "b"}, nil},
				{"double", "1.5", 1.5, nil},
				{"inf", "-inf", inf, nil},
				{"bool", int64(1), true, nil},
			}
			for _, tt := range tests {
				got, err := client.Do(ctx, "REPLY", tt.kind).Result()
				want := tt.resp2
				if proto == 3 {
					want = tt.resp3
				}
				if err != tt.err || !reflect.DeepEqual(got, want) {
					t.Errorf("REPLY %s = %#v, %v; want %#v, %v", tt.kind, got, err, want, tt.err)
				}
			}
			err = client.Do(ctx, "REPLY", "error").Err()
			if err == nil || err.Error() != "NOGOODSLAVE No suitable replica to promote" {
				t.Errorf("error reply = %v", err)
			}
			err = client.Do(ctx, "NOPE").Err()
			if err == nil || err.Error() != "ERR unknown command 'NOPE'" {
				t.Errorf("unknown command = %v", err)
			}

			cmds, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Ping(ctx)
				p.Echo(ctx, "one")
				p.Do(ctx, "REPLY", "int")
				p.Echo(ctx, "two")
				return nil
			})
			if err != nil || len(cmds) != 4 {
				t.Fatalf("pipeline: %d replies, %v", len(cmds), err)
			}
			if got := fmt.Sprintf("%v %v %v %v", cmds[0].(*redis.StatusCmd).Val(), cmds[1].(*redis.StringCmd).Val(),
				cmds[2].(*redis.Cmd).Val(), cmds[3].(*redis.StringCmd).Val()); got != "PONG one -42 two" {
				t.Errorf("pipeline replies %q", got)
			}

			sentinel := redis.NewSentinelClient(opts())
			defer func() { _ = sentinel.Close() }()
			addr, err := sentinel.GetMasterAddrByName(ctx, "mymaster").Result()
			if err != nil || !reflect.DeepEqual(addr, []string{"127.0.0.1", "6379"}) {
				t.Errorf("GetMasterAddrByName = %q, %v", addr, err)
			}
			if addr, err := sentinel.GetMasterAddrByName(ctx, "unknown").Result(); err != redis.Nil {
				t.Errorf("GetMasterAddrByName(unknown) = %q, %v; want redis.Nil", addr, err)
			}
			master, err := sentinel.Master(ctx, "mymaster").Result()
			want := map[string]string{"name": "mymaster", "ip": "127.0.0.1", "port": "6379", "flags": "master", "num-other-sentinels": "2", "quorum": "2"}
			if err != nil || !reflect.DeepEqual(master, want) {
				t.Errorf("Master = %v, %v", master, err)
			}
			t.Logf("commands received: %q", srv.commands())
		})
	}
}

// TestTelnet is a person typing inline commands, then a client sending
// garbage: it gets the Redis error line and only its connection is closed.
func TestTelnet(t *testing.T) {
	srv := startTestServer(t)
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	expect := func(br *bufio.Reader, want string) {
		t.Helper()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
			t.Fatalf("read %q, %v; want %q", got, err, want)
		}
	}

	good, goodR := dial()
	if _, err := io.WriteString(good, "PING\r\n\r\necho \"hello world\" 'x'\nHELLO 3\r\nREPLY null-bulk\r\n"); err != nil {
		t.Fatal(err)
	}
	expect(goodR, "+PONG\r\n")
	expect(goodR, "-ERR unknown command 'echo'\r\n") // three arguments
	expect(goodR, "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:3\r\n"+
		"$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$4\r\nrole\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n")
	expect(goodR, "_\r\n")

	bad, badR := dial()
	if _, err := io.WriteString(bad, "*1\r\n$4\r\nPING\r\n*x\r\n*1\r\n$4\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	expect(badR, "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n")
	if rest, err := io.ReadAll(badR); err != nil || len(rest) != 0 {
		t.Fatalf("after the protocol error: %q, %v; want the connection closed", rest, err)
	}

	if _, err := io.WriteString(good, "ECHO \"still here\"\r\n"); err != nil {
		t.Fatal(err)
	}
	expect(goodR, "$10\r\nstill here\r\n")
}

// TestRedisCLI runs the real redis-cli against the test server. It is
// skipped where redis-cli is not installed, except in CI.
func TestRedisCLI(t *testing.T) {
	cli := testbin.Require(t, "REDIS_CLI", "redis-cli", "make redis installs it")
	srv := startTestServer(t)
	_, port, err := net.SplitHostPort(srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, append([]string{"-h", "127.0.0.1", "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if got := run("PING"); got != "PONG\n" {
		t.Errorf("redis-cli PING printed %q", got)
	}
	if got := run("ECHO", "hello world"); got != "hello world\n" {
		t.Errorf("redis-cli ECHO printed %q", got)
	}
	if got := run("-3", "HELLO", "3"); !strings.Contains(got, "proto 3\n") || !strings.Contains(got, "mode sentinel\n") {
		t.Errorf("redis-cli -3 HELLO 3 printed %q", got)
	}
	if got := run("SENTINEL", "get-master-addr-by-name", "mymaster"); got != "127.0.0.1\n6379\n" {
		t.Errorf("redis-cli SENTINEL get-master-addr-by-name printed %q", got)
	}
}
