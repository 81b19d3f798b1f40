package sentinel

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

const (
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errSyntax    = "ERR syntax error"
)

func cmdPing(c *conn, args [][]byte) {
	if len(args) > 2 {
		c.w.Error(wrongArity("ping"))
		return
	}
	// A RESP2 subscriber can only read pushes, so Redis answers PING there
	// with a push-shaped ["pong", <argument or "">].
	if c.w.Protocol() == 2 && c.subscriptions() > 0 {
		c.w.ArrayHeader(2)
		c.w.BulkString("pong")
		if len(args) == 2 {
			c.w.Bulk(args[1])
		} else {
			c.w.BulkString("")
		}
		return
	}
	if len(args) == 2 {
		c.w.Bulk(args[1])
		return
	}
	c.w.SimpleString("PONG")
}

func cmdQuit(c *conn, _ [][]byte) {
	c.w.SimpleString("OK")
	c.closeAfter = true
}

// cmdHello follows Redis: parse everything first, then authenticate, then
// require authentication, then set the name, and only then switch protocol.
func cmdHello(c *conn, args [][]byte) {
	ver := 0
	next := 1
	if len(args) >= 2 {
		n, ok := parseInt(args[1])
		if !ok {
			c.w.Error("ERR Protocol version is not an integer or out of range")
			return
		}
		if n < 2 || n > 3 {
			c.w.Error("NOPROTO unsupported protocol version")
			return
		}
		ver = int(n)
		next = 2
	}
	var user, pass, name []byte
	auth, setName := false, false
	for j := next; j < len(args); j++ {
		more := len(args) - 1 - j
		switch {
		case bytes.EqualFold(args[j], []byte("auth")) && more >= 2:
			user, pass, auth = args[j+1], args[j+2], true
			j += 2
		case bytes.EqualFold(args[j], []byte("setname")) && more >= 1:
			name, setName = args[j+1], true
			j++
		default:
			c.w.Error(fmt.Sprintf("ERR Syntax error in HELLO option '%s'", args[j]))
			return
		}
	}
	if auth {
		u, ok := c.checkPassword(user, pass)
		if !ok {
			c.w.Error(errWrongPass)
			return
		}
		c.authenticate(u)
	}
	if !c.authed {
		c.w.Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if setName && !c.setName(name) {
		return
	}
	if ver != 0 {
		_ = c.w.SetProtocol(ver)
		c.proto.Store(int32(ver))
	}
	// Sentinel's HELLO has no "role" entry: Redis adds it only outside
	// sentinel mode.
	c.w.MapHeader(6)
	c.w.BulkString("server")
	c.w.BulkString("redis")
	c.w.BulkString("version")
	c.w.BulkString(RedisVersion)
	c.w.BulkString("proto")
	c.w.Int(int64(c.w.Protocol()))
	c.w.BulkString("id")
	c.w.Int(c.id)
	c.w.BulkString("mode")
	c.w.BulkString("sentinel")
	c.w.BulkString("modules")
	c.w.ArrayHeader(0)
}

func cmdAuth(c *conn, args [][]byte) {
	if len(args) > 3 {
		c.w.Error(errSyntax)
		return
	}
	var user []byte
	pass := args[1]
	if len(args) == 3 {
		user, pass = args[1], args[2]
	} else if c.s.cfg.Password == "" {
		c.w.Error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
		return
	}
	u, ok := c.checkPassword(user, pass)
	if !ok {
		c.w.Error(errWrongPass)
		return
	}
	c.authenticate(u)
	c.w.SimpleString("OK")
}

// setName validates and stores a client name, or writes Redis's error.
func (c *conn) setName(name []byte) bool {
	for _, b := range name {
		if b < '!' || b > '~' {
			c.w.Error("ERR Client names cannot contain spaces, newlines or special characters.")
			return false
		}
	}
	c.infoMu.Lock()
	c.name = string(name)
	c.infoMu.Unlock()
	return true
}

func cmdClientSetName(c *conn, args [][]byte) {
	if c.setName(args[2]) {
		c.w.SimpleString("OK")
	}
}

func cmdClientGetName(c *conn, _ [][]byte) {
	c.infoMu.Lock()
	name := c.name
	c.infoMu.Unlock()
	if name == "" {
		c.w.NullBulk()
		return
	}
	c.w.BulkString(name)
}

// cmdClientSetInfo accepts what clients send on connect (Redis 7.2);
// go-redis, redis-py and Jedis ignore an error here, but OK is what they
// expect from a current server.
func cmdClientSetInfo(c *conn, args [][]byte) {
	attr := strings.ToLower(string(args[2]))
	if attr != "lib-name" && attr != "lib-ver" {
		c.w.Error(fmt.Sprintf("ERR Unrecognized option '%s'", args[2]))
		return
	}
	for _, b := range args[3] {
		if b < '!' || b > '~' {
			c.w.Error("ERR " + attr + " cannot contain spaces, newlines or special characters.")
			return
		}
	}
	c.infoMu.Lock()
	if attr == "lib-name" {
		c.libName = string(args[3])
	} else {
		c.libVer = string(args[3])
	}
	c.infoMu.Unlock()
	c.w.SimpleString("OK")
}

func cmdClientID(c *conn, _ [][]byte) { c.w.Int(c.id) }

func cmdClientInfo(c *conn, _ [][]byte) { c.w.BulkString(c.clientLine()) }

// clientType is the TYPE filter value of CLIENT LIST/KILL for c.
func clientType(c *conn) string {
	if c.subscriptions() > 0 {
		return "pubsub"
	}
	return "normal"
}

func validClientType(t string) bool {
	switch t {
	case "normal", "pubsub", "master", "replica", "slave":
		return true
	}
	return false
}

func cmdClientList(c *conn, args [][]byte) {
	var typ string
	var ids map[int64]bool
	for j := 2; j < len(args); {
		switch opt := strings.ToLower(string(args[j])); {
		case opt == "type" && j+1 < len(args):
			typ = strings.ToLower(string(args[j+1]))
			if !validClientType(typ) {
				c.w.Error(fmt.Sprintf("ERR Unknown client type '%s'", args[j+1]))
				return
			}
			j += 2
		case opt == "id" && j+1 < len(args):
			ids = map[int64]bool{}
			for j++; j < len(args); j++ {
				id, ok := parseInt(args[j])
				if !ok || id < 1 {
					c.w.Error("ERR Invalid client ID")
					return
				}
				ids[id] = true
			}
		default:
			c.w.Error(errSyntax)
			return
		}
	}
	var b strings.Builder
	for _, o := range c.s.connections() {
		if typ != "" && clientType(o) != typ || ids != nil && !ids[o.id] {
			continue
		}
		b.WriteString(o.clientLine())
	}
	c.w.BulkString(b.String())
}

// cmdClientKill supports the old form (CLIENT KILL addr) and the filter
// form with ID, ADDR, LADDR, TYPE, USER and SKIPME.
func cmdClientKill(c *conn, args [][]byte) {
	if len(args) == 3 {
		addr := string(args[2])
		for _, o := range c.s.connections() {
			if o.remote == addr {
				c.w.SimpleString("OK")
				c.kill(o)
				return
			}
		}
		c.w.Error("ERR No such client")
		return
	}
	if len(args)%2 != 0 {
		c.w.Error(errSyntax)
		return
	}
	var id int64
	var addr, laddr, typ, user string
	skipMe := true
	for j := 2; j < len(args); j += 2 {
		v := args[j+1]
		switch strings.ToLower(string(args[j])) {
		case "id":
			n, ok := parseInt(v)
			if !ok || n < 1 {
				c.w.Error("ERR client-id should be greater than 0")
				return
			}
			id = n
		case "addr":
			addr = string(v)
		case "laddr":
			laddr = string(v)
		case "type":
			typ = strings.ToLower(string(v))
			if !validClientType(typ) {
				c.w.Error(fmt.Sprintf("ERR Unknown client type '%s'", v))
				return
			}
		case "user":
			user = string(v)
		case "skipme":
			switch strings.ToLower(string(v)) {
			case "yes":
				skipMe = true
			case "no":
				skipMe = false
			default:
				c.w.Error(errSyntax)
				return
			}
		default:
			c.w.Error(errSyntax)
			return
		}
	}
	var victims []*conn
	for _, o := range c.s.connections() {
		switch {
		case id != 0 && o.id != id,
			addr != "" && o.remote != addr,
			laddr != "" && o.local != laddr,
			typ != "" && clientType(o) != typ,
			user != "" && user != "default",
			skipMe && o == c:
			continue
		}
		victims = append(victims, o)
	}
	c.w.Int(int64(len(victims)))
	for _, o := range victims {
		c.kill(o)
	}
}

// kill closes o; when o is this connection, only after the reply is sent.
func (c *conn) kill(o *conn) {
	if o == c {
		c.closeAfter = true
		return
	}
	o.close()
}

func cmdClientHelp(c *conn, _ [][]byte) {
	writeHelp(c, []string{
		"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"GETNAME",
		"    Return the name of the current connection.",
		"ID",
		"    Return the ID of the current connection.",
		"INFO",
		"    Return information about the current client connection.",
		"KILL <ip:port>",
		"    Kill connection made from <ip:port>.",
		"KILL <option> <value> [<option> <value> [...]]",
		"    Kill connections. Options are ID, ADDR, LADDR, TYPE (NORMAL|PUBSUB),",
		"    USER and SKIPME (YES|NO, default YES).",
		"LIST [TYPE (NORMAL|PUBSUB)] [ID <id> [...]]",
		"    Return information about client connections.",
		"SETINFO (LIB-NAME|LIB-VER) <value>",
		"    Record the client library name or version.",
		"SETNAME <name>",
		"    Assign the name <name> to the current connection.",
		"HELP",
		"    Print this help.",
	})
}

func writeHelp(c *conn, lines []string) {
	c.w.ArrayHeader(len(lines))
	for _, l := range lines {
		c.w.SimpleString(l)
	}
}

func cmdShutdown(c *conn, _ [][]byte) {
	c.w.Error("ERR SHUTDOWN is refused: a Raftinel node is stopped through its service manager (SIGTERM), not over the Sentinel protocol")
}

// cmdPublish mirrors Sentinel, which accepts PUBLISH only for the hello
// channel. Raftinel learns its peers through Raft, so a hello is ignored
// and reaches no one.
func cmdPublish(c *conn, args [][]byte) {
	if string(args[1]) != "__sentinel__:hello" {
		c.w.Error("ERR Only HELLO messages are accepted by Sentinel instances.")
		return
	}
	c.w.Int(0)
}

func cmdRole(c *conn, _ [][]byte) {
	names := masterNames(c.s.state())
	c.w.ArrayHeader(2)
	c.w.BulkString("sentinel")
	c.w.StringArray(names...)
}

// Sections of INFO, in output order.
var infoSections = []string{"server", "clients", "sentinel"}

func cmdInfo(c *conn, args [][]byte) {
	want := map[string]bool{}
	if len(args) == 1 {
		for _, s := range infoSections {
			want[s] = true
		}
	}
	for _, a := range args[1:] {
		switch s := strings.ToLower(string(a)); s {
		case "default", "all", "everything":
			for _, s := range infoSections {
				want[s] = true
			}
		default:
			want[s] = true
		}
	}
	var parts []string
	for _, s := range infoSections {
		if !want[s] {
			continue
		}
		switch s {
		case "server":
			parts = append(parts, c.infoServer())
		case "clients":
			parts = append(parts, c.infoClients())
		case "sentinel":
			parts = append(parts, c.s.infoSentinel())
		}
	}
	c.w.BulkString(strings.Join(parts, "\r\n"))
}

func (c *conn) infoServer() string {
	now := time.Now()
	up := now.Sub(c.s.started)
	_, port, _ := net.SplitHostPort(c.local)
	exe, _ := os.Executable()
	return "# Server\r\n" +
		"redis_version:" + RedisVersion + "\r\n" +
		"redis_mode:sentinel\r\n" +
		"os:" + runtime.GOOS + " " + runtime.GOARCH + "\r\n" +
		"arch_bits:" + strconv.Itoa(strconv.IntSize) + "\r\n" +
		"process_id:" + strconv.Itoa(os.Getpid()) + "\r\n" +
		"run_id:" + c.s.backend.MyID() + "\r\n" +
		"tcp_port:" + port + "\r\n" +
		"server_time_usec:" + strconv.FormatInt(now.UnixMicro(), 10) + "\r\n" +
		"uptime_in_seconds:" + strconv.FormatInt(int64(up/time.Second), 10) + "\r\n" +
		"uptime_in_days:" + strconv.FormatInt(int64(up/(24*time.Hour)), 10) + "\r\n" +
		"executable:" + exe + "\r\n"
}

func (c *conn) infoClients() string {
	return "# Clients\r\n" +
		"connected_clients:" + strconv.Itoa(c.s.numConns()) + "\r\n" +
		"maxclients:" + strconv.Itoa(c.s.cfg.MaxClients) + "\r\n" +
		"blocked_clients:0\r\n" +
		"tracking_clients:0\r\n"
}

// parseInt parses a decimal integer as Redis's string2ll does: an optional
// minus sign, no plus sign, no spaces, no leading zeros.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	neg := b[0] == '-'
	d := b
	if neg {
		d = b[1:]
	}
	if len(d) == 0 || d[0] == '0' && len(d) > 1 || d[0] < '0' || d[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, false
	}
	if neg && n == 0 {
		return 0, false // "-0" is not canonical
	}
	return n, true
}
