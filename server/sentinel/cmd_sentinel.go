package sentinel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const errNoSuchMaster = "ERR No such master with that name"

// master looks a name up in the state, or writes Sentinel's error.
func (c *conn) master(name []byte) (*fsmv1.Master, bool) {
	m := c.s.state().GetMasters()[string(name)]
	if m == nil {
		c.w.Error(errNoSuchMaster)
		return nil, false
	}
	return m, true
}

// refuseStale closes the connection, without a reply, when the backend
// cannot vouch for its state (see Voucher); it reports whether it did. The
// replies to commands before it in a pipeline are still sent.
func (c *conn) refuseStale() bool {
	if c.s.voucher == nil || c.s.voucher.Vouches() {
		return false
	}
	c.closeAfter = true
	return true
}

// sentGetMasterAddr is the command clients send on every new connection, so
// it writes the reply encoded once per state, and allocates nothing.
func sentGetMasterAddr(c *conn, args [][]byte) {
	if c.refuseStale() {
		return
	}
	if reply, known, ok := c.s.addrReply(args[2]); ok {
		if known {
			c.w.Encoded(reply)
		} else {
			c.w.NullArray()
		}
		return
	}
	m := c.s.state().GetMasters()[string(args[2])]
	if m == nil {
		c.w.NullArray()
		return
	}
	host, port := splitAddr(m.GetAddress())
	c.w.ArrayHeader(2)
	c.w.BulkString(host)
	c.w.BulkString(port)
}

func sentMasters(c *conn, _ [][]byte) {
	if c.refuseStale() {
		return
	}
	st := c.s.state()
	names := masterNames(st)
	v := c.s.newView()
	c.w.ArrayHeader(len(names))
	for _, name := range names {
		c.w.StringMap(v.masterFields(st.GetMasters()[name])...)
	}
}

func sentMaster(c *conn, args [][]byte) {
	if c.refuseStale() {
		return
	}
	m, ok := c.master(args[2])
	if !ok {
		return
	}
	c.w.StringMap(c.s.newView().masterFields(m)...)
}

// sentReplicas hides replicas that set replica-announced no, as Sentinel
// does; they stay candidates for promotion.
func sentReplicas(c *conn, args [][]byte) {
	if c.refuseStale() {
		return
	}
	m, ok := c.master(args[2])
	if !ok {
		return
	}
	v := c.s.newView()
	shown := make([]replica, 0, len(m.GetReplicas()))
	for _, r := range m.GetReplicas() {
		if rep := v.replica(r); rep.announced() {
			shown = append(shown, rep)
		}
	}
	c.w.ArrayHeader(len(shown))
	for _, r := range shown {
		c.w.StringMap(v.replicaFields(m, r)...)
	}
}

func sentSentinels(c *conn, args [][]byte) {
	if c.refuseStale() {
		return
	}
	m, ok := c.master(args[2])
	if !ok {
		return
	}
	v := c.s.newView()
	listed := listedPeers(c.s.backend.Peers(true))
	down := c.s.downSince(listed, v.now)
	c.w.ArrayHeader(len(listed))
	for _, p := range listed {
		c.w.StringMap(v.sentinelFields(m, p, down)...)
	}
}

func sentMyID(c *conn, _ [][]byte) { c.w.BulkString(c.s.backend.MyID()) }

// sentCkQuorum: this node plus every reachable peer can vote; the majority
// is counted over all nodes, as Sentinel counts every sentinel it knows.
func sentCkQuorum(c *conn, args [][]byte) {
	m, ok := c.master(args[2])
	if !ok {
		return
	}
	ps := c.s.backend.Peers(true)
	usable, voters := 1, 1+len(ps)
	for _, p := range ps {
		if p.Reachable {
			usable++
		}
	}
	quorum, _, _, _ := settings(m)
	noQuorum := int64(usable) < quorum
	noAuth := usable < voters/2+1
	if !noQuorum && !noAuth {
		c.w.SimpleString(fmt.Sprintf("OK %d usable Sentinels. Quorum and failover authorization can be reached", usable))
		return
	}
	msg := fmt.Sprintf("NOQUORUM %d usable Sentinels. ", usable)
	if noQuorum {
		msg += "Not enough available Sentinels to reach the specified quorum for this master"
	}
	if noAuth {
		if noQuorum {
			msg += ". "
		}
		msg += "Not enough available Sentinels to reach the majority and authorize a failover"
	}
	c.w.Error(msg)
}

