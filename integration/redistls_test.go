package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

const tlsGroupPass = "tls-group-secret"

// startTLSGroup starts a master and two replicas that serve TLS only (port
// 0, tls-port), require client certificates, replicate over TLS and want
// tlsGroupPass. The master's config has no masterauth, as a master's often
// has not: once demoted it cannot authenticate to its new master unless
// somebody sets masterauth.
func startTLSGroup(t *testing.T, name string, pki *redistest.PKI) *group {
	t.Helper()
	tlsOpt := redistest.WithTLS(pki.TLS())
	m := redistest.Start(t, tlsOpt, redistest.RequirePass(tlsGroupPass), redistest.MasterAuth(""))
	g := &group{name: name, master: m,
		r1: redistest.Start(t, tlsOpt, redistest.RequirePass(tlsGroupPass), redistest.ReplicaOf(m.Addr())),
		r2: redistest.Start(t, tlsOpt, redistest.RequirePass(tlsGroupPass), redistest.ReplicaOf(m.Addr())),
	}
	redistest.WaitReplicating(t, g.r1, m)
	redistest.WaitReplicating(t, g.r2, m)
	return g
}

// redisTLSFlags are a node's flags for reaching the PKI's Redis servers.
func redisTLSFlags(pki *redistest.PKI) []string {
	return []string{"--redis-tls-ca", pki.CAFile, "--redis-tls-cert", pki.ClientCert, "--redis-tls-key", pki.ClientKey}
}

func hasMasterAuth(t *testing.T, s *redistest.Server) bool {
	t.Helper()
	conf, err := os.ReadFile(s.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(conf), "\n") {
		if strings.HasPrefix(line, "masterauth ") {
			return true
		}
	}
	return false
}

// Three TLS-only redis-servers monitored by three nodes over TLS: the
// master is killed, a replica promoted, the other re-pointed, and the old
// master, restarted from a config without masterauth, is turned into a
// replica and syncs, because the leader set its masterauth before the
// REPLICAOF.
func TestFailoverOverTLSSetsMasterauth(t *testing.T) {
	redistest.Require(t)
	pki := redistest.NewPKI(t)
	g := startTLSGroup(t, "tlsmaster", pki)
	c := startClusterWith(t, 3, redisTLSFlags(pki)...)
	mustCtl(t, "--addr", addrs(c.nodes...), "monitor", g.name, g.master.Addr(), "--quorum", "2",
		"--down-after", "1s", "--failover-timeout", "3s", "--auth-pass", tlsGroupPass)
	testwait.For(t, waitTimeout, "both replicas discovered over TLS", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		if len(d.GetReplicas()) != 2 {
			return fmt.Errorf("replicas %v", d.GetReplicas())
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := g.master.Client().Set(ctx, "before", "failover", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old := g.master.Addr()
	g.master.Kill()
	promoted := checkFailedOver(t, c, g, old)

	if hasMasterAuth(t, g.master) {
		t.Fatal("the old master's config has masterauth before its restart: the test would prove nothing")
	}
	g.master.Restart()
	waitFollows(t, g.master, promoted.Addr())
	testwait.For(t, waitTimeout, "the old master synced from the new one", func() error {
		v, err := g.master.Client().Get(ctx, "before").Result()
		if err != nil || v != "failover" {
			return fmt.Errorf("GET before on the old master: %q %v", v, err)
		}
		return nil
	})
	got, err := g.master.Client().ConfigGet(ctx, "masterauth").Result()
	if err != nil || got["masterauth"] != tlsGroupPass {
		t.Fatalf("masterauth on the old master: %v %v", got, err)
	}
	if !hasMasterAuth(t, g.master) {
		t.Fatal("masterauth set but not written to the config file (CONFIG REWRITE)")
	}
	// Every node reached every instance over TLS: none reports one down.
	for _, n := range c.nodes {
		d, err := detail(n, g.name)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range d.GetReplicas() {
			if r.GetSdown() {
				t.Errorf("%s: replica %s down", n.id, r.GetAddress())
			}
		}
	}
}

// A node without --redis-tls-ca cannot reach TLS-only instances: it votes
// the master down and says why in its log.
func TestNodeWithoutRedisTLSSeesTLSOnlyMasterDown(t *testing.T) {
	redistest.Require(t)
	pki := redistest.NewPKI(t)
	g := startTLSGroup(t, "tlsonly", pki)
	c := startCluster(t, 1)
	mustCtl(t, "--addr", addrs(c.nodes...), "monitor", g.name, g.master.Addr(), "--quorum", "2",
		"--down-after", "1s", "--auth-pass", tlsGroupPass)
	testwait.For(t, waitTimeout, "a down vote from n1", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		for _, v := range d.GetVotes() {
			if v.GetNodeId() == "n1" && v.GetDown() {
				return nil
			}
		}
		return fmt.Errorf("votes %v", d.GetVotes())
	})
	log := tailFile(c.nodes[0].logPath, 200)
	if !strings.Contains(log, "a TLS port reached without TLS?") || !strings.Contains(log, g.master.Addr()) {
		t.Fatalf("the node's log does not say why %s is unreachable:\n%s", g.master.Addr(), log)
	}
}

// The Redis TLS files are re-read on SIGHUP: a node started with the wrong
// CA votes the TLS-only master down (its log says the handshake failed);
// once the file holds the right CA and the node gets SIGHUP, its next
// connections pass and it votes the master up, without a restart.
func TestRedisTLSReloadOnSIGHUP(t *testing.T) {
	redistest.Require(t)
	pki := redistest.NewPKI(t)
	g := startTLSGroup(t, "tlsreload", pki)
	wrong := redistest.NewPKI(t)
	caFile := filepath.Join(t.TempDir(), "redis-ca.pem")
	writeFile(t, caFile, wrong.CA.CertPEM, 0o644)
	c := startClusterWith(t, 1, "--redis-tls-ca", caFile, "--redis-tls-cert", pki.ClientCert, "--redis-tls-key", pki.ClientKey)
	mustCtl(t, "--addr", addrs(c.nodes...), "monitor", g.name, g.master.Addr(), "--quorum", "2",
		"--down-after", "1s", "--auth-pass", tlsGroupPass)
	vote := func(down bool) func() error {
		return func() error {
			d, err := detail(c.nodes[0], g.name)
			if err != nil {
				return err
			}
			for _, v := range d.GetVotes() {
				if v.GetNodeId() == "n1" && v.GetDown() == down {
					return nil
				}
			}
			return fmt.Errorf("votes %v", d.GetVotes())
		}
	}
	testwait.For(t, waitTimeout, "a down vote with the wrong CA", vote(true))
	if log := tailFile(c.nodes[0].logPath, 200); !strings.Contains(log, "TLS handshake with "+g.master.Addr()) {
		t.Fatalf("the node's log does not name the failed handshake:\n%s", log)
	}
	writeFile(t, caFile, pki.CA.CertPEM, 0o644)
	if err := c.nodes[0].process().cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, waitTimeout, "an up vote after SIGHUP", vote(false))
	if log := tailFile(c.nodes[0].logPath, 200); !strings.Contains(log, "redis_tls=true") {
		t.Fatalf("no reload logged:\n%s", log)
	}
}
