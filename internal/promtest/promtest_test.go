package promtest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
)

// A Prometheus started here scrapes a target and fires a rule; its process
// is gone and its directory removed when the test ends.
func TestPrometheusScrapesAndFires(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE promtest_up gauge\npromtest_up 0\n")
	}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()

	rules := filepath.Join(t.TempDir(), "rules.yml")
	text := "groups:\n  - name: t\n    rules:\n      - alert: PromtestDown\n        expr: promtest_up == 0\n        for: 1h\n"
	if err := os.WriteFile(rules, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var p *Server
	t.Run("run", func(t *testing.T) {
		p = Start(t, Config{Targets: []string{lis.Addr().String()}, RuleFiles: []string{rules},
			Rewrite: func(s string) string { return strings.ReplaceAll(s, "for: 1h", "for: 0s") }})
		testwait.For(t, 30*time.Second, "the rule firing", func() error {
			a, err := p.Firing("PromtestDown")
			if err != nil {
				return err
			}
			if len(a) != 1 || a[0].Labels["job"] != "raftinel" {
				return fmt.Errorf("firing %v", a)
			}
			return nil
		})
		v, err := p.Query(`promtest_up`)
		if err != nil || len(v) != 1 || v[0].Value != "0" {
			t.Fatalf("query: %v %v", v, err)
		}
		tg, err := p.Targets()
		if err != nil || len(tg) != 1 || tg[0].Health != "up" {
			t.Fatalf("targets: %v %v", tg, err)
		}
	})
	if p == nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.Signal(0)); err == nil || !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("prometheus still running after its test ended (signal 0: %v)", err)
	}
	if _, err := os.Stat(p.dir); !os.IsNotExist(err) {
		t.Fatalf("its directory %s is left behind: %v", p.dir, err)
	}
}
