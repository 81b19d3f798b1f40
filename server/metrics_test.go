package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	dto "github.com/prometheus/client_model/go"
)

// scrape is one parsed /metrics response.
type scrape map[string]*dto.MetricFamily

// scrapeNode fetches and parses a node's /metrics with Prometheus's own
// text parser.
func scrapeNode(addr string) (scrape, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /metrics: %s: %s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		return nil, fmt.Errorf("content type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(resp.Body)
}

func mustScrape(t testing.TB, nd *inmemNode) scrape {
	t.Helper()
	sc, err := scrapeNode(nd.srv.MetricsAddr())
	if err != nil {
		t.Fatalf("scrape %s: %v", nd.id, err)
	}
	return sc
}

// series returns the samples of a family whose labels include want
// (name=value pairs).
func (sc scrape) series(name string, want ...string) []*dto.Metric {
	var out []*dto.Metric
	f := sc[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			if labelOf(m, want[i]) != want[i+1] {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// value is the value of the one series of name matching the labels.
func (sc scrape) value(name string, labels ...string) (float64, error) {
	s := sc.series(name, labels...)
	if len(s) != 1 {
		return 0, fmt.Errorf("%s%v: %d series, want 1", name, labels, len(s))
	}
	return sampleValue(s[0]), nil
}

// expect checks name{labels} == want.
func (sc scrape) expect(name string, want float64, labels ...string) error {
	v, err := sc.value(name, labels...)
	if err != nil {
		return err
	}
	if v != want {
		return fmt.Errorf("%s%v = %v, want %v", name, labels, v, want)
	}
	return nil
}

// expectNone checks that no series of name has the labels.
func expectNone(sc scrape, name string, labels ...string) error {
	if s := sc.series(name, labels...); len(s) != 0 {
		return fmt.Errorf("%s%v: %d series, want none", name, labels, len(s))
	}
	return nil
}

// labelValues lists one label's values over a family's series.
func (sc scrape) labelValues(name, label string, want ...string) []string {
	var out []string
	for _, m := range sc.series(name, want...) {
		out = append(out, labelOf(m, label))
	}
	sort.Strings(out)
	return out
}

// TestMetricsAcrossARealFailover scrapes real nodes (real redis-server
// instances, an in-process Raft cluster) before and after the master is
// killed, and checks what an operator's dashboard and alerts read: the
// master's address and epoch move, every node counts the failover once,
// the probes' view of each instance.
func TestMetricsAcrossARealFailover(t *testing.T) {
	redistest.Require(t)
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	g := startGroup(t, 100, 100)
	c.monitorGroup(t, "mymaster", g, 2)
	old := g.master.Addr()
	instances := []string{old, g.r1.Addr(), g.r2.Addr()}
	slices.Sort(instances)

	for _, nd := range c.nodes {
		testwait.For(t, 20*time.Second, nd.id+"'s metrics before the failover", func() error {
			sc, err := scrapeNode(nd.srv.MetricsAddr())
			if err != nil {
				return err
			}
			for _, check := range []error{
				sc.expect("raftinel_master_info", 1, "master", "mymaster", "address", old),
				sc.expect("raftinel_master_config_epoch", 0, "master", "mymaster"),
				sc.expect("raftinel_master_odown", 0, "master", "mymaster"),
				sc.expect("raftinel_master_quorum", 2, "master", "mymaster"),
				sc.expect("raftinel_master_replicas", 2, "master", "mymaster"),
				sc.expect("raftinel_master_replicas_up", 2, "master", "mymaster"),
				sc.expect("raftinel_master_failover_in_progress", 0, "master", "mymaster"),
				sc.expect("raftinel_failovers_total", 0, "kind", "automatic", "result", "promoted"),
				sc.expect("raftinel_raft_voters", 3),
				sc.expect("raftinel_tilt", 0),
			} {
				if check != nil {
					return check
				}
			}
			if n := len(sc.series("raftinel_master_info")); n != 1 {
				return fmt.Errorf("%d master_info series, want 1", n)
			}
			for _, a := range instances {
				if err := sc.expect("raftinel_instance_up", 1, "master", "mymaster", "address", a); err != nil {
					return err
				}
				want := map[string]float64{"master": 0, "slave": 1}
				if a == old {
					want = map[string]float64{"master": 1, "slave": 0}
				}
				for role, v := range want {
					if err := sc.expect("raftinel_instance_role", v, "address", a, "role", role); err != nil {
						return err
					}
				}
				h := sc.series("raftinel_probe_ping_duration_seconds", "master", "mymaster", "address", a)
				if len(h) != 1 || h[0].GetHistogram().GetSampleCount() == 0 {
					return fmt.Errorf("no PING round trips of %s: %v", a, h)
				}
			}
			for _, phase := range []string{"handover", "promoting", "reconf_replicas"} {
				if err := sc.expect("raftinel_master_failover_phase", 0, "master", "mymaster", "phase", phase); err != nil {
					return err
				}
			}
			return nil
		})
	}
	leader := c.leader()
	sc := mustScrape(t, leader)
	if err := sc.expect("raftinel_raft_is_leader", 1); err != nil {
		t.Fatal(err)
	}
	if h := sc.series("raftinel_raft_commit_duration_seconds"); len(h) != 1 || h[0].GetHistogram().GetSampleCount() == 0 {
		t.Fatalf("the leader reports no commit latency: %v", h)
	}
	if v, _ := sc.value("raftinel_raft_leader_changes_total"); v < 1 {
		t.Fatalf("leader changes %v, want at least the first leader", v)
	}
	for _, f := range c.followers(leader) {
		fs := mustScrape(t, f)
		if err := fs.expect("raftinel_raft_is_leader", 0); err != nil {
			t.Fatal(err)
		}
		if v, err := fs.value("raftinel_raft_last_contact_seconds"); err != nil || v > 5 {
			t.Fatalf("follower %s last contact %v (%v)", f.id, v, err)
		}
	}

	g.master.Kill()
	var newAddr string
	testwait.Until(t, 30*time.Second, "the failover to finish on every node", func() bool {
		for _, nd := range c.nodes {
			m, _, _ := nd.srv.FSM().Master("mymaster")
			if m.GetEpoch() != 1 || m.GetFailover() != nil {
				return false
			}
			newAddr = m.GetAddress()
		}
		return true
	})
	for _, nd := range c.nodes {
		// The promotion applied, the rest follows at the next INFO: poll.
		testwait.For(t, 20*time.Second, nd.id+"'s metrics after the failover", func() error {
			sc, err := scrapeNode(nd.srv.MetricsAddr())
			if err != nil {
				return err
			}
			for _, check := range []error{
				sc.expect("raftinel_master_config_epoch", 1, "master", "mymaster"),
				sc.expect("raftinel_master_info", 1, "master", "mymaster", "address", newAddr),
				sc.expect("raftinel_failovers_total", 1, "kind", "automatic", "result", "promoted"),
				sc.expect("raftinel_failovers_total", 0, "kind", "automatic", "result", "aborted"),
				sc.expect("raftinel_failovers_rolled_back_total", 0),
				sc.expect("raftinel_master_odown", 0, "master", "mymaster"),
				sc.expect("raftinel_master_failover_in_progress", 0, "master", "mymaster"),
				sc.expect("raftinel_instance_up", 0, "master", "mymaster", "address", old),
				sc.expect("raftinel_instance_role", 1, "address", newAddr, "role", "master"),
				// The dead instance's role is unknown, not its last INFO's.
				expectNone(sc, "raftinel_instance_role", "address", old),
			} {
				if check != nil {
					return check
				}
			}
			// The series moved: one master_info, at the new address.
			if got := sc.labelValues("raftinel_master_info", "address"); !slices.Equal(got, []string{newAddr}) {
				return fmt.Errorf("master_info addresses %v, want only %s", got, newAddr)
			}
			return nil
		})
	}

	// A snapshot shows up with its size.
	if err := leader.srv.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if v, err := mustScrape(t, leader).value("raftinel_raft_snapshot_size_bytes"); err != nil || v <= 0 {
		t.Fatalf("snapshot size %v (%v)", v, err)
	}
}

// TestMetricsFrontEndsAndProbeWithoutRedis covers what needs no
// redis-server: Sentinel clients and commands, watch streams, a monitored
// instance that refuses connections, and the end of serving at Shutdown.
func TestMetricsFrontEndsAndProbeWithoutRedis(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	nd := c.leader()
	c.registered()
	// A port nothing listens on: the probe's connections are refused.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	_, err = nd.client.Monitor(ctxT(t, 5*time.Second), &coordinatorv1.MonitorRequest{Name: "cache", Address: dead,
		Settings: &coordinatorv1.MasterSettings{Quorum: 1, DownAfter: durationpb.New(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}

	sc := sentinelClient(t, nd)
	for range 3 {
		if err := sc.Ping(ctxT(t, 5*time.Second)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := nd.client.WatchMaster(ctx, &coordinatorv1.WatchMasterRequest{Name: "cache"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the front ends' and the probe's metrics", func() error {
		s, err := scrapeNode(nd.srv.MetricsAddr())
		if err != nil {
			return err
		}
		for _, check := range []error{
			s.expect("raftinel_watch_master_streams", 1),
			s.expect("raftinel_watch_events_streams", 0),
			s.expect("raftinel_sentinel_clients", 1),
			s.expect("raftinel_sentinel_commands_total", 0, "command", "sentinel|get-master-addr-by-name"),
			s.expect("raftinel_instance_up", 0, "master", "cache", "address", dead),
			s.expect("raftinel_master_info", 1, "master", "cache", "address", dead),
			s.expect("raftinel_raft_is_leader", 1),
			s.expect("raftinel_raft_last_contact_seconds", 0),
		} {
			if check != nil {
				return check
			}
		}
		// go-redis may send HELLO or CLIENT first; the PINGs are ours.
		if v, err := s.value("raftinel_sentinel_commands_total", "command", "ping"); err != nil || v < 3 {
			return fmt.Errorf("sentinel PINGs counted %v (%v), want at least 3", v, err)
		}
		// No INFO from a dead instance: no role series, no round trips.
		if n := len(s.series("raftinel_instance_role")) + len(s.series("raftinel_probe_ping_duration_seconds")); n != 0 {
			return fmt.Errorf("%d role or round-trip series for an instance that never replied", n)
		}
		// Counters of every kind and result exist from the start.
		if n := len(s.series("raftinel_failovers_total")); n != 6 {
			return fmt.Errorf("%d failover counters, want 3 kinds x 2 results", n)
		}
		return nil
	})
	// Every Raftinel family served is in metricDefs, with its type.
	for name, f := range mustScrape(t, nd) {
		if !strings.HasPrefix(name, "raftinel_") {
			continue
		}
		if !knownMetric(name) {
			t.Errorf("%s is served but not in metricDefs", name)
		} else if typ := strings.ToLower(f.GetType().String()); typ != metricDefByName(name).typ {
			t.Errorf("%s is served as a %s, listed as a %s", name, typ, metricDefByName(name).typ)
		}
	}
	cancel()
	testwait.For(t, 10*time.Second, "the closed stream uncounted", func() error {
		s, err := scrapeNode(nd.srv.MetricsAddr())
		if err != nil {
			return err
		}
		return s.expect("raftinel_watch_master_streams", 0)
	})

	addr := nd.srv.MetricsAddr()
	c.stop(nd)
	if _, err := scrapeNode(addr); err == nil {
		t.Fatal("metrics still served after Shutdown")
	}
}

// TestMetricsAddrTakenFailsStart: a taken metrics port fails New before
// Raft or any other listener starts, and releases what it had bound.
func TestMetricsAddrTakenFailsStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sentinelAddr := free.Addr().String()
	free.Close()

	_, trans := raft.NewInmemTransport("")
	store := raft.NewInmemStore()
	_, err = New(Config{
		ID: "n1", GRPCAddr: "127.0.0.1:1", SentinelAddr: sentinelAddr, MetricsAddr: taken.Addr().String(),
		LogStore: store, StableStore: store, SnapshotStore: raft.NewInmemSnapshotStore(), Transport: trans,
		Logger: testLogger(t),
	})
	if err == nil || !strings.Contains(err.Error(), "metrics address") {
		t.Fatalf("New with a taken metrics port: %v", err)
	}
	// The Sentinel port bound before it was released.
	again, err := net.Listen("tcp", sentinelAddr)
	if err != nil {
		t.Fatalf("the Sentinel port stayed bound after the failed start: %v", err)
	}
	again.Close()

	cfg := Config{ID: "n1", GRPCAddr: "127.0.0.1:1", MetricsAddr: "localhost", LogStore: store, StableStore: store,
		SnapshotStore: raft.NewInmemSnapshotStore(), Transport: trans}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("Validate with metrics address %q: %v", cfg.MetricsAddr, err)
	}
}

// TestMetricsOffByDefault: without MetricsAddr nothing is served.
func TestMetricsOffByDefault(t *testing.T) {
	_, trans := raft.NewInmemTransport("")
	store := raft.NewInmemStore()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{ID: "n1", GRPCListener: lis, LogStore: store, StableStore: store,
		SnapshotStore: raft.NewInmemSnapshotStore(), Transport: trans, Logger: testLogger(t),
		Bootstrap: []raft.Server{{ID: "n1", Address: trans.LocalAddr()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
			t.Error(err)
		}
	}()
	if a := s.MetricsAddr(); a != "" {
		t.Fatalf("MetricsAddr %q with metrics off", a)
	}
}
