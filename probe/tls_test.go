package probe

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/security"
)

// SetMasterAuth sets both settings (an empty user clears masteruser), and
// fails with the server's refusal when CONFIG is renamed away.
func TestSetMasterAuth(t *testing.T) {
	redistest.Require(t)
	s := redistest.Start(t, redistest.RequirePass("pw"), redistest.MasterAuth(""))
	c := newTestConn(t, s.Addr(), Auth{Pass: "pw"})
	ctx := testCtx(t)
	for _, a := range []Auth{{User: "raftinel", Pass: "p1"}, {Pass: "p2"}} {
		if err := c.SetMasterAuth(ctx, a); err != nil {
			t.Fatal(err)
		}
		got, err := s.Client().ConfigGet(ctx, "master*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if got["masteruser"] != a.User || got["masterauth"] != a.Pass {
			t.Fatalf("after SetMasterAuth(%+v): %v", a, got)
		}
	}
	renamed := redistest.Start(t, redistest.Args(`rename-command CONFIG ""`))
	rc := newTestConn(t, renamed.Addr(), Auth{})
	if err := rc.SetMasterAuth(ctx, Auth{Pass: "x"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("with CONFIG renamed: %v", err)
	}
}

// startTLSRedis starts a TLS-only redis-server whose password is "pw", and
// loads the client side of its TLS configuration.
func startTLSRedis(t *testing.T) (*redistest.Server, *security.RedisTLS) {
	t.Helper()
	redistest.Require(t)
	pki := redistest.NewPKI(t)
	s := redistest.Start(t, redistest.WithTLS(pki.TLS()), redistest.RequirePass("pw"))
	rt, err := security.LoadRedisTLS(pki.CAFile, pki.ClientCert, pki.ClientKey, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, rt
}

// The Watcher's own connections and a Conn reach a TLS-only server with
// the Redis TLS configuration, and not without it.
func TestTLSConnections(t *testing.T) {
	s, rt := startTLSRedis(t)
	ctx := testCtx(t)
	c, err := NewConn(ConnConfig{Addr: s.Addr(), Auth: Auth{Pass: "pw"}, TLS: rt.ClientConfig})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res := c.Ping(ctx); !res.Valid {
		t.Fatalf("PING over TLS: %+v", res)
	}
	if _, err := c.Info(ctx); err != nil {
		t.Fatalf("INFO over TLS: %v", err)
	}
	l := &link{addr: s.Addr(), dialTimeout: time.Second, tls: rt.ClientConfig("127.0.0.1")}
	defer l.close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if res := pingWithin(l, pctx, Auth{Pass: "pw"}); !res.Valid {
		t.Fatalf("the Watcher's PING over TLS: %+v", res)
	}
	plain := &link{addr: s.Addr(), dialTimeout: time.Second}
	defer plain.close()
	if res := pingWithin(plain, pctx, Auth{Pass: "pw"}); res.Valid || !strings.Contains(res.Reply, "a TLS port reached without TLS?") {
		t.Fatalf("a plaintext PING to a TLS port: %+v", res)
	}
}

// A pooled TLS connection that the server closed (a restart, or another
// coordinator's CLIENT KILL during a failover) costs the leader's commands
// nothing: go-redis's pool cannot see a TLS connection closed, and each
// command that can be repeated is sent again on a new connection.
func TestCommandsSurviveAClosedPooledTLSConnection(t *testing.T) {
	s, rt := startTLSRedis(t)
	ctx := testCtx(t)
	c, err := NewConn(ConnConfig{Addr: s.Addr(), Auth: Auth{Pass: "pw"}, TLS: rt.ClientConfig, ClientName: testClientName})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name string
		run  func() error
	}{
		{"SetMasterAuth", func() error { return c.SetMasterAuth(ctx, Auth{Pass: "pw"}) }},
		{"SetFence", func() error { return c.SetFence(ctx, 0, 2) }},
		{"HasFence", func() error { _, err := c.HasFence(ctx, 0, 2); return err }},
		{"PauseWrites", func() error { return c.PauseWrites(ctx, time.Second) }},
		{"Unpause", func() error { return c.Unpause(ctx) }},
		{"FailoverAbort", func() error { return c.FailoverAbort(ctx) }},
		{"Promote", func() error { _, err := c.Promote(ctx, PromoteOptions{Unfence: true}); return err }},
	} {
		if err := tc.run(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := s.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "normal").Err(); err != nil {
			t.Fatal(err)
		}
		if err := tc.run(); err != nil {
			t.Fatalf("%s after the server closed its pooled connection: %v", tc.name, err)
		}
	}
}
