package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
)

// explainVia runs coordinatorctl explain (-o json) against one node.
func explainVia(n *node, name string, extra ...string) (*coordinatorv1.ExplainResponse, error) {
	resp := &coordinatorv1.ExplainResponse{}
	err := ctlJSON(resp, append([]string{"--addr", n.grpcAddr, "explain", name}, extra...)...)
	return resp, err
}

// A replica with replica-priority 0 is shown excluded, with that reason,
// by coordinatorctl explain on a follower (answered from the leader's
// view) and by failover --dry-run; maintenance is shown, refuses a
// coordinated failover, and holds back the automatic failover of a killed
// master, which ODOWN still marks; once maintenance ends, the eligible
// replica is promoted.
func TestExplainShowsExcludedReplicaAndMaintenance(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "mymaster", nil, []redistest.Option{redistest.ReplicaPriority(0)})
	g.monitor(t, c, 2, 5*time.Second)
	leaderID := waitAgreedLeader(t, c.nodes...)
	var follower *node
	for _, n := range c.nodes {
		if n.id != leaderID {
			follower = n
			break
		}
	}

	testwait.For(t, waitTimeout, "explain ranking r1 first and excluding r2 for priority 0", func() error {
		ex, err := explainVia(follower, g.name)
		if err != nil {
			return err
		}
		if !ex.GetFromLeader() || ex.GetNodeId() != leaderID {
			return fmt.Errorf("answered by %s (from leader: %v), want the leader %s", ex.GetNodeId(), ex.GetFromLeader(), leaderID)
		}
		var rows []string
		for _, r := range ex.GetReplicas() {
			rows = append(rows, fmt.Sprintf("%s %v %d %s", r.GetAddress(), r.GetEligible(), r.GetRank(), r.GetReason()))
		}
		want := []string{g.r1.Addr() + " true 1 ", g.r2.Addr() + " false 0 priority 0"}
		if !slices.Equal(rows, want) || ex.GetAction() != "none" || ex.GetCandidate() != g.r1.Addr() {
			return fmt.Errorf("action %q candidate %q replicas %q, want %q", ex.GetAction(), ex.GetCandidate(), rows, want)
		}
		return nil
	})
	// The table output names the reason on r2's row.
	r := mustCtl(t, "--addr", follower.grpcAddr, "explain", g.name)
	var r2Row string
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, g.r2.Addr()) {
			r2Row = line
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(r2Row), "priority 0") || !strings.Contains(r.stdout, "decision        none: ") {
		t.Fatalf("explain output:\n%s", r.stdout)
	}

	mustCtl(t, "--addr", follower.grpcAddr, "set", g.name, "maintenance", "yes")
	// The set was committed through the follower; the node that answers
	// may apply it a moment later.
	testwait.For(t, waitTimeout, "masters showing maintenance", func() error {
		r := mustCtl(t, "--addr", addrs(c.nodes...), "masters")
		if !strings.Contains(r.stdout, "MAINTENANCE") || !strings.Contains(strings.Split(r.stdout, "\n")[1], "yes") {
			return fmt.Errorf("masters:\n%s", r.stdout)
		}
		return nil
	})
	r = mustCtl(t, "--addr", follower.grpcAddr, "failover", g.name, "--dry-run")
	if !strings.Contains(r.stdout, "plan         refused: ") || !strings.Contains(r.stdout, "maintenance: the master is in maintenance") {
		t.Fatalf("coordinated dry run in maintenance:\n%s", r.stdout)
	}
	r = mustCtl(t, "--addr", follower.grpcAddr, "failover", g.name, "--dry-run", "--force")
	if !strings.Contains(r.stdout, "would begin now") || !strings.Contains(r.stdout, "promote      "+g.r1.Addr()) {
		t.Fatalf("forced dry run in maintenance:\n%s", r.stdout)
	}
	r, err := ctl("--addr", follower.grpcAddr, "failover", g.name)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 1 || !strings.Contains(r.stderr, "in maintenance") {
		t.Fatalf("coordinated failover in maintenance: %v", r)
	}

	g.master.Kill()
	testwait.For(t, waitTimeout, "ODOWN held back by maintenance", func() error {
		ex, err := explainVia(follower, g.name)
		if err != nil {
			return err
		}
		if !ex.GetOdown() || ex.GetAction() != "blocked" || len(ex.GetBlocking()) == 0 || ex.GetBlocking()[0].GetCode() != "maintenance" {
			return fmt.Errorf("odown %v action %q blocking %v", ex.GetOdown(), ex.GetAction(), ex.GetBlocking())
		}
		return nil
	})
	d, err := detail(follower, g.name)
	if err != nil {
		t.Fatal(err)
	}
	if d.GetFailover() != nil || d.GetMaster().GetEpoch() != 0 || d.GetLastFailoverAt() != nil {
		t.Fatalf("a failover began in maintenance: %v", d)
	}

	mustCtl(t, "--addr", follower.grpcAddr, "set", g.name, "maintenance", "no")
	testwait.For(t, waitTimeout, "the failover to r1 once maintenance ended", func() error {
		d, err := detail(follower, g.name)
		if err != nil {
			return err
		}
		if d.GetMaster().GetEpoch() != 1 || d.GetMaster().GetAddress() != g.r1.Addr() {
			return fmt.Errorf("master %v", d.GetMaster())
		}
		return nil
	})
	d, err = detail(follower, g.name)
	if err != nil {
		t.Fatal(err)
	}
	var seq = map[string]uint64{}
	for _, e := range d.GetEvents() {
		if _, ok := seq[e.GetType()]; !ok {
			seq[e.GetType()] = e.GetSeq()
		}
	}
	if seq["+maintenance"] == 0 || seq["-maintenance"] == 0 || seq["+try-failover"] < seq["-maintenance"] {
		t.Fatalf("events: +maintenance %d, -maintenance %d, +try-failover %d", seq["+maintenance"], seq["-maintenance"], seq["+try-failover"])
	}
}
