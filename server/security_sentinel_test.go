package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testbin"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The Sentinel endpoint of a secured cluster serves TLS and ACL users
// from the auth file: redis-cli --tls and a go-redis FailoverClient
// (whose Sentinel connections are TLS) with a read-only user discover the
// master and follow a failover; the read-only user may not write; the
// shared password of the default user still works.
func TestSecuredSentinelEndpointWithACLUsers(t *testing.T) {
	redistest.Require(t)
	cli := testbin.Require(t, "REDIS_CLI", "redis-cli", "make redis installs it")
	auth := filepath.Join(t.TempDir(), "auth")
	const (
		appPass   = "app-password-0123456789"
		adminPass = "sentinel-admin-0123456789"
		opsToken  = "operate-secret-0123456789"
	)
	if err := os.WriteFile(auth, []byte("app sentinel-read "+appPass+"\nsadmin sentinel-admin "+adminPass+"\nops operate "+opsToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newSecureCluster(t, 3, auth)
	g := startGroup(t, 100, 100)
	ops := coordinatorv1.NewCoordinatorServiceClient(dialWith(t, c.leader().srv.GRPCAddr(), credentials.NewTLS(c.pki.clientTLS("", ""))))
	testwait.For(t, 30*time.Second, "monitor", func() error {
		_, err := ops.Monitor(metadataCtx(t, opsToken), &coordinatorv1.MonitorRequest{Name: "mymaster", Address: g.master.Addr(),
			Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(time.Second), FailoverTimeout: durationpb.New(5 * time.Second)}})
		if status.Code(err) == codes.AlreadyExists {
			return nil // an earlier try was committed, its answer lost
		}
		return err
	})
	var sentinels []string
	for _, nd := range c.nodes {
		sentinels = append(sentinels, nd.srv.SentinelAddr())
	}

	// redis-cli over TLS with the read-only user.
	redisCLI := func(user, pass string, args ...string) (string, error) {
		host, port, _ := net.SplitHostPort(sentinels[0])
		base := []string{"--tls", "--cacert", c.pki.caFile(), "-h", host, "-p", port, "--no-auth-warning"}
		if user != "" {
			base = append(base, "--user", user, "--pass", pass)
		}
		out, err := exec.Command(cli, append(base, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	host, port, _ := net.SplitHostPort(g.master.Addr())
	out, err := redisCLI("app", appPass, "SENTINEL", "get-master-addr-by-name", "mymaster")
	if err != nil || out != host+"\n"+port {
		t.Fatalf("redis-cli --tls as app: %q %v", out, err)
	}
	if out, _ := redisCLI("app", appPass, "SENTINEL", "failover", "mymaster"); !strings.Contains(out, "NOPERM") {
		t.Fatalf("SENTINEL FAILOVER as the read-only user: %q", out)
	}
	if out, _ := redisCLI("app", "wrong-password-0123456", "SENTINEL", "masters"); !strings.Contains(out, "WRONGPASS") && !strings.Contains(out, "NOAUTH") {
		t.Fatalf("a wrong password: %q", out)
	}
	if out, _ := redisCLI("", "", "SENTINEL", "masters"); !strings.Contains(out, "NOAUTH") {
		t.Fatalf("no user while ACL users exist: %q", out)
	}
	if out, err := exec.Command(cli, "-h", host, "-p", strings.Split(sentinels[0], ":")[1], "PING").CombinedOutput(); err == nil && strings.Contains(string(out), "PONG") {
		t.Fatalf("a plaintext client was answered: %q", out)
	}

	// go-redis, as an application would run it: Sentinel connections over
	// TLS as the read-only user (the Redis instances are plaintext here).
	tlsCfg := c.pki.clientTLS("", "")
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := &net.Dialer{Timeout: 2 * time.Second}
		if slices.Contains(sentinels, addr) {
			return (&tls.Dialer{NetDialer: d, Config: tlsCfg}).DialContext(ctx, network, addr)
		}
		return d.DialContext(ctx, network, addr)
	}
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster", SentinelAddrs: sentinels,
		SentinelUsername: "app", SentinelPassword: appPass, Dialer: dialer, DialTimeout: 2 * time.Second})
	defer rdb.Close()
	ctx := ctxT(t, 90*time.Second)
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("write through the FailoverClient: %v", err)
	}
	old := g.master.Addr()
	g.master.Kill()
	testwait.For(t, 60*time.Second, "the FailoverClient writes to the new master", func() error {
		if err := rdb.Set(ctx, "k", "after", 0).Err(); err != nil {
			return err
		}
		port, err := infoPort(ctx, rdb)
		if err != nil {
			return err
		}
		if net.JoinHostPort("127.0.0.1", port) == old {
			return os.ErrExist
		}
		return nil
	})

	// The admin user and the default user's shared password (none here)
	// still write; the admin's write is audited as its own.
	testwait.For(t, 30*time.Second, "SENTINEL SET as sadmin", func() error {
		if out, err := redisCLI("sadmin", adminPass, "SENTINEL", "SET", "mymaster", "quorum", "2"); err != nil || out != "OK" {
			return fmt.Errorf("%q %v", out, err) // retried across an election
		}
		return nil
	})
	testwait.For(t, 30*time.Second, "the +set event names sadmin", func() error {
		m, _, _ := c.leader().srv.FSM().Master("mymaster")
		for _, e := range m.GetEvents() {
			if e.GetType() == "+set" && e.GetActor().GetWho() == "sentinel sadmin" && strings.HasPrefix(e.GetActor().GetFrom(), "127.0.0.1:") {
				return nil
			}
		}
		return os.ErrNotExist
	})
}

func metadataCtx(t testing.TB, token string) context.Context {
	return metadataBearer(ctxT(t, 5*time.Second), token)
}