func sentFlushConfig(c *conn, _ [][]byte) {
	// Nothing to flush: every change is durable once Raft commits it.
	c.w.SimpleString("OK")
}

// sentIsMasterDown gives this node's own opinion. Raftinel elects its
// failover leader through Raft, so a vote request (a run id instead of "*")
// is answered without a vote: leader "*", epoch 0.
func sentIsMasterDown(c *conn, args [][]byte) {
	port, ok1 := parseInt(args[3])
	_, ok2 := parseInt(args[4])
	if !ok1 || !ok2 {
		c.w.Error("ERR value is not an integer or out of range")
		return
	}
	down := false
	if tilt, _ := c.s.backend.Tilt(); !tilt {
		ip := string(args[2])
		for _, m := range c.s.state().GetMasters() {
			host, p := splitAddr(m.GetAddress())
			if host != ip || p != strconv.FormatInt(port, 10) {
				continue
			}
			iv, has := c.s.backend.Instance(m.GetAddress())
			v := &view{s: c.s, myID: c.s.backend.MyID()}
			if d, _ := v.masterDown(m, iv, has); d {
				down = true
			}
		}
	}
	c.w.ArrayHeader(3)
	if down {
		c.w.Int(1)
	} else {
		c.w.Int(0)
	}
	c.w.BulkString("*")
	c.w.Int(0)
}

// configParams are the global parameters CONFIG GET reports, with fixed
// values: a node's settings are its flags, not runtime configuration.
// Raftinel stores and serves addresses as given, hostnames included, which
// is what resolve-hostnames and announce-hostnames yes mean.
var configParams = [][2]string{
	{"resolve-hostnames", "yes"},
	{"announce-hostnames", "yes"},
	{"announce-ip", ""},
	{"announce-port", "0"},
	{"sentinel-user", ""},
	{"sentinel-pass", ""},
	{"loglevel", "notice"},
}

func sentConfig(c *conn, args [][]byte) {
	switch strings.ToLower(string(args[2])) {
	case "get":
		var out []string
		for _, p := range configParams {
			for _, pat := range args[3:] {
				if globMatch(string(pat), p[0], true) {
					out = append(out, p[0], p[1])
					break
				}
			}
		}
		c.w.StringMap(out...)
	case "set":
		for _, p := range configParams {
			if strings.EqualFold(p[0], string(args[3])) {
				c.w.Error(fmt.Sprintf("ERR SENTINEL CONFIG SET '%s' is not supported: Raftinel's global settings are node flags", p[0]))
				return
			}
		}
		c.w.Error(fmt.Sprintf("ERR Invalid argument '%s' to SENTINEL CONFIG SET", args[3]))
	default:
		c.w.Error("ERR Only SENTINEL CONFIG GET <option> / SET <option> <value> are supported.")
	}
}

// sentInfoCache reports, per master, the age of this node's INFO of the
// master and each replica. Raftinel keeps the parsed fields, not the INFO
// text, so the text is always null.
func sentInfoCache(c *conn, args [][]byte) {
	st := c.s.state()
	seen := map[string]bool{}
	var ms []*fsmv1.Master
	for _, a := range args[2:] {
		if m := st.GetMasters()[string(a)]; m != nil && !seen[m.GetName()] {
			seen[m.GetName()] = true
			ms = append(ms, m)
		}
	}
	v := c.s.newView()
	age := func(addr string) {
		c.w.ArrayHeader(2)
		iv, has := c.s.backend.Instance(addr)
		if has && !iv.InfoRefresh.IsZero() {
			c.w.Int(max(v.now.Sub(iv.InfoRefresh).Milliseconds(), 0))
		} else {
			c.w.Int(0)
		}
		c.w.NullBulk()
	}
	c.w.ArrayHeader(2 * len(ms))
	for _, m := range ms {
		c.w.BulkString(m.GetName())
		c.w.ArrayHeader(1 + len(m.GetReplicas()))
		age(m.GetAddress())
		for _, r := range m.GetReplicas() {
			age(r.GetAddress())
		}
	}
}

func sentPendingScripts(c *conn, _ [][]byte) { c.w.ArrayHeader(0) }

