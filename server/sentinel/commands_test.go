package sentinel

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// startFake serves the standard topology and waits until the server reads
// the backend's event stream, so events emitted afterwards are delivered.
func startFake(t *testing.T, cfg Config) (*fakeBackend, *Server) {
	t.Helper()
	f := newFake()
	topology(f)
	s := start(t, f, cfg)
	testwait.Until(t, 5*time.Second, "the event stream", func() bool { return f.streamCount() == 1 })
	return f, s
}

func arity(name string) string {
	return "-ERR wrong number of arguments for '" + name + "' command\r\n"
}

const noSuchMaster = "-ERR No such master with that name\r\n"

func TestCommandReplies(t *testing.T) {
	f, s := startFake(t, Config{})
	myID := RunID("node-a")
	cases := []struct {
		cmd  []string
		want string
		call string // the backend write expected, if any
	}{
		{[]string{"PING"}, "+PONG\r\n", ""},
		{[]string{"ping", "hi"}, "$2\r\nhi\r\n", ""},
		{[]string{"PING", "a", "b"}, arity("ping"), ""},
		{[]string{"ROLE"}, "*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n", ""},
		{[]string{"ROLE", "x"}, arity("role"), ""},
		{[]string{"FOO", "a", "b"}, "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n", ""},
		{[]string{"GET"}, "-ERR unknown command 'GET', with args beginning with: \r\n", ""},
		{[]string{"SHUTDOWN"}, "-ERR SHUTDOWN is refused: a Raftinel node is stopped through its service manager (SIGTERM), not over the Sentinel protocol\r\n", ""},
		{[]string{"PUBLISH", "a", "b"}, "-ERR Only HELLO messages are accepted by Sentinel instances.\r\n", ""},
		{[]string{"PUBLISH", "__sentinel__:hello", "x"}, ":0\r\n", ""},
		{[]string{"INFO", "nope"}, "$0\r\n\r\n", ""},

		{[]string{"SENTINEL"}, arity("sentinel"), ""},
		{[]string{"SENTINEL", "foo"}, "-ERR unknown subcommand 'foo'. Try SENTINEL HELP.\r\n", ""},
		{[]string{"SENTINEL", "MASTER"}, arity("sentinel|master"), ""},
		{[]string{"SENTINEL", "MASTERS", "x"}, arity("sentinel|masters"), ""},
		{[]string{"SENTINEL", "master", "nope"}, noSuchMaster, ""},
		{[]string{"SENTINEL", "REPLICAS", "nope"}, noSuchMaster, ""},
		{[]string{"SENTINEL", "SLAVES", "nope"}, noSuchMaster, ""},
		{[]string{"SENTINEL", "SENTINELS", "nope"}, noSuchMaster, ""},
		{[]string{"SENTINEL", "get-master-addr-by-name", "mymaster"}, "*2\r\n$8\r\n10.0.0.1\r\n$4\r\n6379\r\n", ""},
		{[]string{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"}, "*-1\r\n", ""},
		{[]string{"SENTINEL", "get-master-addr-by-name"}, arity("sentinel|get-master-addr-by-name"), ""},
		{[]string{"SENTINEL", "MYID"}, "$40\r\n" + myID + "\r\n", ""},
		{[]string{"SENTINEL", "MYID", "x"}, arity("sentinel|myid"), ""},
		{[]string{"SENTINEL", "CKQUORUM", "mymaster"}, "+OK 2 usable Sentinels. Quorum and failover authorization can be reached\r\n", ""},
		{[]string{"SENTINEL", "CKQUORUM", "nope"}, noSuchMaster, ""},
		{[]string{"SENTINEL", "FLUSHCONFIG"}, "+OK\r\n", ""},
		{[]string{"SENTINEL", "FLUSHCONFIG", "x"}, arity("sentinel|flushconfig"), ""},
		{[]string{"SENTINEL", "PENDING-SCRIPTS"}, "*0\r\n", ""},
		{[]string{"SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "10.0.0.1", "6379", "0", "*"}, "*3\r\n:0\r\n$1\r\n*\r\n:0\r\n", ""},
		{[]string{"SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "10.0.0.1", "x", "0", "*"}, "-ERR value is not an integer or out of range\r\n", ""},
		{[]string{"SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "10.0.0.1", "6379", "x", "*"}, "-ERR value is not an integer or out of range\r\n", ""},
		{[]string{"SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "10.0.0.1", "6379", "0"}, arity("sentinel|is-master-down-by-addr"), ""},
		{[]string{"SENTINEL", "SIMULATE-FAILURE", "help"}, "*2\r\n$20\r\ncrash-after-election\r\n$21\r\ncrash-after-promotion\r\n", ""},
		{[]string{"SENTINEL", "SIMULATE-FAILURE", "crash-after-election"}, "-ERR SENTINEL SIMULATE-FAILURE is not supported: start the node with --simulate-failure instead\r\n", ""},
		{[]string{"SENTINEL", "SIMULATE-FAILURE", "boom"}, "-ERR Unknown failure simulation specified\r\n", ""},
		{[]string{"SENTINEL", "DEBUG"}, "-ERR SENTINEL DEBUG is not supported: Raftinel's timing parameters are node settings\r\n", ""},
		{[]string{"SENTINEL", "CONFIG"}, arity("sentinel|config"), ""},
		{[]string{"SENTINEL", "CONFIG", "GET"}, arity("sentinel|config"), ""},
		{[]string{"SENTINEL", "CONFIG", "FOO", "x"}, "-ERR Only SENTINEL CONFIG GET <option> / SET <option> <value> are supported.\r\n", ""},
		{[]string{"SENTINEL", "CONFIG", "GET", "nope"}, "*0\r\n", ""},
		{[]string{"SENTINEL", "CONFIG", "GET", "LOGLEVEL"}, "*2\r\n$8\r\nloglevel\r\n$6\r\nnotice\r\n", ""},
		{[]string{"SENTINEL", "CONFIG", "GET", "announce-*", "announce-ip"}, "*6\r\n$18\r\nannounce-hostnames\r\n$3\r\nyes\r\n$11\r\nannounce-ip\r\n$0\r\n\r\n$13\r\nannounce-port\r\n$1\r\n0\r\n", ""},
		{[]string{"SENTINEL", "CONFIG", "SET", "loglevel", "debug"}, "-ERR SENTINEL CONFIG SET 'loglevel' is not supported: Raftinel's global settings are node flags\r\n", ""},
		{[]string{"SENTINEL", "CONFIG", "SET", "foo", "1"}, "-ERR Invalid argument 'foo' to SENTINEL CONFIG SET\r\n", ""},

		{[]string{"SENTINEL", "FAILOVER", "mymaster"}, "+OK\r\n", "failover mymaster"},
		{[]string{"SENTINEL", "FAILOVER", "nope"}, noSuchMaster, ""},
		{[]string{"SENTINEL", "REMOVE", "mymaster"}, "+OK\r\n", "remove mymaster"},
		{[]string{"SENTINEL", "REMOVE", "nope"}, noSuchMaster, ""},
		{[]string{"SENTINEL", "RESET"}, arity("sentinel|reset"), ""},
		{[]string{"SENTINEL", "RESET", "my*"}, ":1\r\n", "reset mymaster"},
		{[]string{"SENTINEL", "RESET", "MY*"}, ":0\r\n", ""},
		{[]string{"SENTINEL", "MONITOR", "m2", "10.0.0.9", "6379", "2"}, "+OK\r\n", "monitor m2 10.0.0.9:6379 2"},
		{[]string{"SENTINEL", "MONITOR", "m3", "::1", "6379", "1"}, "+OK\r\n", "monitor m3 [::1]:6379 1"},
		{[]string{"SENTINEL", "MONITOR", "m2", "10.0.0.9", "x", "2"}, "-ERR Invalid port\r\n", ""},
		{[]string{"SENTINEL", "MONITOR", "m2", "10.0.0.9", "x", "y"}, "-ERR Invalid quorum\r\n", ""},
		{[]string{"SENTINEL", "MONITOR", "m2", "10.0.0.9", "6379", "0"}, "-ERR Quorum must be 1 or greater.\r\n", ""},
		{[]string{"SENTINEL", "MONITOR", "m2", "10.0.0.9", "70000", "1"}, "-ERR Invalid port number.\r\n", ""},
		{[]string{"SENTINEL", "MONITOR", "m2", "", "6379", "1"}, "-ERR Invalid IP address or hostname specified\r\n", ""},
		{[]string{"SENTINEL", "MONITOR", "m2", "10.0.0.9", "6379"}, arity("sentinel|monitor"), ""},
		{[]string{"SENTINEL", "SET", "mymaster", "quorum", "3"}, "+OK\r\n", `set mymaster [["quorum" "3"]]`},
		{[]string{"SENTINEL", "SET", "mymaster", "quorum", "3", "down-after-milliseconds", "1000"}, "+OK\r\n", `set mymaster [["quorum" "3"] ["down-after-milliseconds" "1000"]]`},
		{[]string{"SENTINEL", "SET", "mymaster", "rename-command", "PING", "PONG"}, "+OK\r\n", `set mymaster [["rename-command" "PING PONG"]]`},
		{[]string{"SENTINEL", "SET", "mymaster", "quorum", "3", "parallel-syncs"}, "-ERR Unknown option or number of arguments for SENTINEL SET 'parallel-syncs'\r\n", ""},
		{[]string{"SENTINEL", "SET", "mymaster", "notification-script", "/bin/true"}, "-ERR Reconfiguration of scripts path is denied for security reasons. Check the deny-scripts-reconfig configuration directive in your Sentinel configuration\r\n", ""},
		{[]string{"SENTINEL", "SET", "mymaster", "quorum"}, arity("sentinel|set"), ""},
		{[]string{"SENTINEL", "SET", "nope", "quorum", "1"}, noSuchMaster, ""},

		{[]string{"CLIENT"}, arity("client"), ""},
		{[]string{"CLIENT", "FOO"}, "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n", ""},
		{[]string{"CLIENT", "SETNAME", "a", "b"}, arity("client|setname"), ""},
		{[]string{"CLIENT", "SETNAME", "a b"}, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n", ""},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n", ""},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis(x)"}, "+OK\r\n", ""},
		{[]string{"CLIENT", "SETINFO", "LIB-VER", "9.0"}, "+OK\r\n", ""},
		{[]string{"CLIENT", "SETINFO", "foo", "x"}, "-ERR Unrecognized option 'foo'\r\n", ""},
		{[]string{"CLIENT", "KILL", "1.2.3.4:5"}, "-ERR No such client\r\n", ""},
		{[]string{"CLIENT", "KILL", "ID", "9999"}, ":0\r\n", ""},
		{[]string{"CLIENT", "KILL", "ID", "x"}, "-ERR client-id should be greater than 0\r\n", ""},
		{[]string{"CLIENT", "KILL", "TYPE", "x"}, "-ERR Unknown client type 'x'\r\n", ""},
		{[]string{"CLIENT", "KILL", "FOO", "x"}, "-ERR syntax error\r\n", ""},
		{[]string{"CLIENT", "LIST", "ID", "x"}, "-ERR Invalid client ID\r\n", ""},
		{[]string{"CLIENT", "LIST", "FOO"}, "-ERR syntax error\r\n", ""},
		{[]string{"COMMAND", "FOO"}, "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n", ""},
		{[]string{"COMMAND", "COUNT"}, ":" + strconv.Itoa(len(commandTable)) + "\r\n", ""},
		{[]string{"COMMAND", "COUNT", "x"}, arity("command|count"), ""},
		{[]string{"COMMAND", "LIST", "FILTERBY", "PATTERN", "rol*"}, "*1\r\n$4\r\nrole\r\n", ""},
		{[]string{"COMMAND", "DOCS", "nope"}, "*0\r\n", ""},
		{[]string{"COMMAND", "DOCS", "role"}, "*2\r\n$4\r\nrole\r\n*6\r\n$7\r\nsummary\r\n$29\r\nReturns the replication role.\r\n$5\r\nsince\r\n$6\r\n2.8.12\r\n$5\r\ngroup\r\n$6\r\nserver\r\n", ""},
		{[]string{"COMMAND", "INFO", "nope"}, "*1\r\n$-1\r\n", ""},

		{[]string{"HELLO", "4"}, "-NOPROTO unsupported protocol version\r\n", ""},
		{[]string{"HELLO", "x"}, "-ERR Protocol version is not an integer or out of range\r\n", ""},
		{[]string{"HELLO", "2", "FOO"}, "-ERR Syntax error in HELLO option 'FOO'\r\n", ""},
		{[]string{"HELLO", "2", "AUTH", "a"}, "-ERR Syntax error in HELLO option 'AUTH'\r\n", ""},
		{[]string{"AUTH"}, arity("auth"), ""},
		{[]string{"AUTH", "x"}, "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n", ""},
		{[]string{"AUTH", "default", "anything"}, "+OK\r\n", ""},
		{[]string{"AUTH", "bob", "x"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n", ""},
		{[]string{"AUTH", "a", "b", "c"}, "-ERR syntax error\r\n", ""},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.cmd, " "), func(t *testing.T) {
			before := f.lastCall()
			c := dial(t, s.Addr())
			if got := c.do(tc.cmd...); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if call := f.lastCall(); tc.call != "" && call != tc.call {
				t.Errorf("backend call %q, want %q", call, tc.call)
			} else if tc.call == "" && call != before {
				t.Errorf("unexpected backend call %q", call)
			}
		})
	}
}

func TestBackendErrors(t *testing.T) {
	f, s := startFake(t, Config{})
	cases := []struct {
		method string
		err    error
		cmd    []string
		want   string
	}{
		{"failover", fmt.Errorf("leader says: %w", ErrInProgress), []string{"SENTINEL", "FAILOVER", "mymaster"}, "-INPROG Failover already in progress\r\n"},
		{"failover", ErrNoGoodReplica, []string{"SENTINEL", "FAILOVER", "mymaster"}, "-NOGOODSLAVE No suitable replica to promote\r\n"},
		{"remove", fmt.Errorf("raced: %w", ErrNoSuchMaster), []string{"SENTINEL", "REMOVE", "mymaster"}, noSuchMaster},
		{"monitor", errors.New("Duplicate master name."), []string{"SENTINEL", "MONITOR", "mymaster", "10.0.0.1", "6379", "2"}, "-ERR Duplicate master name.\r\n"},
		{"set", errors.New("Invalid argument '0' for SENTINEL SET 'quorum'"), []string{"SENTINEL", "SET", "mymaster", "quorum", "0"}, "-ERR Invalid argument '0' for SENTINEL SET 'quorum'\r\n"},
		{"set", errors.New("NOTLEADER try 10.0.0.5:7000"), []string{"SENTINEL", "SET", "mymaster", "quorum", "2"}, "-NOTLEADER try 10.0.0.5:7000\r\n"},
		{"reset", errors.New("no leader\nright now"), []string{"SENTINEL", "RESET", "*"}, "-ERR no leader right now\r\n"},
		{"reset", ErrNoSuchMaster, []string{"SENTINEL", "RESET", "*"}, ":0\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			f.setErr(tc.method, tc.err)
			defer f.setErr(tc.method, nil)
			if got := dial(t, s.Addr()).do(tc.cmd...); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

var (
	masterKeys = []string{"name", "ip", "port", "runid", "flags", "link-pending-commands", "link-refcount",
		"last-ping-sent", "last-ok-ping-reply", "last-ping-reply", "down-after-milliseconds", "info-refresh",
		"role-reported", "role-reported-time", "config-epoch", "num-slaves", "num-other-sentinels", "quorum",
		"failover-timeout", "parallel-syncs"}
	replicaKeys = []string{"name", "ip", "port", "runid", "flags", "link-pending-commands", "link-refcount",
		"last-ping-sent", "last-ok-ping-reply", "last-ping-reply", "down-after-milliseconds", "info-refresh",
		"role-reported", "role-reported-time", "master-link-down-time", "master-link-status", "master-host",
		"master-port", "slave-priority", "slave-repl-offset", "replica-announced"}
	sentinelKeys = []string{"name", "ip", "port", "runid", "flags", "link-pending-commands", "link-refcount",
		"last-ping-sent", "last-ok-ping-reply", "last-ping-reply", "down-after-milliseconds",
		"last-hello-message", "voted-leader", "voted-leader-epoch"}
)

// insertAfter returns keys with extra inserted after the key at.
func insertAfter(keys []string, at string, extra ...string) []string {
	i := slices.Index(keys, at)
	return slices.Concat(keys[:i+1], extra, keys[i+1:])
}

func checkKeys(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s fields:\n got  %q\n want %q", what, got, want)
	}
}

// checkValues compares selected fields.
func checkValues(t *testing.T, what string, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s %s = %q, want %q", what, k, got[k], v)
		}
	}
}

// checkMillis checks a "milliseconds ago" field lies in [lo, lo+slack).
func checkMillis(t *testing.T, what string, got map[string]string, key string, lo int64) {
	t.Helper()
	n, err := strconv.ParseInt(got[key], 10, 64)
	if err != nil || n < lo || n > lo+60_000 {
		t.Errorf("%s %s = %q, want about %d ms", what, key, got[key], lo)
	}
}

func TestInstanceMaps(t *testing.T) {
	for _, proto := range []string{"2", "3"} {
		t.Run("RESP"+proto, func(t *testing.T) {
			_, s := startFake(t, Config{})
			c := dial(t, s.Addr())
			c.do("HELLO", proto)

			keys, m := pairs(t, c.value("SENTINEL", "MASTER", "mymaster"))
			checkKeys(t, "MASTER", keys, masterKeys)
			checkValues(t, "MASTER", m, map[string]string{
				"name": "mymaster", "ip": "10.0.0.1", "port": "6379", "runid": strings.Repeat("a", 40),
				"flags": "master", "link-pending-commands": "0", "link-refcount": "1", "last-ping-sent": "0",
				"down-after-milliseconds": "5000", "role-reported": "master", "config-epoch": "3",
				"num-slaves": "2", "num-other-sentinels": "2", "quorum": "2", "failover-timeout": "60000",
				"parallel-syncs": "1",
			})
			checkMillis(t, "MASTER", m, "last-ok-ping-reply", 200)
			checkMillis(t, "MASTER", m, "info-refresh", 1000)
			checkMillis(t, "MASTER", m, "role-reported-time", 60000)

			list, _ := c.value("SENTINEL", "MASTERS").([]any)
			if len(list) != 1 {
				t.Fatalf("MASTERS: %d entries, want 1", len(list))
			}
			keys, _ = pairs(t, list[0])
			checkKeys(t, "MASTERS", keys, masterKeys)

			for _, sub := range []string{"REPLICAS", "SLAVES"} {
				list, _ = c.value("SENTINEL", sub, "mymaster").([]any)
				if len(list) != 2 {
					t.Fatalf("%s: %d entries, want 2", sub, len(list))
				}
				keys, r1 := pairs(t, list[0])
				checkKeys(t, sub, keys, replicaKeys)
				checkValues(t, sub+"[0]", r1, map[string]string{
					"name": replica1Addr, "ip": "10.0.0.2", "port": "6380", "runid": strings.Repeat("b", 40),
					"flags": "slave", "role-reported": "slave", "master-link-down-time": "0", "master-link-status": "ok",
					"master-host": "10.0.0.1", "master-port": "6379", "slave-priority": "100",
					"slave-repl-offset": "1234", "replica-announced": "1", "down-after-milliseconds": "5000",
				})
				checkMillis(t, sub+"[0]", r1, "last-ok-ping-reply", 300)
				// The second replica has no view of its own: the record speaks.
				_, r2 := pairs(t, list[1])
				checkValues(t, sub+"[1]", r2, map[string]string{
					"name": replica2Addr, "flags": "slave", "slave-priority": "50", "slave-repl-offset": "1200",
					"runid": strings.Repeat("c", 40), "master-link-status": "ok",
				})
			}

			list, _ = c.value("SENTINEL", "SENTINELS", "mymaster").([]any)
			if len(list) != 2 {
				t.Fatalf("SENTINELS: %d entries, want 2", len(list))
			}
			keys, p1 := pairs(t, list[0])
			checkKeys(t, "SENTINELS[0]", keys, sentinelKeys)
			checkValues(t, "SENTINELS[0]", p1, map[string]string{
				"name": RunID("node-b"), "runid": RunID("node-b"), "ip": "127.0.0.1", "port": "26380",
				"flags": "sentinel", "voted-leader": "?", "voted-leader-epoch": "0", "last-ping-sent": "0",
			})
			keys, p2 := pairs(t, list[1])
			checkKeys(t, "SENTINELS[1]", keys, insertAfter(sentinelKeys, "last-ping-reply", "s-down-time"))
			checkValues(t, "SENTINELS[1]", p2, map[string]string{"name": RunID("node-c"), "flags": "s_down,sentinel,disconnected"})
		})
	}
}

// A master that restarted and has not answered PONG since carries
// Sentinel's master_reboot flag, last in Sentinel's order, with no field
// of its own: Sentinel's instance map does not show the period either.
func TestMasterRebootFlag(t *testing.T) {
	f, s := startFake(t, Config{})
	f.setView(masterAddr, InstanceView{SDown: true, SDownSince: time.Now().Add(-time.Second), MasterReboot: true})
	c := dial(t, s.Addr())
	keys, m := pairs(t, c.value("SENTINEL", "MASTER", "mymaster"))
	checkKeys(t, "MASTER", keys, insertAfter(masterKeys, "last-ping-reply", "s-down-time"))
	checkValues(t, "MASTER", m, map[string]string{"flags": "s_down,master,master_reboot"})
}

func TestInstanceMapsDuringFailover(t *testing.T) {
	f, s := startFake(t, Config{})
	now := time.Now()
	f.update(func(st *fsmv1.State) {
		m := st.Masters["mymaster"]
		m.Odown, m.OdownSinceUnixNanos = true, now.Add(-3*time.Second).UnixNano()
		m.Failover = &fsmv1.Failover{Phase: fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING, Candidate: replica2Addr, OldMaster: masterAddr}
		m.Votes = []*fsmv1.Vote{{NodeId: "node-b", Address: masterAddr, Down: true}}
	})
	f.setView(masterAddr, InstanceView{SDown: true, SDownSince: now.Add(-5 * time.Second), Disconnected: true, LastPingSent: now.Add(-6 * time.Second)})
	c := dial(t, s.Addr())

	keys, m := pairs(t, c.value("SENTINEL", "MASTER", "mymaster"))
	want := insertAfter(masterKeys, "link-refcount", "failover-state")
	want = insertAfter(want, "last-ping-reply", "s-down-time", "o-down-time")
	checkKeys(t, "MASTER", keys, want)
	checkValues(t, "MASTER", m, map[string]string{
		"flags": "s_down,o_down,master,disconnected,failover_in_progress", "failover-state": "wait_promotion",
		"info-refresh": "0", "role-reported": "master",
	})
	checkMillis(t, "MASTER", m, "s-down-time", 5000)
	checkMillis(t, "MASTER", m, "o-down-time", 3000)
	checkMillis(t, "MASTER", m, "last-ping-sent", 6000)

	list, _ := c.value("SENTINEL", "REPLICAS", "mymaster").([]any)
	_, r2 := pairs(t, list[1])
	checkValues(t, "candidate", r2, map[string]string{"flags": "slave,promoted"})
	list, _ = c.value("SENTINEL", "SENTINELS", "mymaster").([]any)
	_, p := pairs(t, list[0])
	checkValues(t, "peer that votes down", p, map[string]string{"flags": "sentinel,master_down"})
	if got := c.do("SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "10.0.0.1", "6379", "7", RunID("node-b")); got != "*3\r\n:1\r\n$1\r\n*\r\n:0\r\n" {
		t.Errorf("IS-MASTER-DOWN-BY-ADDR while SDOWN: %q", got)
	}
	if got := dial(t, s.Addr()).do("INFO", "sentinel"); !strings.Contains(got, "master0:name=mymaster,status=odown,") {
		t.Errorf("INFO status: %q", got)
	}
	f.mu.Lock()
	f.tilt, f.tiltSince = true, now.Add(-10*time.Second)
	f.mu.Unlock()
	if got := c.do("SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "10.0.0.1", "6379", "7", "*"); got != "*3\r\n:0\r\n$1\r\n*\r\n:0\r\n" {
		t.Errorf("IS-MASTER-DOWN-BY-ADDR in TILT: %q", got)
	}
	if got := c.do("INFO", "sentinel"); !strings.Contains(got, "sentinel_tilt:1\r\nsentinel_tilt_since_seconds:10\r\n") {
		t.Errorf("INFO in TILT: %q", got)
	}

	// After the promotion: the candidate is the master, one replica is being
	// re-pointed and the old master is a replica record without INFO.
	f.update(func(st *fsmv1.State) {
		m := st.Masters["mymaster"]
		m.Address, m.Epoch, m.Odown, m.Votes = replica2Addr, 4, false, nil
		m.Failover.Phase = fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS
		m.Failover.Reconf = []*fsmv1.ReplicaReconf{{Address: replica1Addr, Phase: fsmv1.ReconfPhase_RECONF_PHASE_SENT}}
		m.Replicas = []*fsmv1.Replica{m.Replicas[0], {Address: masterAddr, Sdown: true, Disconnected: true}}
	})
	if got := c.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"); got != "*2\r\n$8\r\n10.0.0.3\r\n$4\r\n6381\r\n" {
		t.Errorf("address after promotion: %q", got)
	}
	keys, m = pairs(t, c.value("SENTINEL", "MASTER", "mymaster"))
	checkKeys(t, "MASTER", keys, insertAfter(masterKeys, "link-refcount", "failover-state"))
	checkValues(t, "MASTER", m, map[string]string{"flags": "master,failover_in_progress", "failover-state": "reconf_slaves", "config-epoch": "4", "ip": "10.0.0.3"})
	f.setView(masterAddr, InstanceView{}) // forget the own view: the record speaks
	f.mu.Lock()
	delete(f.views, masterAddr)
	f.mu.Unlock()
	list, _ = c.value("SENTINEL", "REPLICAS", "mymaster").([]any)
	if len(list) != 2 {
		t.Fatalf("REPLICAS after promotion: %d, want 2", len(list))
	}
	_, r1 := pairs(t, list[0])
	checkValues(t, "re-pointed replica", r1, map[string]string{"flags": "slave,reconf_sent"})
	keys, old := pairs(t, list[1])
	checkKeys(t, "old master", keys, insertAfter(replicaKeys, "last-ping-reply", "s-down-time"))
	checkValues(t, "old master", old, map[string]string{
		"flags": "s_down,slave,disconnected", "role-reported": "slave", "master-host": "?", "master-port": "0",
		"master-link-status": "err", "slave-priority": "100", "replica-announced": "1", "info-refresh": "0", "runid": "",
	})
}

func TestReplicaAnnouncedHidden(t *testing.T) {
	f, s := startFake(t, Config{})
	v, _ := f.Instance(replica1Addr)
	v.ReplicaAnnounced = false
	f.setView(replica1Addr, v)
	c := dial(t, s.Addr())
	list, _ := c.value("SENTINEL", "REPLICAS", "mymaster").([]any)
	if len(list) != 1 {
		t.Fatalf("REPLICAS: %d entries, want 1 (the hidden one left out)", len(list))
	}
	if _, r := pairs(t, list[0]); r["name"] != replica2Addr {
		t.Errorf("shown replica %s, want %s", r["name"], replica2Addr)
	}
	if _, m := pairs(t, c.value("SENTINEL", "MASTER", "mymaster")); m["num-slaves"] != "2" {
		t.Errorf("num-slaves %s, want 2: hidden replicas still count", m["num-slaves"])
	}
}

func TestCkQuorum(t *testing.T) {
	f, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	cases := []struct {
		quorum uint32
		peers  []Peer
		want   string
	}{
		{1, nil, "+OK 1 usable Sentinels. Quorum and failover authorization can be reached\r\n"},
		{3, []Peer{{ID: "b", Reachable: true}, {ID: "c", Reachable: true}}, "+OK 3 usable Sentinels. Quorum and failover authorization can be reached\r\n"},
		{3, []Peer{{ID: "b", Reachable: true}, {ID: "c"}}, "-NOQUORUM 2 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master\r\n"},
		{1, []Peer{{ID: "b"}, {ID: "c"}}, "-NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the majority and authorize a failover\r\n"},
		{3, []Peer{{ID: "b"}}, "-NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master. Not enough available Sentinels to reach the majority and authorize a failover\r\n"},
	}
	for _, tc := range cases {
		f.update(func(st *fsmv1.State) { st.Masters["mymaster"].Settings.Quorum = tc.quorum })
		f.setPeers(tc.peers...)
		if got := c.do("SENTINEL", "CKQUORUM", "mymaster"); got != tc.want {
			t.Errorf("quorum %d, peers %v:\n got  %q\n want %q", tc.quorum, tc.peers, got, tc.want)
		}
	}
}

func TestInfo(t *testing.T) {
	_, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	got := c.value("INFO", "sentinel")
	want := "# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\n" +
		"sentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n" +
		"master0:name=mymaster,status=ok,address=10.0.0.1:6379,slaves=2,sentinels=3\r\n"
	if got != want {
		t.Errorf("INFO sentinel:\n got  %q\n want %q", got, want)
	}
	all, _ := c.value("INFO").(string)
	for _, sec := range []string{"# Server\r\n", "redis_mode:sentinel\r\n", "run_id:" + RunID("node-a") + "\r\n", "# Clients\r\n", "# Sentinel\r\n"} {
		if !strings.Contains(all, sec) {
			t.Errorf("INFO lacks %q", sec)
		}
	}
	both, _ := c.value("INFO", "SENTINEL", "server").(string)
	if !strings.HasPrefix(both, "# Server\r\n") || !strings.Contains(both, "\r\n\r\n# Sentinel\r\n") || strings.Contains(both, "# Clients") {
		t.Errorf("INFO sentinel server: sections in the wrong order or extra: %q", both)
	}
}

func TestHelloAndClient(t *testing.T) {
	_, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	id := c.value("CLIENT", "ID").(int64)
	want := fmt.Sprintf("%%6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:%d\r\n$4\r\nmode\r\n$8\r\nsentinel\r\n$7\r\nmodules\r\n*0\r\n", id)
	if got := c.do("HELLO", "3", "AUTH", "default", "x", "SETNAME", "me"); got != want {
		t.Errorf("HELLO 3:\n got  %q\n want %q", got, want)
	}
	if got := c.do("CLIENT", "GETNAME"); got != "$2\r\nme\r\n" {
		t.Errorf("name after HELLO SETNAME: %q", got)
	}
	if got := c.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "nope"); got != "_\r\n" {
		t.Errorf("RESP3 null: %q", got)
	}
	if got := c.do("HELLO", "2"); !strings.HasPrefix(got, "*12\r\n") {
		t.Errorf("HELLO 2: %q", got)
	}
	info, _ := c.value("CLIENT", "INFO").(string)
	if !regexp.MustCompile(`^id=\d+ addr=127\.0\.0\.1:\d+ laddr=127\.0\.0\.1:\d+ .*name=me .*cmd=client\|info .*resp=2 `).MatchString(info) {
		t.Errorf("CLIENT INFO: %q", info)
	}

	// CLIENT LIST and KILL across connections.
	other := dial(t, s.Addr())
	other.do("CLIENT", "SETNAME", "victim")
	oid := other.value("CLIENT", "ID").(int64)
	list, _ := c.value("CLIENT", "LIST").(string)
	if strings.Count(list, "\n") != 2 || !strings.Contains(list, "name=victim") {
		t.Errorf("CLIENT LIST: %q", list)
	}
	if got := c.do("CLIENT", "KILL", "ID", strconv.FormatInt(oid, 10)); got != ":1\r\n" {
		t.Errorf("CLIENT KILL ID: %q", got)
	}
	_ = other.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := other.r.ReadByte(); err == nil {
		t.Error("killed client still open")
	}
	// Killing oneself replies first, then closes.
	if got := c.do("CLIENT", "KILL", "ID", strconv.FormatInt(id, 10), "SKIPME", "no"); got != ":1\r\n" {
		t.Errorf("CLIENT KILL self: %q", got)
	}
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("self-killed client still open")
	}
}

func TestQuit(t *testing.T) {
	_, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	c.send("QUIT")
	c.send("PING") // never answered
	if got := c.read(); got != "+OK\r\n" {
		t.Fatalf("QUIT: %q", got)
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := c.r.ReadByte(); err == nil {
		t.Errorf("connection still open after QUIT, read %q", b)
	}
}

func TestCommandIntrospection(t *testing.T) {
	_, s := startFake(t, Config{})
	for _, proto := range []string{"2", "3"} {
		c := dial(t, s.Addr())
		c.do("HELLO", proto)
		all, ok := c.value("COMMAND").([]any)
		if !ok || len(all) != len(commandTable) {
			t.Fatalf("COMMAND: %d entries, want %d", len(all), len(commandTable))
		}
		info, _ := c.value("COMMAND", "INFO", "sentinel").([]any)
		entry, _ := info[0].([]any)
		if len(entry) != 10 || entry[0] != "sentinel" || entry[1] != int64(-2) {
			t.Fatalf("COMMAND INFO sentinel: %#v", entry)
		}
		subs, _ := entry[9].([]any)
		if len(subs) != len(commandTable["sentinel"].subs) {
			t.Errorf("sentinel subcommands: %d, want %d", len(subs), len(commandTable["sentinel"].subs))
		}
		docs, _ := c.value("COMMAND", "DOCS").([]any)
		if len(docs) != 2*len(commandTable) {
			t.Errorf("COMMAND DOCS: %d elements, want %d", len(docs), 2*len(commandTable))
		}
		names, _ := c.value("COMMAND", "LIST").([]any)
		if !slices.Contains(names, any("sentinel|get-master-addr-by-name")) || slices.Contains(names, any("save")) {
			t.Errorf("COMMAND LIST: %v", names)
		}
	}
}

func TestHelpAndInfoCache(t *testing.T) {
	f, s := startFake(t, Config{})
	c := dial(t, s.Addr())
	for _, cmd := range []string{"SENTINEL", "CLIENT", "COMMAND"} {
		got := c.do(cmd, "HELP")
		if !strings.HasPrefix(got, "*") || !strings.Contains(got, "\r\n+"+cmd+" <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n") {
			t.Errorf("%s HELP: %q", cmd, got)
		}
	}
	if got := c.do("SENTINEL", "CONFIG", "GET", "*"); got != "*14\r\n"+
		bulk("resolve-hostnames")+bulk("yes")+bulk("announce-hostnames")+bulk("yes")+bulk("announce-ip")+bulk("")+
		bulk("announce-port")+bulk("0")+bulk("sentinel-user")+bulk("")+bulk("sentinel-pass")+bulk("")+
		bulk("loglevel")+bulk("notice") {
		t.Errorf("CONFIG GET *: %q", got)
	}
	// INFO-CACHE: name, then [age, null] for the master and each replica;
	// unknown and repeated names are skipped.
	v, _ := c.value("SENTINEL", "INFO-CACHE", "mymaster", "nope", "mymaster").([]any)
	if len(v) != 2 || v[0] != "mymaster" {
		t.Fatalf("INFO-CACHE: %#v", v)
	}
	entries, _ := v[1].([]any)
	if len(entries) != 3 {
		t.Fatalf("INFO-CACHE entries: %#v", entries)
	}
	for i, e := range entries {
		pair, _ := e.([]any)
		age, _ := pair[0].(int64)
		if len(pair) != 2 || pair[1] != nil || age < 0 {
			t.Errorf("INFO-CACHE entry %d: %#v", i, pair)
		}
	}
	// Replica 2 has no view of its own: age 0.
	if pair, _ := entries[2].([]any); pair[0] != int64(0) {
		t.Errorf("INFO-CACHE age without a view: %v", pair[0])
	}
	_ = f
}

// Many clients read while the state changes and events flow, then the
// server closes under them; run with -race.
func TestConcurrentClients(t *testing.T) {
	f := newFake()
	topology(f)
	s := start(t, f, Config{})
	testwait.Until(t, 5*time.Second, "the event stream", func() bool { return f.streamCount() == 1 })
	const events = 300
	ready := make(chan struct{}, 3)
	stop := make(chan struct{})
	errs := make(chan error, 16)
	for i := range 6 {
		go func() {
			nc, err := net.Dial("tcp", s.Addr())
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			r := bufio.NewReader(nc)
			if i%2 == 0 {
				// A subscriber reads its confirmation and every event.
				if _, err := nc.Write(encode("PSUBSCRIBE", "*")); err != nil {
					errs <- err
					return
				}
				_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
				if _, err := readRaw(r); err != nil {
					errs <- err
					return
				}
				ready <- struct{}{}
				for n := range events {
					if _, err := readRaw(r); err != nil {
						errs <- fmt.Errorf("subscriber %d, frame %d: %w", i, n, err)
						return
					}
				}
				errs <- nil
				return
			}
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				{
					for _, cmd := range [][]string{{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"}, {"SENTINEL", "MASTERS"}, {"SENTINEL", "REPLICAS", "mymaster"}, {"INFO"}} {
						if _, err := nc.Write(encode(cmd...)); err != nil {
							errs <- err
							return
						}
					}
				}
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				for range 4 {
					if _, err := readRaw(r); err != nil {
						errs <- fmt.Errorf("client %d: %w", i, err)
						return
					}
				}
			}
		}()
	}
	for range 3 {
		select {
		case <-ready:
		case err := <-errs:
			t.Fatal(err)
		}
	}
	for i := range events {
		f.update(func(st *fsmv1.State) { st.Masters["mymaster"].Epoch = uint64(i) })
		f.emit(switchEvent())
	}
	close(stop)
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if s.panics.Load() != 0 || s.dropped.Load() != 0 {
		t.Errorf("panics %d, dropped %d", s.panics.Load(), s.dropped.Load())
	}
}
