package sentinel

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testbin"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRealSentinel runs redis-sentinel monitoring master as mymaster with
// quorum 1 and down-after 5000, and returns its address.
func startRealSentinel(t *testing.T, master string) string {
	t.Helper()
	bin := testbin.Require(t, "REDIS_SENTINEL", "redis-sentinel", "make redis installs it")
	dir := t.TempDir()
	port := freePort(t)
	host, mport, _ := net.SplitHostPort(master)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
		"sentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster 5000\n",
		port, dir, filepath.Join(dir, "sentinel.log"), host, mport)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(dir, "sentinel.log")); err == nil {
				t.Logf("redis-sentinel log:\n%s", log)
			}
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	testwait.For(t, redistest.ReadyTimeout, "redis-sentinel to listen on "+addr, func() error {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return nc.Close()
	})
	return addr
}

// The field names and order of the instance maps, the reply shapes and the
// error texts are compared with a real redis-sentinel watching the same
// topology that the fake backend describes.
func TestCompareWithRealSentinel(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	realAddr := startRealSentinel(t, master.Addr())

	// Wait until Sentinel has found the replica and read its INFO.
	rc := dial(t, realAddr)
	testwait.Until(t, 30*time.Second, "redis-sentinel to report the replica", func() bool {
		list, _ := rc.value("SENTINEL", "REPLICAS", "mymaster").([]any)
		if len(list) != 1 {
			return false
		}
		_, r := pairs(t, list[0])
		return r["master-link-status"] == "ok" && r["info-refresh"] != "0" && r["runid"] != ""
	})

	ctx := context.Background()
	minfo, err := master.Info(ctx, "server")
	if err != nil {
		t.Fatal(err)
	}
	rinfo, err := replica.Info(ctx, "server", "replication")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f := newFake()
	mhost, mport, _ := net.SplitHostPort(master.Addr())
	mp, _ := strconv.Atoi(mport)
	f.update(func(st *fsmv1.State) {
		st.Masters["mymaster"] = &fsmv1.Master{
			Name: "mymaster", Address: master.Addr(), MasterRunId: minfo["run_id"],
			Settings:             &fsmv1.MasterSettings{Quorum: 1, DownAfterMs: 5000, FailoverTimeoutMs: 180000, ParallelSyncs: 1},
			MonitoredAtUnixNanos: now.Add(-time.Minute).UnixNano(),
			Replicas: []*fsmv1.Replica{{
				Address: replica.Addr(), RunId: rinfo["run_id"], Role: "slave", MasterHost: mhost, MasterPort: int32(mp),
				MasterLinkUp: true, Priority: 100, Announced: true, ObservedAtUnixNanos: now.UnixNano(),
			}},
		}
	})
	f.setView(master.Addr(), InstanceView{LastOKPingReply: now, LastPingReply: now, InfoRefresh: now, RoleReported: "master", RoleReportedTime: now, RunID: minfo["run_id"]})
	f.setView(replica.Addr(), InstanceView{LastOKPingReply: now, LastPingReply: now, InfoRefresh: now, RoleReported: "slave", RoleReportedTime: now,
		RunID: rinfo["run_id"], MasterHost: mhost, MasterPort: mp, MasterLinkUp: true, SlavePriority: 100, ReplicaAnnounced: true})
	ours := start(t, f, Config{})

	// Values that depend on timing or on the live replication stream.
	volatile := map[string]bool{"link-pending-commands": true, "last-ping-sent": true, "last-ok-ping-reply": true,
		"last-ping-reply": true, "info-refresh": true, "role-reported-time": true, "slave-repl-offset": true, "master-link-down-time": true}
	compareMap := func(t *testing.T, what string, real, got any) {
		t.Helper()
		rk, rv := pairs(t, real)
		gk, gv := pairs(t, got)
		if !slices.Equal(rk, gk) {
			t.Errorf("%s field names/order differ:\n real %q\n ours %q", what, rk, gk)
		}
		for _, k := range rk {
			if !volatile[k] && rv[k] != gv[k] {
				t.Errorf("%s %s: real %q, ours %q", what, k, rv[k], gv[k])
			}
		}
	}
	for _, proto := range []string{"2", "3"} {
		t.Run("RESP"+proto, func(t *testing.T) {
			r, o := dial(t, realAddr), dial(t, ours.Addr())
			r.do("HELLO", proto)
			o.do("HELLO", proto)

			rl, _ := r.value("SENTINEL", "MASTERS").([]any)
			ol, _ := o.value("SENTINEL", "MASTERS").([]any)
			if len(rl) != 1 || len(ol) != 1 {
				t.Fatalf("MASTERS: real %d entries, ours %d", len(rl), len(ol))
			}
			compareMap(t, "MASTERS[0]", rl[0], ol[0])
			compareMap(t, "MASTER", r.value("SENTINEL", "MASTER", "mymaster"), o.value("SENTINEL", "MASTER", "mymaster"))
			for _, sub := range []string{"REPLICAS", "SLAVES"} {
				rl, _ = r.value("SENTINEL", sub, "mymaster").([]any)
				ol, _ = o.value("SENTINEL", sub, "mymaster").([]any)
				if len(rl) != 1 || len(ol) != 1 {
					t.Fatalf("%s: real %d entries, ours %d", sub, len(rl), len(ol))
				}
				compareMap(t, sub+"[0]", rl[0], ol[0])
			}

			// Replies that must match byte for byte.
			for _, cmd := range [][]string{
				{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"},
				{"SENTINEL", "get-master-addr-by-name", "nope"},
				{"ROLE"},
				{"PING"},
				{"PING", "hello"},
				{"SENTINEL", "SENTINELS", "mymaster"},
				{"SENTINEL", "CKQUORUM", "mymaster"},
				{"SENTINEL", "IS-MASTER-DOWN-BY-ADDR", mhost, mport, "0", "*"},
				{"SENTINEL", "IS-MASTER-DOWN-BY-ADDR", mhost, "x", "0", "*"},
				{"SENTINEL", "PENDING-SCRIPTS"},
				{"SENTINEL", "SIMULATE-FAILURE", "HELP"},
				{"SENTINEL", "CONFIG", "GET", "nope"},
				{"SENTINEL", "CONFIG", "FOO", "x"},
				{"SENTINEL", "foo"},
				{"SENTINEL", "MASTER"},
				{"SENTINEL"},
				{"SENTINEL", "RESET"},
				{"SENTINEL", "SET", "mymaster", "quorum"},
				{"SENTINEL", "MASTER", "nope"},
				{"SENTINEL", "REPLICAS", "nope"},
				{"SENTINEL", "SET", "nope", "quorum", "2"},
				{"SENTINEL", "SET", "mymaster", "notification-script", "/bin/true"},
				{"SENTINEL", "MONITOR", "x", "127.0.0.1", "x", "1"},
				{"SENTINEL", "MONITOR", "x", "127.0.0.1", "1", "x"},
				{"SENTINEL", "MONITOR", "x", "127.0.0.1", "1", "0"},
				{"SENTINEL", "MONITOR", "x", "127.0.0.1", "70000", "1"},
				{"FOO", "a", "b"},
				{"ROLE", "x"},
				{"AUTH", "x"},
				{"AUTH", "a", "b"},
				{"HELLO", "4"},
				{"HELLO", "x"},
				{"HELLO", "2", "FOO"},
				{"CLIENT", "FOO"},
				{"CLIENT", "KILL", "ID", "x"},
				{"CLIENT", "LIST", "ID", "x"},
				{"COMMAND", "FOO"},
				{"COMMAND", "DOCS", "nope"},
				{"PUBLISH", "x", "y"},
				{"INFO", "nope"},
				{"INFO", "sentinel"},
			} {
				if rr, or := r.do(cmd...), o.do(cmd...); rr != or {
					t.Errorf("%q:\n real %q\n ours %q", cmd, rr, or)
				}
			}

			// HELLO: the same keys in the same order.
			rk, _ := helloKeys(t, r.value("HELLO"))
			ok, _ := helloKeys(t, o.value("HELLO"))
			if !slices.Equal(rk, ok) {
				t.Errorf("HELLO keys: real %q, ours %q", rk, ok)
			}

			// Pub/sub confirmations and the subscribed context.
			for _, cmd := range [][]string{
				{"SUBSCRIBE", "+switch-master"},
				{"PSUBSCRIBE", "*"},
				{"PING"},
				{"PING", "x"},
				{"SENTINEL", "MASTERS"},
				{"GET", "x"},
				{"PUNSUBSCRIBE"},
				{"UNSUBSCRIBE", "+switch-master"},
				{"UNSUBSCRIBE"},
				{"PUNSUBSCRIBE"},
			} {
				if proto == "3" && slices.Equal(cmd, []string{"SENTINEL", "MASTERS"}) {
					continue // allowed in RESP3; the reply is compared above
				}
				if rr, or := r.do(cmd...), o.do(cmd...); rr != or {
					t.Errorf("subscribed %q:\n real %q\n ours %q", cmd, rr, or)
				}
			}
		})
	}

	// redis-cli prints the same lines for both.
	cli := testbin.Require(t, "REDIS_CLI", "redis-cli", "make redis installs it")
	for _, args := range [][]string{
		{"SENTINEL", "get-master-addr-by-name", "mymaster"},
		{"SENTINEL", "get-master-addr-by-name", "nope"},
		{"SENTINEL", "master", "nope"},
		{"SENTINEL", "ckquorum", "mymaster"},
	} {
		real := runCLI(t, cli, realAddr, args...)
		got := runCLI(t, cli, ours.Addr(), args...)
		if real != got {
			t.Errorf("redis-cli %q:\n real %q\n ours %q", args, real, got)
		}
	}
	if got, want := runCLI(t, cli, ours.Addr(), "SENTINEL", "get-master-addr-by-name", "mymaster"), mhost+"\n"+mport+"\n"; got != want {
		t.Errorf("redis-cli get-master-addr-by-name: %q, want %q", got, want)
	}
}

func helloKeys(t *testing.T, v any) ([]string, []any) {
	t.Helper()
	list, _ := v.([]any)
	var keys []string
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		keys = append(keys, k)
	}
	return keys, list
}

func runCLI(t *testing.T, cli, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %q: %v: %s", args, err, out)
	}
	return string(out)
}

func TestRedisCLI(t *testing.T) {
	cli := testbin.Require(t, "REDIS_CLI", "redis-cli", "make redis installs it")
	_, s := startFake(t, Config{})
	for _, proto := range []string{"-2", "-3"} {
		if got := runCLI(t, cli, s.Addr(), proto, "SENTINEL", "get-master-addr-by-name", "mymaster"); got != "10.0.0.1\n6379\n" {
			t.Errorf("redis-cli %s: %q", proto, got)
		}
	}
	out := runCLI(t, cli, s.Addr(), "SENTINEL", "replicas", "mymaster")
	if !strings.HasPrefix(out, "name\n10.0.0.2:6380\nip\n10.0.0.2\n") {
		t.Errorf("redis-cli SENTINEL replicas:\n%s", out)
	}
}
