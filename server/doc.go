// Package server runs one Raftinel node: the Raft instance with its stores
// and transport, the gRPC front end, forwarding of writes to the leader, and
// (later) the leader's failover loop and the Sentinel front end.
//
// server is the only package that wires I/O together. It decides nothing a
// pure function could decide (that is package failover) and changes state
// only by committing commands through Raft (package fsm). Only cmd and the
// integration tests import it; a control plane may embed a node through New.
package server
