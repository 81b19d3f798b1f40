package sentinel

import "sort"

type cmdFlags uint8

const (
	// flagNoAuth: allowed before authentication (AUTH, HELLO, QUIT).
	flagNoAuth cmdFlags = 1 << iota
	// flagPubSub: allowed on a RESP2 connection that is subscribed.
	flagPubSub
	// flagUnlocked: the handler takes conn.mu itself because it waits for
	// the backend (Raft) before it can reply.
	flagUnlocked
	// flagDiscovery: a read-only ACL user may run it (discovery of the
	// master, its replicas and the nodes, events, and the connection's own
	// commands).
	flagDiscovery
	// flagSubscribes: it may start the connection's pump, whose writes
	// need the connection out of the poll loop.
	flagSubscribes
)

// command is one entry of the command table. Containers (SENTINEL, CLIENT,
// COMMAND) hold their subcommands, each with its own arity, as Redis 7's
// table does; name is then "container|sub", the form Redis prints in arity
// and context errors.
type command struct {
	name  string
	arity int
	flags cmdFlags
	run   func(c *conn, args [][]byte)
	subs  map[string]*command

	// For COMMAND INFO and COMMAND DOCS.
	info    []string // command flags
	acl     []string // ACL categories
	summary string
	since   string
	group   string
}

var commandTable map[string]*command

