// Package integration runs Raftinel the way operators do: the coordinator
// and coordinatorctl binaries, built once by TestMain from this module,
// as separate processes on 127.0.0.1 that the tests start, SIGKILL,
// SIGTERM and restart from their data directories, driving and observing
// the cluster only through coordinatorctl and the public gRPC API.
//
// The package holds tests only. Every process a test starts is killed when
// the test ends; every wait polls with a deadline; a failing test prints
// the tail of each node's log.
package integration
