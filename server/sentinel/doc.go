// Package sentinel serves the Redis Sentinel protocol for one Raftinel node,
// so that unmodified Sentinel clients (go-redis, redis-py, Jedis, Lettuce,
// redis-cli) find masters, list replicas and peers, and receive events
// such as +switch-master from any coordinator node.
//
// It owns the RESP connection handling of that port: authentication, the
// SENTINEL subcommands with Sentinel 7's reply shapes, field order and error
// texts, the few other commands clients send (PING, HELLO, AUTH, CLIENT,
// INFO, ROLE, COMMAND), and pub/sub with Sentinel's event channels. Every
// reply is built from the node's applied replicated state plus the node's
// own probe view, both read through the Backend interface; reads never go
// through Raft, and writes (MONITOR, SET, FAILOVER...) are handed to the
// Backend, which proposes them.
//
// On Linux one poll loop serves every plain TCP connection while it only
// sends requests that answer at once; a connection that subscribes, writes
// through Raft, sends an unusual request or stops reading gets a goroutine
// of its own (pollloop_linux.go).
//
// Invariants: one slow client never delays another client or the node (each
// subscriber has a bounded queue and is disconnected when it overflows, and
// a client that stops reading leaves the poll loop); a
// malformed or oversized request closes only that connection, after Redis's
// protocol error; nothing here panics on client input.
//
// Stats reports open clients, subscribers and commands received by name
// (a fixed set: the command table plus "unknown"); the node turns them into
// metrics, so this package imports no metrics library.
//
// It must not import package server (server imports it) or grpc, must not
// mutate a State the Backend hands out (it is shared between connections),
// and must not publish events it did not receive from the Backend.
package sentinel
