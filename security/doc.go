// Package security owns what a node needs to know who it talks to: its TLS
// material (certificate, key and CA, reloaded without a restart), the
// identity a certificate gives (a node is named by the URI SAN
// raftinel://node/ID, never by anything else in the certificate), the
// Raft stream layer over mutual TLS, the tokens of the auth file (kept
// hashed, compared in constant time) with their roles, the caller identity
// carried from the node that received a call to the leader, the TLS
// material a node reaches the monitored Redis instances with (RedisTLS: a
// CA, an optional client certificate, reloaded the same way), and the
// development CA and certificates coordinatorctl creates.
//
// It decides no RPC's role (package server holds that table) and does no
// I/O beyond reading and writing the files it is given and dialling the
// Raft peers it is asked to. It must not import server, orchestrator,
// failover, probe or fsm.
package security
