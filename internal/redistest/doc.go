// Package redistest runs real redis-server processes for tests: one per
// Start, on 127.0.0.1, in a fresh temporary directory with a generated
// config file, killed and reaped when the test ends.
//
// Tests that need redis-server call Start (or Require); without the binary
// they are skipped, except under CI=true, where a missing binary is a
// failure so that a broken CI image cannot turn every integration test into
// a silent skip. REDIS_SERVER may name the binary when it is not on PATH.
//
// Every wait here polls with a deadline (the replication waits through
// internal/testwait, which is also what tests use to wait for anything
// else); nothing sleeps a fixed time and hopes. Failure messages carry the
// tail of the server's log.
//
// redistest must not import the project's packages other than
// internal/testwait, which imports none (probe's tests use redistest), and
// only tests may import redistest.
package redistest
