package integration

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/promtest"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

// metricsCluster is a cluster whose nodes serve metrics, each on its own
// port (--metrics-addr), with the addresses Prometheus scrapes.
type metricsCluster struct {
	*cluster
	metrics []string
}

// startMetricsCluster founds a cluster as startCluster does, each node
// with --metrics-addr on a port of its own. A lost port race starts over
// with fresh ports.
func startMetricsCluster(t *testing.T, size int, flags ...string) *metricsCluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		mc, err := tryStartMetricsCluster(t, size, flags)
		if err == nil {
			mc.waitFormed()
			return mc
		}
		if !errors.Is(err, errBindFailed) || attempt == 3 {
			t.Fatalf("start a %d-node cluster with metrics: %v", size, err)
		}
		t.Logf("port taken while starting the cluster, retrying with new ports: %v", err)
	}
}

func tryStartMetricsCluster(t *testing.T, size int, flags []string) (*metricsCluster, error) {
	dir := t.TempDir()
	mc := &metricsCluster{cluster: &cluster{t: t}}
	ports := freeAddrs(t, 4*size)
	raftAddrs, grpcAddrs, sentinelAddrs := ports[:size], ports[size:2*size], ports[2*size:3*size]
	mc.metrics = ports[3*size:]
	var boot []string
	for i := range size {
		boot = append(boot, fmt.Sprintf("n%d=%s", i+1, raftAddrs[i]))
	}
	for i := range size {
		mc.nodes = append(mc.nodes, newNode(t, dir, fmt.Sprintf("n%d", i+1), raftAddrs[i], grpcAddrs[i], sentinelAddrs[i],
			append([]string{"--bootstrap", strings.Join(boot, ","), "--metrics-addr", mc.metrics[i]}, flags...)...))
	}
	for _, n := range mc.nodes {
		if err := n.launch(); err != nil {
			return nil, err
		}
	}
	for _, n := range mc.nodes {
		if err := n.waitServing(); err != nil {
			for _, n := range mc.nodes {
				n.kill()
			}
			return nil, fmt.Errorf("%s: %w", n.id, err)
		}
	}
	return mc, nil
}

// shortFor shortens every "for:" of the shipped rules to 2s, so that
// their expressions, unchanged, are tested within seconds.
func shortFor(rules string) string {
	return regexp.MustCompile(`(?m)^(\s+for:\s*)\S+\s*$`).ReplaceAllString(rules, "${1}2s")
}

// firing waits until Prometheus fires alert name with the given labels
// (name=value pairs).
func firing(t *testing.T, p *promtest.Server, name string, labels ...string) {
	t.Helper()
	testwait.For(t, 60*time.Second, name+" firing", func() error {
		alerts, err := p.Firing(name)
		if err != nil {
			return err
		}
	next:
		for _, a := range alerts {
			for i := 0; i+1 < len(labels); i += 2 {
				if a.Labels[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return nil
		}
		all, _ := p.Alerts()
		return fmt.Errorf("not firing with %v; active alerts: %v", labels, all)
	})
}

// TestPrometheusAlertsOnARealCluster runs a real Prometheus against three
// coordinator processes with the shipped alert rules (their "for" shortened)
// and causes what each alert is about: a master killed with no replica to
// promote (master down without failover, failover failed), then two of the
// three nodes stopped (no leader, node down).
func TestPrometheusAlertsOnARealCluster(t *testing.T) {
	redistest.Require(t)
	promtest.Require(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	c := startMetricsCluster(t, 3)
	solo := redistest.Start(t)
	mustCtl(t, "--addr", addrs(c.nodes...), "monitor", "solo", solo.Addr(), "--quorum", "2",
		"--down-after", "1s", "--failover-timeout", "3s")

	p := promtest.Start(t, promtest.Config{
		Job: "raftinel", Targets: c.metrics, Interval: 500 * time.Millisecond,
		RuleFiles: []string{filepath.Join(root, "deploy", "prometheus", "raftinel-rules.yml")}, Rewrite: shortFor,
	})
	// Steady state: every node scraped, one leader, the master up, and
	// nothing of ours firing.
	testwait.For(t, 60*time.Second, "a healthy cluster in Prometheus", func() error {
		for _, q := range []struct{ expr, want string }{
			{`count(up{job="raftinel"} == 1)`, "3"},
			{`sum(raftinel_raft_is_leader)`, "1"},
			{`min(raftinel_instance_up{master="solo"})`, "1"},
			{`count(raftinel_master_info{master="solo",address="` + solo.Addr() + `"})`, "3"},
		} {
			v, err := p.Query(q.expr)
			if err != nil {
				return err
			}
			if len(v) != 1 || v[0].Value != q.want {
				return fmt.Errorf("%s = %v, want %s", q.expr, v, q.want)
			}
		}
		return nil
	})
	// A healthy cluster has no alert, not even pending, for several
	// evaluation intervals, once the rules have seen it healthy (scrapes
	// before the first election left NoLeader pending for an evaluation).
	testwait.For(t, 30*time.Second, "no active alerts", func() error {
		alerts, err := p.Alerts()
		if err == nil && len(alerts) != 0 {
			err = fmt.Errorf("active alerts: %v", alerts)
		}
		return err
	})
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(pollInterval) {
		if alerts, err := p.Alerts(); err != nil || len(alerts) != 0 {
			t.Fatalf("alerts on a healthy cluster: %v (%v)", alerts, err)
		}
	}

	// The master dies with no replica to promote: ODOWN is committed, every
	// attempt aborts with -failover-abort-no-good-slave.
	solo.Kill()
	firing(t, p, "RaftinelMasterDownWithoutFailover", "master", "solo", "job", "raftinel")
	firing(t, p, "RaftinelFailoverFailed", "kind", "automatic", "job", "raftinel")
	if a, err := p.Firing("RaftinelNoLeader"); err != nil || len(a) != 0 {
		t.Fatalf("no-leader alert with a leader: %v (%v)", a, err)
	}

	// Two of three nodes stop: the survivor has no leader.
	leader := c.node(waitAgreedLeader(t, c.nodes...))
	leader.stop()
	for _, n := range c.nodes {
		if n != leader {
			n.stop()
			break
		}
	}
	firing(t, p, "RaftinelNoLeader", "job", "raftinel")
	firing(t, p, "RaftinelNodeDown", "instance", c.metricsOf(leader))
}

// metricsOf is a node's metrics address.
func (mc *metricsCluster) metricsOf(n *node) string {
	for i, m := range mc.nodes {
		if m == n {
			return mc.metrics[i]
		}
	}
	mc.t.Fatalf("no node %s", n.id)
	return ""
}
