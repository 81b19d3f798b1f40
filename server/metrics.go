package server

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// metricDef is one metric this node exports. The table below is the one
// list of them: the collector builds its descriptors from it, and the
// tests check the README, the alert rules and the dashboard against it.
type metricDef struct {
	name   string
	typ    string // gauge, counter or histogram
	help   string
	labels []string
}

// The metrics, in the README's order. Gauges that describe the replicated
// state or this node's probes are read when Prometheus scrapes
// (stateCollector), so no series is created per change and nothing is
// added to the paths that apply commands or probe instances; the counters
// and histograms that need every event are plain client_golang instruments.
var metricDefs = []metricDef{
	{"raftinel_raft_is_leader", "gauge", "1 when this node is the Raft leader, else 0.", nil},
	{"raftinel_raft_term", "gauge", "This node's current Raft term.", nil},
	{"raftinel_raft_voters", "gauge", "Voters in the Raft configuration as this node knows it.", nil},
	{"raftinel_raft_leader_changes_total", "counter", "Leaders this node has seen take office (the first one included).", nil},
	{"raftinel_raft_commit_duration_seconds", "histogram", "Time from proposing a command on the leader to its being committed and applied there.", nil},
	{"raftinel_raft_last_contact_seconds", "gauge", "Time since this follower last heard from the leader (0 on the leader; absent before any contact).", nil},
	{"raftinel_raft_applied_index", "gauge", "Raft index of the last command applied to this node's state.", nil},
	{"raftinel_raft_snapshot_size_bytes", "gauge", "Size of the newest Raft snapshot in this node's snapshot store (absent before the first).", nil},

	{"raftinel_master_info", "gauge", "1 for each monitored master, labelled with the address of its current master instance.", []string{"master", "address"}},
	{"raftinel_master_config_epoch", "gauge", "The master's epoch: rises by one with every committed promotion.", []string{"master"}},
	{"raftinel_master_odown", "gauge", "1 while the committed state holds the master objectively down, else 0.", []string{"master"}},
	{"raftinel_master_down_votes", "gauge", "Fresh down votes for the current master instance, counted as the leader counts them.", []string{"master"}},
	{"raftinel_master_quorum", "gauge", "Down votes needed for ODOWN.", []string{"master"}},
	{"raftinel_master_replicas", "gauge", "Known replicas of the master.", []string{"master"}},
	{"raftinel_master_replicas_up", "gauge", "Known replicas neither subjectively down nor disconnected, as the leader last committed.", []string{"master"}},
	{"raftinel_replica_lag_bytes", "gauge", "Master replication offset minus the replica's, as this node's own probe last read them in their INFO (every 10 s, every second while the master is in trouble); the committed ones where this node has no newer INFO.", []string{"master", "replica"}},
	{"raftinel_master_failover_in_progress", "gauge", "1 while a failover journal of the master is open, else 0.", []string{"master"}},
	{"raftinel_master_failover_phase", "gauge", "1 for the phase the open failover journal is in (handover, promoting, reconf_replicas), 0 for the others.", []string{"master", "phase"}},
	{"raftinel_master_maintenance", "gauge", "1 while the master is in maintenance (automatic failovers and repairs suspended), else 0.", []string{"master"}},

	{"raftinel_instance_up", "gauge", "1 when this node's last PING of the instance got a valid reply (PONG, LOADING, MASTERDOWN), else 0.", []string{"master", "address"}},
	{"raftinel_instance_role", "gauge", "1 for the role the instance's INFO reports to this node (master or slave), 0 for the other; absent while its INFO fails.", []string{"master", "address", "role"}},
	{"raftinel_probe_ping_duration_seconds", "histogram", "Round trip of this node's PINGs that got a reply, per instance.", []string{"master", "address"}},

	{"raftinel_failovers_total", "counter", "Failovers whose end this node applied, by kind (automatic, coordinated, forced) and result (promoted, aborted).", []string{"kind", "result"}},
	{"raftinel_failovers_rolled_back_total", "counter", "Coordinated failovers rolled back because the replica did not catch up within the handover timeout (the old master kept its role).", nil},
	{"raftinel_hook_runs_total", "counter", "Hook runs (notification-script, client-reconfig-script, webhook-url) this node made as leader, by kind and result (ok, failed, timeout).", []string{"kind", "result"}},
	{"raftinel_hook_gave_up_total", "counter", "Events a hook gave up on as this node led (-script-error, -webhook-error): a permanent failure or the retries ran out.", []string{"kind"}},
	{"raftinel_hook_pending_events", "gauge", "Events of the master its hook has still to be delivered, from the committed state.", []string{"master", "kind"}},
	{"raftinel_tilt", "gauge", "1 while this node is in TILT (it casts no down vote and takes no failover action), else 0.", nil},
	{"raftinel_tilt_entered_total", "counter", "Times this node entered TILT.", nil},
	{"raftinel_sentinel_clients", "gauge", "Open connections to the Sentinel-protocol endpoint.", nil},
	{"raftinel_sentinel_subscribers", "gauge", "Sentinel connections with at least one subscription.", nil},
	{"raftinel_sentinel_commands_total", "counter", "Commands received on the Sentinel endpoint, by command table name (unknown ones as \"unknown\").", []string{"command"}},
	{"raftinel_watch_master_streams", "gauge", "Open WatchMaster streams on this node.", nil},
	{"raftinel_watch_events_streams", "gauge", "Open WatchEvents streams on this node.", nil},
}

