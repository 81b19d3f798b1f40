// Package fsm owns Raftinel's replicated state: it applies Raft log entries
// (fsmv1.Command) to one fsmv1.State, takes and restores snapshots, and tells
// readers when the state changed. Outside the replicated state it counts
// the failover ends this node applied (FailoverEnds), for the metrics.
// It also owns the log format table (format.go: which format introduced
// each Command kind, and the check the leader makes before writing one)
// and the snapshot file format (snapfile.go).
//
// Apply is deterministic: "now" is the proposed_at the leader stamped on the
// command, and nothing here reads a clock, draws a random number, does I/O or
// depends on map order. Replaying the same log always yields proto.Equal
// states. A business rejection (unknown master, invalid setting) is returned
// as the Apply result; an entry this binary cannot decode panics, because
// skipping it would let this node silently diverge from the others.
//
// fsm must not import grpc, go-redis or anything that talks to a network.
package fsm
