package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	"github.com/redis/go-redis/v9"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartWritesConfigAndAnswers(t *testing.T) {
	s := Start(t, ReplicaPriority(42), Args("maxmemory-policy allkeys-lru"))
	ctx := ctxT(t)
	if s.Pid() == 0 || !s.Running() {
		t.Fatal("Pid is 0 right after Start")
	}
	if got, want := s.Addr(), net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())); got != want {
		t.Fatalf("Addr = %q, want %q", got, want)
	}
	if err := s.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	for param, want := range map[string]string{
		"replica-priority": "42",
		"maxmemory-policy": "allkeys-lru",
		"save":             "",
		"appendonly":       "no",
		"protected-mode":   "no",
		"bind":             "127.0.0.1",
		"port":             strconv.Itoa(s.Port()),
	} {
		got, err := s.Client().ConfigGet(ctx, param).Result()
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", param, err)
		}
		if got[param] != want {
			t.Errorf("CONFIG GET %s = %q, want %q", param, got[param], want)
		}
	}
	// CONFIG REWRITE needs the config file the harness generated.
	if err := s.Client().ConfigRewrite(ctx).Err(); err != nil {
		t.Fatalf("CONFIG REWRITE: %v", err)
	}
	if role, master, err := s.Role(ctx); err != nil || role != "master" || master != "" {
		t.Fatalf("Role = %q, %q, %v; want master", role, master, err)
	}
	if !strings.Contains(s.LogTail(), "Ready to accept connections") {
		t.Errorf("log tail does not show the server starting:\n%s", s.LogTail())
	}
}

func TestReplicationAndWaitReplicating(t *testing.T) {
	master := Start(t)
	replica := Start(t, ReplicaOf(master.Addr()))
	WaitReplicating(t, replica, master)
	ctx := ctxT(t)

	role, masterAddr, err := replica.Role(ctx)
	if err != nil || role != "slave" || masterAddr != master.Addr() {
		t.Fatalf("replica Role = %q, %q, %v; want slave of %s", role, masterAddr, err, master.Addr())
	}
	if err := master.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "the write on the master to reach the replica", func() bool {
		v, err := replica.Client().Get(ctx, "k").Result()
		return err == nil && v == "v"
	})
}