// Values of the fixed labels.
var (
	failoverKinds   = []string{"automatic", "coordinated", "forced"}
	failoverResults = []string{fsm.ResultPromoted, fsm.ResultAborted}
	// failoverPhases are raftinel_master_failover_phase's phase values.
	failoverPhases = map[fsmv1.FailoverPhase]string{
		fsmv1.FailoverPhase_FAILOVER_PHASE_HANDOVER:        "handover",
		fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING:       "promoting",
		fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS: "reconf_replicas",
	}
	instanceRoles = []probe.Role{probe.RoleMaster, probe.RoleSlave}
	hookResults   = []string{orchestrator.HookResultOK, orchestrator.HookResultFailed, orchestrator.HookResultTimeout}
)

// Histogram buckets, in seconds: commits on a LAN take milliseconds, a
// PING on a LAN well under one.
var (
	commitBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	pingBuckets   = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

func metricDefByName(name string) metricDef {
	for _, d := range metricDefs {
		if d.name == name {
			return d
		}
	}
	panic("server: no metric " + name)
}

// nodeMetrics is one node's registry, so nodes embedded in one process
// never share a series.
type nodeMetrics struct {
	reg           *prometheus.Registry
	commit        prometheus.Histogram
	leaderChanges prometheus.Counter
	tiltEntered   prometheus.Counter
	hookRuns      *prometheus.CounterVec
	hookGaveUps   *prometheus.CounterVec
	pings         pingRecorder
	watchMaster   atomic.Int64
	watchEvents   atomic.Int64
}

func newNodeMetrics(s *Server) *nodeMetrics {
	opts := func(name string) (string, string) { d := metricDefByName(name); return d.name, d.help }
	m := &nodeMetrics{reg: prometheus.NewRegistry(), pings: pingRecorder{by: map[string]*pingCounts{}}}
	name, help := opts("raftinel_raft_commit_duration_seconds")
	m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: commitBuckets})
	name, help = opts("raftinel_raft_leader_changes_total")
	m.leaderChanges = prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	name, help = opts("raftinel_tilt_entered_total")
	m.tiltEntered = prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	name, help = opts("raftinel_hook_runs_total")
	m.hookRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"kind", "result"})
	name, help = opts("raftinel_hook_gave_up_total")
	m.hookGaveUps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"kind"})
	// Every kind and result from the start, so that the first failure is an
	// increase Prometheus can see.
	for _, k := range fsm.HookKinds {
		for _, r := range hookResults {
			m.hookRuns.WithLabelValues(k, r)
		}
		m.hookGaveUps.WithLabelValues(k)
	}
	m.reg.MustRegister(m.commit, m.leaderChanges, m.tiltEntered, m.hookRuns, m.hookGaveUps, newStateCollector(s),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// listenMetrics binds the metrics address, in New before anything starts,
// so that a taken port fails the start cleanly.
func (s *Server) listenMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return err
	}
	s.metricsLis = lis
	s.cfg.MetricsAddr = lis.Addr().String()
	return nil
}

// serveMetrics serves /metrics on the bound listener until Shutdown.
func (s *Server) serveMetrics() {
	if s.metricsLis == nil {
		return
	}
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog: errLog, Registry: s.metrics.reg, Timeout: 10 * time.Second,
	}))
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	srv, lis := s.metricsHTTP, s.metricsLis
	s.wg.Go(func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics server stopped", "err", err)
		}
	})
}

// closeMetrics stops serving metrics (or releases the bound port when New
// failed before serving).
func (s *Server) closeMetrics() {
	if s.metricsHTTP != nil {
		_ = s.metricsHTTP.Close()
	} else if s.metricsLis != nil {
		_ = s.metricsLis.Close()
	}
}

// MetricsAddr is the address /metrics is served on, or "" when metrics
// are off.
func (s *Server) MetricsAddr() string { return s.cfg.MetricsAddr }

