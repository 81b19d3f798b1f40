// Package server runs one Raftinel node: the Raft instance with its stores
// and transport, the gRPC front end, forwarding of writes to the leader, the
// probes and the leader's failover loop, and the Sentinel-protocol front end
// (package sentinel, fed by sentinel_backend.go from the local state; its
// writes take the gRPC API's path).
//
// server is the only package that wires I/O together. It decides nothing a
// pure function could decide (that is package failover) and changes state
// only by committing commands through Raft (package fsm). Only cmd and the
// integration tests import it; a control plane may embed a node through New.
package server
