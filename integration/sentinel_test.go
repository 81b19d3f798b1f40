package integration

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

// sentinelCLI runs redis-cli against a node's Sentinel endpoint and returns
// its output lines. redis-cli prints a reply plainly when its output is not
// a terminal, and exits 0 even for an error reply.
func sentinelCLI(n *node, args ...string) ([]string, error) {
	host, port, err := net.SplitHostPort(n.sentinelAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-cli %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n"), nil
}

// waitCLI polls redis-cli on a node until its output is want.
func waitCLI(t testing.TB, n *node, want []string, args ...string) {
	t.Helper()
	testwait.For(t, waitTimeout, fmt.Sprintf("redis-cli %s on %s", strings.Join(args, " "), n.id), func() error {
		got, err := sentinelCLI(n, args...)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("output %q, want %q", got, want)
		}
		return nil
	})
}

// masterField reads one field of SENTINEL MASTER from redis-cli's flat
// key/value output.
func masterField(n *node, name, field string) (string, error) {
	lines, err := sentinelCLI(n, "SENTINEL", "master", name)
	if err != nil {
		return "", err
	}
	for i := 0; i+1 < len(lines); i += 2 {
		if lines[i] == field {
			return lines[i+1], nil
		}
	}
	return "", fmt.Errorf("no %s in %q", field, lines)
}

// The built coordinators serve the Sentinel protocol on their own ports:
// redis-cli finds the master before and after a SIGKILL failover on every
// node, each node lists the two others, and writes sent to one node apply
// everywhere with Sentinel's error texts for bad values.
func TestSentinelEndpointWithRedisCLI(t *testing.T) {
	redistest.Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal("redis-cli is not installed: run make redis")
	}
	c := startCluster(t, 3)
	g := startGroup(t, "mymaster", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)
	old := g.master.Addr()
	oh, op, _ := net.SplitHostPort(old)
	for _, n := range c.nodes {
		waitCLI(t, n, []string{oh, op}, "SENTINEL", "get-master-addr-by-name", "mymaster")
		testwait.For(t, waitTimeout, n.id+" lists the other two nodes", func() error {
			lines, err := sentinelCLI(n, "SENTINEL", "sentinels", "mymaster")
			if err != nil {
				return err
			}
			var ports []string
			for i := 0; i+1 < len(lines); i++ {
				if lines[i] == "port" {
					ports = append(ports, lines[i+1])
				}
			}
			var want []string
			for _, o := range without(c.nodes, n) {
				_, p, _ := net.SplitHostPort(o.sentinelAddr)
				want = append(want, p)
			}
			slices.Sort(ports)
			slices.Sort(want)
			if !slices.Equal(ports, want) {
				return fmt.Errorf("SENTINELS ports %v, want %v", ports, want)
			}
			return nil
		})
	}

	g.master.Kill()
	promoted := checkFailedOver(t, c, g, old)
	nh, np, _ := net.SplitHostPort(promoted.Addr())
	for _, n := range c.nodes {
		waitCLI(t, n, []string{nh, np}, "SENTINEL", "get-master-addr-by-name", "mymaster")
	}

	via := c.nodes[1]
	if got, err := sentinelCLI(via, "SENTINEL", "set", "mymaster", "quorum", "zero"); err != nil || !slices.Equal(got, []string{"ERR Invalid argument 'zero' for SENTINEL SET 'quorum'"}) {
		t.Fatalf("SET with a bad value: %q %v", got, err)
	}
	if got, err := sentinelCLI(via, "SENTINEL", "set", "mymaster", "quorum", "3"); err != nil || !slices.Equal(got, []string{"OK"}) {
		t.Fatalf("SET quorum 3: %q %v", got, err)
	}
	for _, n := range c.nodes {
		testwait.For(t, waitTimeout, "quorum 3 on "+n.id, func() error {
			q, err := masterField(n, "mymaster", "quorum")
			if err != nil || q != "3" {
				return fmt.Errorf("quorum %q %v", q, err)
			}
			return nil
		})
	}
}