// watchLeaderChanges counts the leaders raft reports taking office.
func (s *Server) watchLeaderChanges() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	s.raft.RegisterObserver(obs)
	s.wg.Go(func() {
		defer s.raft.DeregisterObserver(obs)
		for {
			select {
			case <-s.ctx.Done():
				return
			case o := <-ch:
				if lo, ok := o.Data.(raft.LeaderObservation); ok && lo.LeaderID != "" {
					s.metrics.leaderChanges.Inc()
				}
			}
		}
	})
}

// pingRecorder keeps a PING round-trip histogram per instance address,
// fed by the probe's OnPingReply. Addresses no longer monitored are
// dropped at the next scrape.
type pingRecorder struct {
	mu sync.Mutex
	by map[string]*pingCounts
}

type pingCounts struct {
	buckets []uint64 // per bucket of pingBuckets, not cumulative
	count   uint64
	sum     float64
}

func (p *pingRecorder) observe(addr string, rtt time.Duration) {
	v := rtt.Seconds()
	i := sort.SearchFloat64s(pingBuckets, v) // the first upper bound >= v
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.by[addr]
	if c == nil {
		c = &pingCounts{buckets: make([]uint64, len(pingBuckets))}
		p.by[addr] = c
	}
	if i < len(c.buckets) {
		c.buckets[i]++
	}
	c.count++
	c.sum += v
}

// histograms returns the cumulative buckets, count and sum of every
// address in keep, and forgets the others.
func (p *pingRecorder) histograms(keep map[string]bool) map[string]pingCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]pingCounts, len(p.by))
	for addr, c := range p.by {
		if !keep[addr] {
			delete(p.by, addr)
			continue
		}
		cum := make([]uint64, len(c.buckets))
		var n uint64
		for i, b := range c.buckets {
			n += b
			cum[i] = n
		}
		out[addr] = pingCounts{buckets: cum, count: c.count, sum: c.sum}
	}
	return out
}

// stateCollector reads the replicated state, Raft and this node's probes
// when Prometheus scrapes.
type stateCollector struct {
	s     *Server
	descs map[string]*prometheus.Desc
}

func newStateCollector(s *Server) *stateCollector {
	c := &stateCollector{s: s, descs: map[string]*prometheus.Desc{}}
	for _, d := range metricDefs {
		switch d.name {
		case "raftinel_raft_commit_duration_seconds", "raftinel_raft_leader_changes_total", "raftinel_tilt_entered_total",
			"raftinel_hook_runs_total", "raftinel_hook_gave_up_total":
			continue // instruments of their own (newNodeMetrics)
		}
		c.descs[d.name] = prometheus.NewDesc(d.name, d.help, d.labels, nil)
	}
	return c
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	now := time.Now()
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	counter := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}

	c.collectRaft(gauge, now)

	masters, _ := s.fsm.Masters()
	instances := map[string]bool{}
	for _, m := range masters {
		ownOffsets(m, s.monitor.watcher.Observation)
		c.collectMaster(gauge, m, now)
		instances[m.GetAddress()] = true
		for _, r := range m.GetReplicas() {
			instances[r.GetAddress()] = true
		}
	}

	obs := s.monitor.watcher.Observations()
	pings := s.metrics.pings.histograms(instances)
	for _, m := range masters {
		addrs := []string{m.GetAddress()}
		for _, r := range m.GetReplicas() {
			addrs = append(addrs, r.GetAddress())
		}
		for _, a := range addrs {
			if o, ok := obs[a]; ok && !o.LastPingAt.IsZero() {
				gauge("raftinel_instance_up", b2f(o.LastPingErr == ""), m.GetName(), a)
			}
			if o, ok := obs[a]; ok && o.Info != nil && o.InfoErr == "" {
				for _, r := range instanceRoles {
					gauge("raftinel_instance_role", b2f(o.Info.Role == r), m.GetName(), a, string(r))
				}
			}
			if h, ok := pings[a]; ok {
				buckets := make(map[float64]uint64, len(pingBuckets))
				for i, le := range pingBuckets {
					buckets[le] = h.buckets[i]
				}
				ch <- prometheus.MustNewConstHistogram(c.descs["raftinel_probe_ping_duration_seconds"], h.count, h.sum, buckets, m.GetName(), a)
			}
		}
	}

	ends := map[[2]string]uint64{}
	var rolledBack uint64
	for e, n := range s.fsm.FailoverEnds() {
		kind := "forced"
		switch {
		case e.Reason != "manual":
			kind = "automatic"
		case e.Coordinated:
			kind = "coordinated"
		}
		ends[[2]string{kind, e.Result}] += n
		if e.Event == fsm.EventHandoverTimeout {
			rolledBack += n
		}
	}
	// Every kind and result from the start, so that the first failover is
	// an increase Prometheus can see.
	for _, k := range failoverKinds {
		for _, r := range failoverResults {
			counter("raftinel_failovers_total", float64(ends[[2]string{k, r}]), k, r)
		}
	}
	counter("raftinel_failovers_rolled_back_total", float64(rolledBack))

	gauge("raftinel_tilt", b2f(s.monitor.Tilt().Active(now)))
	if s.sentinel != nil {
		st := s.sentinel.Stats()
		gauge("raftinel_sentinel_clients", float64(st.Clients))
		gauge("raftinel_sentinel_subscribers", float64(st.Subscribers))
		for name, n := range st.Commands {
			counter("raftinel_sentinel_commands_total", float64(n), name)
		}
	}
	gauge("raftinel_watch_master_streams", float64(s.metrics.watchMaster.Load()))
	gauge("raftinel_watch_events_streams", float64(s.metrics.watchEvents.Load()))
}

