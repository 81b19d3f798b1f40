// Package failover owns Raftinel's failover decisions: whether an instance
// is subjectively down, whether a master is objectively down, whether a
// failover may start, which replica wins, how replicas are re-pointed during
// a failover and what must be repaired outside one; the fence: how many
// replicas the master must have (min-replicas-to-write) and how long a
// promotion waits for the old master to stop acknowledging writes; and,
// from the same rules, what the leader would do now for a master and why
// (Explain).
//
// Every function is pure: inputs in, decision out. Nothing here does I/O,
// reads a clock (time is always a parameter), draws random numbers or
// depends on map order, so the leader and a test get the same answer from
// the same inputs. The server converts its state into the small structs
// defined here.
//
// Where Raftinel mirrors Redis Sentinel (SDOWN, the failover anti-flap delay,
// sentinelSelectSlave, +convert-to-slave, +fix-slave-config, the
// slave-reconf timeout, TILT) the rules, constants and boundary comparisons
// match Sentinel's defaults. Each deliberate deviation is documented at the
// function that makes it.
//
// failover must not import grpc, go-redis, a clock source or any other
// project package.
package failover
