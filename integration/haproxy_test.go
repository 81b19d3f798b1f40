package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testbin"
	"github.com/raftinel/raftinel/internal/testwait"
	"github.com/redis/go-redis/v9"
)

// throughProxy asks, over a fresh connection through HAProxy, which server
// answers: its port and role; and checks that it takes a write.
func throughProxy(addr string) (port int, role string, err error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second,
		WriteTimeout: time.Second, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cfg, err := c.ConfigGet(ctx, "port").Result()
	if err != nil {
		return 0, "", err
	}
	port, _ = strconv.Atoi(cfg["port"])
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return port, "", err
	}
	role = "unknown"
	for _, r := range []string{"role:master", "role:slave"} {
		if containsLine(info, r) {
			role = r[len("role:"):]
		}
	}
	if role == "master" {
		err = c.Set(ctx, "through-haproxy", "1", 0).Err()
	}
	return port, role, err
}

func containsLine(text, line string) bool {
	for _, l := range splitLines(text) {
		if l == line {
			return true
		}
	}
	return false
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			l := s[start:i]
			if len(l) > 0 && l[len(l)-1] == '\r' {
				l = l[:len(l)-1]
			}
			out = append(out, l)
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// The worked example in deploy/haproxy: a real HAProxy started with the
// shipped config, the shipped script set as client-reconfig-script. After
// the master is SIGKILLed and a replica promoted, a client connecting
// through HAProxy reaches the new master, and writes to it.
func TestHAProxyFollowsFailover(t *testing.T) {
	redistest.Require(t)
	haproxy := testbin.Require(t, "HAPROXY", "haproxy", "make haproxy installs it")
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := startGroup(t, "mymaster", nil, nil)
	ports := freeAddrs(t, 2)
	admin, front := ports[0], ports[1]
	cmd := exec.Command(haproxy, "-db", "-f", filepath.Join(root, "deploy", "haproxy", "haproxy.cfg"))
	cmd.Env = append(childEnv(), "HAPROXY_ADMIN_ADDR="+admin, "HAPROXY_REDIS_BIND="+front, "REDIS_MASTER_ADDR="+g.master.Addr())
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
		if t.Failed() {
			t.Logf("--- haproxy's log ---\n%s", tailFile(logf.Name(), 40))
		}
	})
	testwait.For(t, waitTimeout, "haproxy serving the master", func() error {
		if c, err := net.DialTimeout("tcp", admin, time.Second); err != nil {
			return err
		} else {
			c.Close()
		}
		port, role, err := throughProxy(front)
		if err != nil {
			return err
		}
		if port != g.master.Port() || role != "master" {
			return fmt.Errorf("reached port %d (%s), want the master's %d", port, role, g.master.Port())
		}
		return nil
	})

	// The script finds HAProxy's runtime API through the environment; the
	// coordinator passes its own on, so a wrapper sets it here.
	script := filepath.Join(dir, "reconfig.sh")
	writeScript(t, script, fmt.Sprintf("HAPROXY_ADMIN_ADDR=%s exec %q \"$@\" >> %q 2>&1\n", admin,
		filepath.Join(root, "deploy", "haproxy", "raftinel-haproxy-reconfig.sh"), filepath.Join(dir, "script.log")))
	c := startClusterWith(t, 3, "--allow-script-reconfig")
	g.monitor(t, c, 2, 3*time.Second)
	mustCtl(t, "--addr", addrs(c.nodes...), "set", g.name, "client-reconfig-script", script)

	old := g.master.Addr()
	g.master.Kill()
	promoted := checkFailedOver(t, c, g, old)
	testwait.For(t, waitTimeout, "a client through haproxy reaching the new master", func() error {
		port, role, err := throughProxy(front)
		if err != nil {
			return err
		}
		if port != promoted.Port() || role != "master" {
			return fmt.Errorf("reached port %d (%s), want the promoted %d; script log: %s", port, role, promoted.Port(),
				tailFile(filepath.Join(dir, "script.log"), 5))
		}
		return nil
	})
	if v, err := promoted.Client().Get(context.Background(), "through-haproxy").Result(); err != nil || v != "1" {
		t.Fatalf("the write through haproxy is not on the promoted master: %q, %v", v, err)
	}
}