func sentDebug(c *conn, _ [][]byte) {
	c.w.Error("ERR SENTINEL DEBUG is not supported: Raftinel's timing parameters are node settings")
}

func sentSimulateFailure(c *conn, args [][]byte) {
	known := false
	for _, a := range args[2:] {
		switch strings.ToLower(string(a)) {
		case "help":
			c.w.StringArray("crash-after-election", "crash-after-promotion")
			return
		case "crash-after-election", "crash-after-promotion":
			known = true
		default:
			c.w.Error("ERR Unknown failure simulation specified")
			return
		}
	}
	if known {
		c.w.Error("ERR SENTINEL SIMULATE-FAILURE is not supported: start the node with --simulate-failure instead")
	}
}

func sentHelp(c *conn, _ [][]byte) {
	writeHelp(c, []string{
		"SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"CKQUORUM <master-name>",
		"    Check whether the reachable coordinator nodes can reach the quorum and the",
		"    majority needed to authorize a failover.",
		"CONFIG GET <param> [<param> ...]",
		"    Get global parameters (fixed; CONFIG SET is refused).",
		"GET-MASTER-ADDR-BY-NAME <master-name>",
		"    Return the ip and port of the current master.",
		"FAILOVER <master-name>",
		"    Start a failover without waiting for the master to be down.",
		"FLUSHCONFIG",
		"    Succeed: the configuration is in the replicated log already.",
		"INFO-CACHE <master-name> [<master-name> ...]",
		"    Return the age of this node's INFO of a master and its replicas.",
		"IS-MASTER-DOWN-BY-ADDR <ip> <port> <current-epoch> <runid>",
		"    Report whether this node sees the master at ip:port down.",
		"MASTER <master-name>",
		"    Show the state of a master.",
		"MASTERS",
		"    Show every monitored master.",
		"MONITOR <name> <ip> <port> <quorum>",
		"    Start monitoring a new master.",
		"MYID",
		"    Return this node's run id.",
		"PENDING-SCRIPTS",
		"    Return an empty list: no scripts run here.",
		"REMOVE <master-name>",
		"    Stop monitoring a master.",
		"REPLICAS <master-name>",
		"    Show the replicas of a master (SLAVES is the old name).",
		"RESET <pattern>",
		"    Reset the masters whose names match the pattern.",
		"SENTINELS <master-name>",
		"    Show the other coordinator nodes.",
		"SET <master-name> <option> <value> [<option> <value> ...]",
		"    Change settings of a master.",
		"HELP",
		"    Print this help.",
	})
}

// Writes. These handlers run without c.mu (flagUnlocked) because they wait
// for Raft; they take it to reply.

func (c *conn) replyLocked(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn()
}

// replyWriteErr writes a backend error: the package's errors with their
// exact text, any text that already starts with an error code (INPROG,
// NOGOODSLAVE, ERR...) as is, anything else behind "ERR ".
func replyWriteErr(c *conn, err error) {
	var msg string
	switch {
	case errors.Is(err, ErrInProgress):
		msg = ErrInProgress.Error()
	case errors.Is(err, ErrNoGoodReplica):
		msg = ErrNoGoodReplica.Error()
	case errors.Is(err, ErrNoSuchMaster):
		msg = errNoSuchMaster
	default:
		msg = err.Error()
		if !hasErrorCode(msg) {
			msg = "ERR " + msg
		}
	}
	c.w.Error(msg)
}

// hasErrorCode reports whether msg starts with an upper-case word of at
// least two letters followed by a space, the shape of a Redis error code.
func hasErrorCode(msg string) bool {
	word, _, ok := strings.Cut(msg, " ")
	if !ok || len(word) < 2 {
		return false
	}
	for i := 0; i < len(word); i++ {
		if word[i] < 'A' || word[i] > 'Z' {
			return false
		}
	}
	return true
}

// exists checks a master name against the state, replying when unknown.
func (c *conn) exists(name string) bool {
	if c.s.state().GetMasters()[name] != nil {
		return true
	}
	c.replyLocked(func() { c.w.Error(errNoSuchMaster) })
	return false
}

// finishWrite replies +OK or the error of a backend write.
func (c *conn) finishWrite(err error) {
	c.replyLocked(func() {
		if err != nil {
			replyWriteErr(c, err)
			return
		}
		c.w.SimpleString("OK")
	})
}