func TestRequirePass(t *testing.T) {
	master := Start(t, RequirePass("s3cret pass"))
	replica := Start(t, RequirePass("s3cret pass"), ReplicaOf(master.Addr()))
	WaitReplicating(t, replica, master)
	ctx := ctxT(t)

	if err := master.Client().Ping(ctx).Err(); err != nil {
		t.Fatalf("authenticated PING: %v", err)
	}
	anon := redis.NewClient(&redis.Options{Addr: master.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("unauthenticated PING error = %v, want NOAUTH", err)
	}
}

func TestKillAndRestartKeepPortAndRewrittenConfig(t *testing.T) {
	master := Start(t)
	replica := Start(t, ReplicaOf(master.Addr()))
	WaitReplicating(t, replica, master)
	ctx := ctxT(t)
	port, pid := replica.Port(), replica.Pid()

	// Turn the replica into a master and persist that, so Restart has to
	// read the rewritten file to come back as a master.
	if err := replica.Client().Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := replica.Client().ConfigRewrite(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	replica.Kill()
	if replica.Pid() != 0 || replica.Running() {
		t.Fatalf("Pid = %d after Kill", replica.Pid())
	}
	if _, err := rawPing(replica.Addr(), "", nil, 200*time.Millisecond); err == nil {
		t.Fatal("PING succeeded after Kill")
	}
	replica.Kill() // killing a dead server is a no-op

	replica.Restart()
	if replica.Port() != port {
		t.Fatalf("port changed across Restart: %d -> %d", port, replica.Port())
	}
	if replica.Pid() == 0 || replica.Pid() == pid {
		t.Fatalf("Pid after Restart = %d (before: %d)", replica.Pid(), pid)
	}
	WaitRole(t, replica, "master")
	// The shared client reconnects by itself after the restart.
	testwait.For(t, 5*time.Second, "a PING through the shared client after the restart", func() error { return replica.Client().Ping(ctx).Err() })
}

func TestRestartWhileRunning(t *testing.T) {
	s := Start(t)
	pid := s.Pid()
	s.Restart()
	if s.Pid() == pid || s.Pid() == 0 {
		t.Fatalf("Restart of a running server: pid %d -> %d", pid, s.Pid())
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t)
	s.Pause()
	_, err := rawPing(s.Addr(), "", nil, 200*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
	s.Resume()
	testwait.For(t, 5*time.Second, "PONG after SIGCONT", func() error {
		reply, err := rawPing(s.Addr(), "", nil, time.Second)
		if err == nil && reply != "+PONG" {
			err = errors.New("reply " + reply)
		}
		return err
	})
	// Killing a paused server must work too.
	s.Pause()
	s.Kill()
}

func TestStartFailureReportsLog(t *testing.T) {
	Require(t)
	ft := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(ft, Args("no-such-directive yes"))
	}()
	<-done
	if !ft.failed {
		t.Fatal("Start with a bad directive did not fail")
	}
	if !strings.Contains(ft.msg, "no-such-directive") {
		t.Fatalf("failure message lacks the log tail:\n%s", ft.msg)
	}
}

// fatalRecorder captures Fatal from code under test instead of failing
// the real test; Fatal ends the calling goroutine like testing's does.
type fatalRecorder struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.failed = true
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

func TestRequireSkipsOrFailsWithoutBinary(t *testing.T) {
	t.Setenv("REDIS_SERVER", "")
	t.Setenv("PATH", t.TempDir())
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		rec := &skipRecorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			Require(rec)
		}()
		<-done
		if ci == "true" && (!rec.fatal || rec.skipped) {
			t.Errorf("CI=true: fatal=%v skipped=%v, want a failure", rec.fatal, rec.skipped)
		}
		if ci == "" && (rec.fatal || !rec.skipped) {
			t.Errorf("CI unset: fatal=%v skipped=%v, want a skip", rec.fatal, rec.skipped)
		}
	}
	if _, err := os.Stat(t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

type skipRecorder struct {
	testing.TB
	fatal, skipped bool
}

func (s *skipRecorder) Fatal(...any) { s.fatal = true; runtime.Goexit() }
func (s *skipRecorder) Skip(...any)  { s.skipped = true; runtime.Goexit() }

func TestStartRetriesWhenThePortIsTaken(t *testing.T) {
	Require(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return takenPort, nil
		}
		return freePort()
	}
	t.Cleanup(func() { pickPort = freePort })

	s := Start(t)
	if calls != 2 || s.Port() == takenPort {
		t.Fatalf("Start used port %d after %d picks; the taken port was %d", s.Port(), calls, takenPort)
	}
	if !strings.Contains(s.LogTail(), "Address already in use") {
		t.Errorf("the log should keep the failed attempt:\n%s", s.LogTail())
	}
}

func TestCleanupKillsTheProcess(t *testing.T) {
	var pid int
	t.Run("owner", func(t *testing.T) {
		s := Start(t)
		pid = s.Pid()
		s.Pause() // a stopped process must die as well
	})
	if pid == 0 {
		t.Fatal("subtest did not start a server")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still exists after the test ended (kill -0: %v)", pid, err)
	}
}

// A TLS-only master and replica: the replica syncs over TLS, Client
// speaks TLS, and nothing answers in plaintext.
func TestTLSOnly(t *testing.T) {
	pki := NewPKI(t)
	master := Start(t, WithTLS(pki.TLS()), RequirePass("s3cret"))
	replica := Start(t, WithTLS(pki.TLS()), RequirePass("s3cret"), ReplicaOf(master.Addr()))
	ctx := context.Background()
	if err := master.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET over TLS: %v", err)
	}
	testwait.Until(t, 10*time.Second, "the replica syncs over TLS", func() bool {
		v, err := replica.Client().Get(ctx, "k").Result()
		return err == nil && v == "v"
	})
	if reply, err := rawPing(master.Addr(), "s3cret", nil, 500*time.Millisecond); err == nil && reply == "+PONG" {
		t.Fatal("a plaintext PING was answered by a TLS-only server")
	}
	conf, err := os.ReadFile(master.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"port 0\n", "tls-replication yes\n", "tls-auth-clients yes\n"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
}
