// Package server runs one Raftinel node: the Raft instance with its stores
// and transport, leadership as a lifecycle (leadership.go starts an
// orchestrator.Leader after raft's Barrier and stops it when leadership is
// lost), the probes and this node's votes, the gRPC front end, the one path
// of every write to the leader (leaderCall: API calls, Sentinel writes,
// votes, manual failovers), and the Sentinel-protocol front end (package
// sentinel, fed by sentinel_backend.go from the local state; its writes call
// the API's handlers), and the node's Prometheus metrics (metrics.go: one
// registry per node, its gauges read from the state, Raft and the probes
// when scraped), and the day-2 operations (snapshot.go: SnapshotSave,
// seeding a new cluster from a snapshot file, --recover's check and
// raft.RecoverCluster). Every write passes the log format gate (apply:
// fsm.CheckFormat against the voters' membership records). Errors become gRPC statuses in one place (toStatus,
// with an fsm.Reason as a status detail) and Sentinel replies in another
// (sentinelError).
//
// server is the only package that wires I/O together. It sends no command
// to Redis itself (the orchestrator does, through the connections server
// hands it), decides nothing a pure function could decide (package
// failover) and changes state only by committing commands through Raft
// (package fsm). Only cmd and the
// integration tests import it; a control plane may embed a node through New.
package server
