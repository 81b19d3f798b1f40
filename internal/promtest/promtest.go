// Package promtest runs a real Prometheus server (Debian's prometheus
// package, `make prometheus`) for tests: a generated configuration that
// scrapes given targets and evaluates given rule files, on a free
// 127.0.0.1 port, queried through Prometheus's HTTP API. Require and
// RequirePromtool skip a test when the binaries are missing, or fail it
// when the environment variable CI is "true", like redistest.Require.
//
// Every process started here is killed by its PID when the test ends, and
// its data directory is removed. Only tests may import this package.
package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testbin"
	"github.com/raftinel/raftinel/internal/testwait"
)

// Require returns the path of the prometheus binary ($PROMETHEUS, or on
// PATH).
func Require(tb testing.TB) string {
	tb.Helper()
	return require(tb, "PROMETHEUS", "prometheus")
}

// RequirePromtool returns the path of promtool ($PROMTOOL, or on PATH).
func RequirePromtool(tb testing.TB) string {
	tb.Helper()
	return require(tb, "PROMTOOL", "promtool")
}

func require(tb testing.TB, env, name string) string {
	tb.Helper()
	return testbin.Require(tb, env, name, "make prometheus installs it")
}

// Config is what the generated prometheus.yml says.
type Config struct {
	// Job is the scrape job's name (default "raftinel").
	Job string
	// Targets are the host:port addresses scraped at /metrics.
	Targets []string
	// Interval is both the scrape and the rule evaluation interval
	// (default 1s).
	Interval time.Duration
	// RuleFiles are rule files to load, copied into the server's
	// directory; Rewrite, when set, may change each one's text first.
	RuleFiles []string
	Rewrite   func(rules string) string
}

// Server is one running Prometheus.
type Server struct {
	// URL is the base URL of its HTTP API, http://127.0.0.1:port.
	URL string
	cmd *exec.Cmd
	dir string
	log string
}

// startAttempts bounds the retries when another process takes the chosen
// port before Prometheus binds it.
const startAttempts = 5

// Start runs Prometheus with cfg and waits until it is ready. It stops
// when the test ends.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	bin := Require(tb)
	if cfg.Job == "" {
		cfg.Job = "raftinel"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	dir, err := os.MkdirTemp("", "promtest-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	var rules []string
	for i, f := range cfg.RuleFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		text := string(b)
		if cfg.Rewrite != nil {
			text = cfg.Rewrite(text)
		}
		name := filepath.Join(dir, fmt.Sprintf("rules-%d.yml", i))
		if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
		rules = append(rules, name)
	}
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(render(cfg, rules)), 0o600); err != nil {
		tb.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		s, err := start(tb, bin, dir, config, attempt)
		if err == nil {
			return s
		}
		if !errors.Is(err, errAddrInUse) || attempt == startAttempts {
			tb.Fatalf("promtest: %v", err)
		}
	}
}

var errAddrInUse = errors.New("address already in use")

func start(tb testing.TB, bin, dir, config string, attempt int) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := lis.Addr().String()
	lis.Close()
	logPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
		"--web.listen-address="+addr,
		"--log.level=info",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	s := &Server{URL: "http://" + addr, cmd: cmd, dir: dir, log: logPath}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	err = testwait.Poll(30*time.Second, func() error {
		select {
		case <-done:
			text, _ := os.ReadFile(logPath)
			if strings.Contains(string(text), "address already in use") {
				return testwait.Stop(errAddrInUse)
			}
			return testwait.Stop(fmt.Errorf("prometheus exited before it was ready:\n%s", tail(string(text), 20)))
		default:
		}
		return s.get("/-/ready", nil)
	})
	if err != nil {
		stop()
		return nil, err
	}
	tb.Cleanup(func() {
		stop()
		if tb.Failed() {
			text, _ := os.ReadFile(logPath)
			tb.Logf("--- tail of prometheus's log ---\n%s", tail(string(text), 30))
		}
	})
	return s, nil
}

func render(cfg Config, rules []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n",
		promDuration(cfg.Interval), promDuration(cfg.Interval), promDuration(cfg.Interval))
	if len(rules) > 0 {
		b.WriteString("rule_files:\n")
		for _, r := range rules {
			fmt.Fprintf(&b, "  - %q\n", r)
		}
	}
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: %q\n    static_configs:\n      - targets:\n", cfg.Job)
	for _, t := range cfg.Targets {
		fmt.Fprintf(&b, "          - %q\n", t)
	}
	return b.String()
}

// promDuration writes d in Prometheus's duration syntax (milliseconds).
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// get fetches path and decodes the API's JSON envelope's data into out
// (nil: only the status code matters).
func (s *Server) get(path string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, env.Status, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// Alert is one alert as /api/v1/alerts reports it.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// State is "pending" or "firing".
	State string `json:"state"`
}

// Alerts returns the active (pending or firing) alerts.
func (s *Server) Alerts() ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := s.get("/api/v1/alerts", &data); err != nil {
		return nil, err
	}
	return data.Alerts, nil
}

// Firing returns the firing alerts named name.
func (s *Server) Firing(name string) ([]Alert, error) {
	all, err := s.Alerts()
	if err != nil {
		return nil, err
	}
	var out []Alert
	for _, a := range all {
		if a.Labels["alertname"] == name && a.State == "firing" {
			out = append(out, a)
		}
	}
	return out, nil
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  string
}

// Query evaluates an instant query now and returns its vector.
func (s *Server) Query(expr string) ([]Sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := s.get("/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %q, want vector", expr, data.ResultType)
	}
	out := make([]Sample, 0, len(data.Result))
	for _, r := range data.Result {
		v, _ := r.Value[1].(string)
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// Target is one scrape target's health.
type Target struct {
	ScrapeURL string `json:"scrapeUrl"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// Targets returns the active scrape targets.
func (s *Server) Targets() ([]Target, error) {
	var data struct {
		ActiveTargets []Target `json:"activeTargets"`
	}
	if err := s.get("/api/v1/targets?state=active", &data); err != nil {
		return nil, err
	}
	return data.ActiveTargets, nil
}