func sentFailover(c *conn, args [][]byte) {
	name := string(args[2])
	if !c.exists(name) {
		return
	}
	c.finishWrite(c.write(func(ctx context.Context) error { return c.s.backend.Failover(ctx, name) }))
}

func sentRemove(c *conn, args [][]byte) {
	name := string(args[2])
	if !c.exists(name) {
		return
	}
	c.finishWrite(c.write(func(ctx context.Context) error { return c.s.backend.Remove(ctx, name) }))
}

// sentMonitor validates in Sentinel's order (quorum syntax, port syntax,
// quorum value, address) and leaves the rest (name rules, duplicates) to
// the backend, whose errors carry Sentinel's text.
func sentMonitor(c *conn, args [][]byte) {
	fail := func(msg string) { c.replyLocked(func() { c.w.Error(msg) }) }
	quorum, ok := parseInt(args[5])
	if !ok {
		fail("ERR Invalid quorum")
		return
	}
	port, ok := parseInt(args[4])
	if !ok {
		fail("ERR Invalid port")
		return
	}
	if quorum <= 0 {
		fail("ERR Quorum must be 1 or greater.")
		return
	}
	host := string(args[3])
	if host == "" || strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		fail("ERR Invalid IP address or hostname specified")
		return
	}
	if port < 0 || port > 65535 {
		fail("ERR Invalid port number.")
		return
	}
	if quorum > 1<<31-1 {
		fail("ERR Invalid quorum")
		return
	}
	name, addr := string(args[2]), net.JoinHostPort(host, strconv.FormatInt(port, 10))
	c.finishWrite(c.write(func(ctx context.Context) error { return c.s.backend.Monitor(ctx, name, addr, int(quorum)) }))
}

// scriptOptions are refused as Sentinel refuses them under its default
// deny-scripts-reconfig, unless the node was started with
// --allow-script-reconfig (then the leader checks every node).
var scriptOptions = map[string]bool{"notification-script": true, "client-reconfig-script": true}

// sentSet passes the options to the backend, which validates them and
// applies all or none (Sentinel applies the ones before a bad one).
func sentSet(c *conn, args [][]byte) {
	name := string(args[2])
	if !c.exists(name) {
		return
	}
	var opts [][2]string
	for j := 3; j < len(args); {
		opt := string(args[j])
		more := len(args) - 1 - j
		switch {
		case scriptOptions[strings.ToLower(opt)] && more >= 1 && !c.s.cfg.AllowScriptReconfig:
			c.replyLocked(func() {
				c.w.Error("ERR Reconfiguration of scripts path is denied for security reasons. Check the deny-scripts-reconfig configuration directive in your Sentinel configuration")
			})
			return
		case strings.EqualFold(opt, "rename-command") && more >= 2:
			opts = append(opts, [2]string{opt, string(args[j+1]) + " " + string(args[j+2])})
			j += 3
		case !strings.EqualFold(opt, "rename-command") && more >= 1:
			opts = append(opts, [2]string{opt, string(args[j+1])})
			j += 2
		default:
			c.replyLocked(func() {
				c.w.Error(fmt.Sprintf("ERR Unknown option or number of arguments for SENTINEL SET '%s'", opt))
			})
			return
		}
	}
	c.finishWrite(c.write(func(ctx context.Context) error { return c.s.backend.Set(ctx, name, opts) }))
}

// sentReset resets every master whose name matches the glob (case
// sensitive, as Sentinel) and returns how many. A master removed meanwhile
// is not counted; any other failure is returned.
func sentReset(c *conn, args [][]byte) {
	pattern := string(args[2])
	var names []string
	for _, name := range masterNames(c.s.state()) {
		if globMatch(pattern, name, false) {
			names = append(names, name)
		}
	}
	n := 0
	for _, name := range names {
		err := c.write(func(ctx context.Context) error { return c.s.backend.Reset(ctx, name) })
		if errors.Is(err, ErrNoSuchMaster) {
			continue
		}
		if err != nil {
			c.replyLocked(func() { replyWriteErr(c, err) })
			return
		}
		n++
	}
	c.replyLocked(func() { c.w.Int(int64(n)) })
}