func (c *stateCollector) collectRaft(gauge func(string, float64, ...string), now time.Time) {
	r := c.s.raft
	leader := r.State() == raft.Leader
	gauge("raftinel_raft_is_leader", b2f(leader))
	gauge("raftinel_raft_term", float64(r.CurrentTerm()))
	gauge("raftinel_raft_applied_index", float64(r.AppliedIndex()))
	if f := r.GetConfiguration(); f.Error() == nil {
		n := 0
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Voter {
				n++
			}
		}
		gauge("raftinel_raft_voters", float64(n))
	}
	switch last := r.LastContact(); {
	case leader:
		gauge("raftinel_raft_last_contact_seconds", 0)
	case !last.IsZero():
		gauge("raftinel_raft_last_contact_seconds", now.Sub(last).Seconds())
	}
	if c.s.snapshots != nil {
		if metas, err := c.s.snapshots.List(); err == nil && len(metas) > 0 {
			gauge("raftinel_raft_snapshot_size_bytes", float64(metas[0].Size))
		}
	}
}

func (c *stateCollector) collectMaster(gauge func(string, float64, ...string), m *fsmv1.Master, now time.Time) {
	name := m.GetName()
	gauge("raftinel_master_info", 1, name, m.GetAddress())
	gauge("raftinel_master_config_epoch", float64(m.GetEpoch()), name)
	gauge("raftinel_master_odown", b2f(m.GetOdown()), name)
	var votes []failover.Vote
	for _, v := range m.GetVotes() {
		if v.GetAddress() == m.GetAddress() {
			votes = append(votes, failover.Vote{Node: v.GetNodeId(), Down: v.GetDown(), At: time.Unix(0, v.GetAtUnixNanos())})
		}
	}
	gauge("raftinel_master_down_votes", float64(len(failover.DownVoters(votes, orchestrator.VoteFreshness, now))), name)
	gauge("raftinel_master_quorum", float64(m.GetSettings().GetQuorum()), name)
	up := 0
	for _, r := range m.GetReplicas() {
		if !r.GetSdown() && !r.GetDisconnected() {
			up++
		}
		if m.GetMasterOffset() > 0 && r.GetOffset() > 0 {
			gauge("raftinel_replica_lag_bytes", float64(max(0, m.GetMasterOffset()-r.GetOffset())), name, r.GetAddress())
		}
	}
	gauge("raftinel_master_replicas", float64(len(m.GetReplicas())), name)
	gauge("raftinel_master_replicas_up", float64(up), name)
	f := m.GetFailover()
	gauge("raftinel_master_failover_in_progress", b2f(f != nil), name)
	phases := make([]fsmv1.FailoverPhase, 0, len(failoverPhases))
	for p := range failoverPhases {
		phases = append(phases, p)
	}
	slices.Sort(phases)
	for _, p := range phases {
		gauge("raftinel_master_failover_phase", b2f(f != nil && f.GetPhase() == p), name, failoverPhases[p])
	}
	for _, kind := range fsm.HookKinds {
		if fsm.HookTargets(m.GetSettings())[kind] != "" {
			gauge("raftinel_hook_pending_events", float64(orchestrator.PendingHookEvents(m, kind)), name, kind)
		}
	}
	gauge("raftinel_master_maintenance", b2f(m.GetSettings().GetMaintenance()), name)
}

// hookRun and hookGaveUp count the leader's hook runs (orchestrator's
// OnHookRun and OnHookGaveUp).
func (m *nodeMetrics) hookRun(kind, result string) { m.hookRuns.WithLabelValues(kind, result).Inc() }
func (m *nodeMetrics) hookGaveUp(kind string)      { m.hookGaveUps.WithLabelValues(kind).Inc() }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
