// Package server runs one Raftinel node: the Raft instance with its stores
// and transport, leadership as a lifecycle (leadership.go starts an
// orchestrator.Leader after raft's Barrier and stops it when leadership is
// lost), the probes and this node's votes, the gRPC front end, forwarding of
// writes to the leader, and the Sentinel-protocol front end (package
// sentinel, fed by sentinel_backend.go from the local state; its writes take
// the gRPC API's path).
//
// server is the only package that wires I/O together. It sends no command
// to Redis itself (the orchestrator does, through the connections server
// hands it), decides nothing a pure function could decide (package
// failover) and changes state only by committing commands through Raft
// (package fsm). Only cmd and the
// integration tests import it; a control plane may embed a node through New.
package server
