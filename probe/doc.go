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
// Every network call takes a context and returns within its deadline, so a
// frozen (SIGSTOPped) server cannot block a caller. Observation times come
// from the injected clock so that tests and the failover rules can reason
// about them. Parsers never panic on bad input.
//
// probe imports no metrics library: what the node's metrics need (PING
// round trips) it hands to a callback, WatcherConfig.OnPingReply.
package probe
