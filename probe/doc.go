// Package probe owns Raftinel's I/O with the monitored Redis instances: it
// PINGs them and reads INFO (Watcher), parses what INFO says (ParseInfo),
// and carries out the commands a failover step needs (Conn: promote,
// re-point, coordinated FAILOVER, write pauses).
//
// probe observes and acts but never decides. Whether an instance is down,
// which replica wins and what to do next belong to package failover; the
// replicated record of it all belongs to fsm. probe never reads Raft state,
// and a PING result never leaves this node by itself: the server turns
// observations into votes.
//
// The Watcher contacts each instance every PING period (PingTiming: by
// default down-after/10, within 50 ms and 1 s) and records, in
// Observation.FailingSince, the start of the first contact since the last
// valid reply that got none: the SDOWN clock. Between contacts it waits
// in a read of its PING connection, so one closed by the instance's kernel
// (a killed process) is contacted again, and found refused, at once. It dials its connections
// itself, with no client-library backoff, so a recovered instance is seen
// at the next period. Contacts start on a grid shared by every instance (a
// tenth of the period, at most 100 ms), so that hundreds of instances are
// contacted in a few bursts a second, as Sentinel's 10 Hz timer does,
// rather than waking the process once per contact. Connections per
// instance per node: two for watching (one for PING, one for INFO, each
// with at most one command in flight), plus, on the leader only, one for
// Conn's INFO reads (the fence's, four a second on a master) and up to
// three for failover commands (Conn's pool), each opened when first used.
//
// With a TLS configuration (WatcherConfig.TLS, ConnConfig.TLS) every one
// of those connections speaks TLS; probe takes the configuration as given
// and never reads certificate files itself.
//
// Every network call takes a context and returns within its deadline, so a
// frozen (SIGSTOPped) server cannot block a caller. Observation times come
// from the injected clock so that tests and the failover rules can reason
// about them. Parsers never panic on bad input.
//
// probe imports no metrics library: what the node's metrics need (PING
// round trips) it hands to a callback, WatcherConfig.OnPingReply.
package probe
