// Package orchestrator owns the failover leader's execution: it turns the
// replicated state and this node's probe observations into committed
// journal steps and the Redis commands they call for — automatic failovers
// (begin, promote, re-point the replicas, finish or abort), including the
// failover of a master that restarted empty behind its replicas
// (+empty-restart), the coordinated handover of a manual failover and its
// rollback, the repairs outside a failover (+convert-to-slave,
// +fix-slave-config), and fencing: min-replicas-to-write on the master
// (+fence-set) and the wait before a promotion is announced until the old
// master can no longer acknowledge writes (+fence-wait). The demotion of
// the old master before that announcement, the write pause and catch-up
// before the promotion when the old master still answers, and the
// min-replicas-to-write 0 on the candidate are part of the committed
// BeginFailover's decision, not steps of their own. It also delivers the masters' hooks
// (notification-script, client-reconfig-script, webhook-url) from the
// committed events, in order per master and hook, at least once, with the
// progress committed (HookProgress) so the next leader resumes; the runs
// themselves go through the HookRunner interface.
//
// One Leader lives for one term of leadership: the server creates it after
// raft's Barrier (so it acts on everything earlier leaders committed) and
// stops it when leadership is lost, which cancels its Redis commands and
// drops every piece of leader-only state. Whatever a later leader needs is
// in the journal, never only in a Leader's memory: every step is committed
// before the Redis command it calls for (the exceptions are named where
// they happen) and every command is idempotent, so a new leader resumes
// from the last committed step.
//
// The decisions themselves are package failover's pure functions; the
// Redis commands are package probe's. orchestrator reaches the rest of the
// node only through the small interfaces in orchestrator.go (commit a
// command, verify leadership, open a Redis connection, read observations,
// read the clock), so its rules are tested without Raft or redis-server.
// It must not import package server, grpc or go-redis.
package orchestrator