// The table is built in init because COMMAND's handlers read it.
func init() {
	commandTable = map[string]*command{}
	add := func(parent *command, name string, arity int, flags cmdFlags, run func(*conn, [][]byte), info, acl []string, since, group, summary string) *command {
		k := &command{name: name, arity: arity, flags: flags, run: run, info: info, acl: acl, since: since, group: group, summary: summary}
		if parent == nil {
			commandTable[name] = k
			return k
		}
		if parent.subs == nil {
			parent.subs = map[string]*command{}
		}
		k.name = parent.name + "|" + name
		parent.subs[name] = k
		return k
	}
	fastConn := []string{"@fast", "@connection"}
	slowConn := []string{"@slow", "@connection"}
	admin := []string{"@admin", "@slow", "@dangerous"}
	pubsub := []string{"@pubsub", "@slow"}

	add(nil, "ping", -1, flagPubSub|flagDiscovery, cmdPing, []string{"fast"}, fastConn, "1.0.0", "connection", "Returns the server's liveliness response.")
	add(nil, "quit", -1, flagNoAuth|flagPubSub|flagDiscovery, cmdQuit, []string{"allow_busy", "noscript", "loading", "stale", "fast", "no_auth"}, fastConn, "1.0.0", "connection", "Closes the connection.")
	add(nil, "hello", -1, flagNoAuth|flagDiscovery, cmdHello, []string{"noscript", "loading", "stale", "fast", "no_auth"}, fastConn, "6.0.0", "connection", "Handshakes with the server.")
	add(nil, "auth", -2, flagNoAuth|flagDiscovery, cmdAuth, []string{"noscript", "loading", "stale", "fast", "no_auth"}, fastConn, "1.0.0", "connection", "Authenticates the connection.")
	add(nil, "info", -1, 0, cmdInfo, []string{"loading", "stale"}, []string{"@slow", "@dangerous"}, "1.0.0", "server", "Returns information and statistics about the server.")
	add(nil, "role", 1, 0, cmdRole, []string{"noscript", "loading", "stale", "fast"}, []string{"@admin", "@fast", "@dangerous"}, "2.8.12", "server", "Returns the replication role.")
	add(nil, "shutdown", -1, 0, cmdShutdown, []string{"admin", "noscript", "loading", "stale"}, admin, "1.0.0", "server", "Refused: a Raftinel node is stopped by its service manager, not over RESP.")
	add(nil, "publish", 3, 0, cmdPublish, []string{"pubsub", "loading", "stale", "fast"}, []string{"@pubsub", "@fast"}, "2.0.0", "pubsub", "Accepted only for the hello channel, which Raftinel ignores.")
	add(nil, "subscribe", -2, flagPubSub|flagDiscovery|flagSubscribes, cmdSubscribe, []string{"pubsub", "noscript", "loading", "stale"}, pubsub, "2.0.0", "pubsub", "Listens for events on channels (event names).")
	add(nil, "psubscribe", -2, flagPubSub|flagDiscovery|flagSubscribes, cmdPSubscribe, []string{"pubsub", "noscript", "loading", "stale"}, pubsub, "2.0.0", "pubsub", "Listens for events on channels that match patterns.")
	add(nil, "unsubscribe", -1, flagPubSub|flagDiscovery, cmdUnsubscribe, []string{"pubsub", "noscript", "loading", "stale"}, pubsub, "2.0.0", "pubsub", "Stops listening to channels.")
	add(nil, "punsubscribe", -1, flagPubSub|flagDiscovery, cmdPUnsubscribe, []string{"pubsub", "noscript", "loading", "stale"}, pubsub, "2.0.0", "pubsub", "Stops listening to patterns.")

	cl := add(nil, "client", -2, 0, nil, nil, []string{"@slow"}, "2.4.0", "connection", "A container for client connection commands.")
	add(cl, "setname", 3, flagDiscovery, cmdClientSetName, []string{"noscript", "loading", "stale"}, slowConn, "2.6.9", "connection", "Sets the connection name.")
	add(cl, "getname", 2, flagDiscovery, cmdClientGetName, []string{"noscript", "loading", "stale"}, slowConn, "2.6.9", "connection", "Returns the name of the connection.")
	add(cl, "setinfo", 4, flagDiscovery, cmdClientSetInfo, []string{"noscript", "loading", "stale"}, slowConn, "7.2.0", "connection", "Sets information specific to the client or connection.")
	add(cl, "id", 2, flagDiscovery, cmdClientID, []string{"noscript", "loading", "stale"}, slowConn, "5.0.0", "connection", "Returns the unique client ID of the connection.")
	add(cl, "info", 2, flagDiscovery, cmdClientInfo, []string{"noscript", "loading", "stale"}, slowConn, "6.2.0", "connection", "Returns information about the connection.")
	add(cl, "list", -2, 0, cmdClientList, []string{"admin", "noscript", "loading", "stale"}, append([]string{"@admin"}, slowConn[0], "@dangerous", "@connection"), "2.4.0", "connection", "Lists open connections.")
	add(cl, "kill", -3, 0, cmdClientKill, []string{"admin", "noscript", "loading", "stale"}, append([]string{"@admin"}, slowConn[0], "@dangerous", "@connection"), "2.4.0", "connection", "Terminates open connections.")
	add(cl, "help", 2, 0, cmdClientHelp, []string{"loading", "stale"}, slowConn, "5.0.0", "connection", "Returns helpful text about the different subcommands.")

	co := add(nil, "command", -1, 0, cmdCommand, []string{"loading", "stale"}, slowConn, "2.8.13", "server", "Returns detailed information about all commands.")
	add(co, "count", 2, 0, cmdCommandCount, []string{"loading", "stale"}, slowConn, "2.8.13", "server", "Returns a count of commands.")
	add(co, "docs", -2, 0, cmdCommandDocs, []string{"loading", "stale"}, slowConn, "7.0.0", "server", "Returns documentary information about one, multiple or all commands.")
	add(co, "info", -2, 0, cmdCommandInfo, []string{"loading", "stale"}, slowConn, "2.8.13", "server", "Returns information about one, multiple or all commands.")
	add(co, "list", -2, 0, cmdCommandList, []string{"loading", "stale"}, slowConn, "7.0.0", "server", "Returns a list of command names.")
	add(co, "help", 2, 0, cmdCommandHelp, []string{"loading", "stale"}, slowConn, "5.0.0", "server", "Returns helpful text about the different subcommands.")

	se := add(nil, "sentinel", -2, 0, nil, []string{"admin"}, admin, "2.8.4", "sentinel", "A container for Redis Sentinel commands.")
	sa := []string{"admin"}
	add(se, "ckquorum", 3, 0, sentCkQuorum, sa, admin, "2.8.4", "sentinel", "Checks for a Redis Sentinel quorum.")
	add(se, "config", -4, 0, sentConfig, sa, admin, "6.2.0", "sentinel", "Gets (or refuses to set) the Sentinel configuration.")
	add(se, "debug", -2, 0, sentDebug, sa, admin, "7.0.0", "sentinel", "Not supported: timing parameters are node settings.")
	add(se, "failover", 3, flagUnlocked, sentFailover, sa, admin, "2.8.4", "sentinel", "Forces a failover of a master.")
	add(se, "flushconfig", 2, 0, sentFlushConfig, sa, admin, "2.8.4", "sentinel", "Succeeds at once: the configuration lives in the Raft log.")
	add(se, "get-master-addr-by-name", 3, flagDiscovery, sentGetMasterAddr, sa, admin, "2.8.4", "sentinel", "Returns the address of a master.")
	add(se, "help", 2, flagDiscovery, sentHelp, []string{"loading", "stale"}, []string{"@slow"}, "6.2.0", "sentinel", "Returns helpful text about the different subcommands.")
	add(se, "info-cache", -3, 0, sentInfoCache, sa, admin, "3.2.0", "sentinel", "Returns the age of the cached INFO of a master and its replicas.")
	add(se, "is-master-down-by-addr", 6, 0, sentIsMasterDown, sa, admin, "2.8.4", "sentinel", "Reports whether this node sees a master down.")
	add(se, "master", 3, flagDiscovery, sentMaster, sa, admin, "2.8.4", "sentinel", "Returns the state of a master.")
	add(se, "masters", 2, flagDiscovery, sentMasters, sa, admin, "2.8.4", "sentinel", "Returns a list of monitored masters.")
	add(se, "monitor", 6, flagUnlocked, sentMonitor, sa, admin, "2.8.4", "sentinel", "Starts monitoring a master.")
	add(se, "myid", 2, flagDiscovery, sentMyID, sa, admin, "6.2.0", "sentinel", "Returns the run id of this node.")
	add(se, "pending-scripts", 2, 0, sentPendingScripts, sa, admin, "2.8.4", "sentinel", "Returns an empty list: Raftinel runs no scripts.")
	add(se, "remove", 3, flagUnlocked, sentRemove, sa, admin, "2.8.4", "sentinel", "Stops monitoring a master.")
	add(se, "replicas", 3, flagDiscovery, sentReplicas, sa, admin, "5.0.0", "sentinel", "Returns a list of the replicas of a master.")
	add(se, "reset", 3, flagUnlocked, sentReset, sa, admin, "2.8.4", "sentinel", "Resets the masters whose names match a pattern.")
	add(se, "sentinels", 3, flagDiscovery, sentSentinels, sa, admin, "2.8.4", "sentinel", "Returns the other coordinator nodes.")
	add(se, "set", -5, flagUnlocked, sentSet, sa, admin, "2.8.4", "sentinel", "Changes the configuration of a master.")
	add(se, "simulate-failure", -3, 0, sentSimulateFailure, sa, admin, "3.2.0", "sentinel", "Not supported: crash points are node flags.")
	add(se, "slaves", 3, flagDiscovery, sentReplicas, sa, admin, "2.8.0", "sentinel", "Returns a list of the replicas of a master (old name).")
}

// sortedCommands returns the top-level commands by name, for deterministic
// COMMAND output.
func sortedCommands(table map[string]*command) []*command {
	out := make([]*command, 0, len(table))
	for _, k := range table {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
