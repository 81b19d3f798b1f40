package server

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/raftinel/raftinel/internal/promtest"
)

// The files operators deploy, relative to this package.
var (
	rulesFile     = filepath.Join("..", "deploy", "prometheus", "raftinel-rules.yml")
	rulesTestFile = filepath.Join("..", "deploy", "prometheus", "raftinel-rules.test.yml")
	dashboardFile = filepath.Join("..", "deploy", "grafana", "raftinel.json")
)

var metricRef = regexp.MustCompile(`\braftinel_[a-z0-9_]+`)

// knownMetric reports whether name is a series this node exports: a
// metric of metricDefs, or one of a histogram's _bucket, _sum and _count.
func knownMetric(name string) bool {
	for _, d := range metricDefs {
		if name == d.name {
			return true
		}
		if d.typ == "histogram" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if name == d.name+suffix {
					return true
				}
			}
		}
	}
	return false
}

// checkExpr fails unless expr names at least one metric and every one it
// names exists.
func checkExpr(t *testing.T, where, expr string) {
	t.Helper()
	refs := metricRef.FindAllString(expr, -1)
	if len(refs) == 0 && !strings.Contains(expr, "up{") {
		t.Errorf("%s: expression %q names no Raftinel metric", where, expr)
	}
	for _, r := range refs {
		if !knownMetric(r) {
			t.Errorf("%s: expression %q names %s, which no node exports", where, expr, r)
		}
	}
}

type dashboardPanel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// TestDashboardPanelsUseExportedMetrics parses the shipped Grafana
// dashboard and checks that every panel queries metrics that exist.
func TestDashboardPanelsUseExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string           `json:"title"`
		UID        string           `json:"uid"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("dashboard without title or uid: %q %q", d.Title, d.UID)
	}
	var panels []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	used := map[string]bool{}
	n := 0
	for _, p := range panels {
		if p.Type == "row" {
			continue
		}
		n++
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr)
			for _, r := range metricRef.FindAllString(tg.Expr, -1) {
				used[strings.TrimSuffix(r, "_bucket")] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			checkExpr(t, "variable "+v.Name, v.Definition)
		}
	}
	// The panels an operator looks at first.
	for _, m := range []string{"raftinel_raft_is_leader", "raftinel_master_config_epoch", "raftinel_master_info", "raftinel_master_odown",
		"raftinel_master_down_votes", "raftinel_master_quorum", "raftinel_master_replicas_up", "raftinel_replica_lag_bytes",
		"raftinel_probe_ping_duration_seconds", "raftinel_failovers_total"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	if n < 10 {
		t.Errorf("%d panels", n)
	}
}

// TestAlertRulesPassPromtool checks the shipped rules with promtool (syntax
// and PromQL) and runs their unit tests, and checks that they name only
// metrics that exist.
func TestAlertRulesPassPromtool(t *testing.T) {
	promtool := promtest.RequirePromtool(t)
	dir := filepath.Dir(rulesFile)
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(rulesFile)},
		{"test", "rules", filepath.Base(rulesTestFile)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	// Every alert's expression lines; YAML block scalars keep the
	// expression on the lines below "expr: |".
	lines := strings.Split(string(b), "\n")
	alerts := 0
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "- alert:") {
			alerts++
		}
		if !strings.HasPrefix(trimmed, "expr:") {
			continue
		}
		expr := strings.TrimSpace(strings.TrimPrefix(trimmed, "expr:"))
		if expr == "|" {
			expr = ""
			indent := len(l) - len(strings.TrimLeft(l, " "))
			for _, next := range lines[i+1:] {
				if strings.TrimSpace(next) != "" && len(next)-len(strings.TrimLeft(next, " ")) <= indent {
					break
				}
				expr += " " + strings.TrimSpace(next)
			}
		}
		checkExpr(t, "rule at line "+strings.TrimSpace(lines[max(0, i-1)]), expr)
	}
	for _, name := range []string{"RaftinelNoLeader", "RaftinelMasterDownWithoutFailover", "RaftinelFailoverFailed", "RaftinelNodeInTilt"} {
		if !strings.Contains(string(b), "- alert: "+name+"\n") {
			t.Errorf("no alert %s", name)
		}
	}
	if alerts < 4 {
		t.Errorf("%d alerts", alerts)
	}
}
