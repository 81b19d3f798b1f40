package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	"github.com/raftinel/raftinel/server/sentinel"
)

// Config is everything one node needs. Build it, call Validate (New does
// too), then New.
type Config struct {
	// ID names this node in the Raft configuration; it must be unique.
	ID string
	// DataDir holds the Raft log, stable store and snapshots. Required
	// unless all three stores are injected.
	DataDir string
	// RaftAddr is the address Raft listens on and advertises.
	RaftAddr string
	// GRPCAddr is the address the gRPC API listens on and advertises.
	GRPCAddr string
	// SentinelAddr is the address the Sentinel-protocol endpoint listens
	// on; the node advertises the bound address (so port 0 picks a free
	// port). Empty disables the endpoint.
	SentinelAddr string
	// SentinelPass, when set, is the password Sentinel clients must give
	// with AUTH (or HELLO AUTH) before any other command.
	SentinelPass string
	// SentinelMaxClients bounds the open Sentinel connections; 0 means
	// sentinel.DefaultMaxClients.
	SentinelMaxClients int
	// SentinelSubscriberBuffer bounds the bytes of events queued for one
	// Sentinel subscriber before it is disconnected; 0 means
	// sentinel.DefaultSubscriberBuffer.
	SentinelSubscriberBuffer int
	// SentinelBusyPoll is how long the Sentinel endpoint keeps looking for
	// the next request without sleeping while requests come densely (see
	// sentinel.Config.BusyPoll); 0 means sentinel.DefaultBusyPoll, negative
	// turns it off.
	SentinelBusyPoll time.Duration

	// MetricsAddr is the address Prometheus metrics are served on, at
	// /metrics; the node reports the bound address (port 0 picks a free
	// one). Empty, the default, serves none.
	MetricsAddr string
	// Pprof also serves Go's profiler at /debug/pprof/ on MetricsAddr, for
	// finding where a node spends its CPU; off by default, since profiles
	// show the node's internals to whoever reaches the port.
	Pprof bool

	// TLSCertFile, TLSKeyFile and TLSCAFile (PEM; all three or none) make
	// the node serve TLS on Raft, gRPC and the Sentinel endpoint, and know
	// other nodes by their certificates (URI SAN raftinel://node/ID, which
	// must name this node's ID in its own). Re-read by Reload.
	TLSCertFile, TLSKeyFile, TLSCAFile string
	// RedisTLSCAFile makes every connection to the monitored Redis
	// instances TLS (Sentinel's tls-replication), their certificates
	// checked against this CA (PEM) and against the host they are reached
	// by, or RedisTLSServerName when set. RedisTLSCertFile and
	// RedisTLSKeyFile (both or neither) are the client certificate
	// presented to servers that check clients (tls-auth-clients). Re-read
	// by Reload.
	RedisTLSCAFile, RedisTLSCertFile, RedisTLSKeyFile, RedisTLSServerName string
	// AuthFile holds the API's tokens ("NAME ROLE SECRET" lines); with it
	// every gRPC call needs one, except a node's, which its certificate
	// authenticates. Re-read by Reload. Refused without TLS on an address
	// other than loopback.
	AuthFile string

	// Bootstrap is the initial voter list, the same on every founding node.
	// It is ignored when the node already has Raft state.
	Bootstrap []raft.Server
	// Join is the gRPC address of any member of a running cluster, used
	// when this node has no Raft state and no Bootstrap list.
	Join string

	// Logger receives every log line, Raft's included. Defaults to
	// slog.Default().
	Logger *slog.Logger

	// Injection points for tests and embedding. When nil, a raft-boltdb
	// store, a file snapshot store and a TCP transport are used.
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore
	Transport     raft.Transport
	// GRPCListener, when set, is used instead of listening on GRPCAddr.
	GRPCListener net.Listener
	// Raft's timing; zero keeps hashicorp/raft's defaults (1 s, 1 s and
	// 500 ms). A dead leader is noticed after about one to three heartbeat
	// timeouts (raft checks on a random timer of one to two) and replaced
	// after an election: on a LAN, 500 ms, 500 ms and 250 ms halve the time
	// a failover waits for a new leader.
	RaftHeartbeatTimeout   time.Duration
	RaftElectionTimeout    time.Duration
	RaftLeaderLeaseTimeout time.Duration
	// TuneRaft may adjust Raft's configuration last (tests use short
	// timeouts).
	TuneRaft func(*raft.Config)

	// RequestTimeout bounds a write that arrives without a deadline.
	RequestTimeout time.Duration

	// MaxStreamAge ends a WatchMaster or WatchEvents stream after this long
	// (plus up to a tenth more, at random) with Unavailable, so that
	// long-lived clients spread again over the nodes. Default 10 minutes.
	MaxStreamAge time.Duration

	// MaxStaleness is how long after its last contact with a Raft leader
	// (being the leader counts) the node still names masters to clients:
	// the Sentinel endpoint's discovery commands and the gRPC GetMaster,
	// ListMasters and WatchMaster. Past it, Sentinel discovery closes the
	// connection without a reply and the gRPC reads answer Unavailable
	// (reason NO_LEADER_CONTACT), so clients ask another node. Zero takes
	// the default: DefaultMaxStaleness, or three Raft heartbeat timeouts
	// when that is longer (a healthy follower goes that long without
	// contact while a dead leader is replaced). NoMaxStaleness (negative)
	// always answers from the node's own copy of the state, as Sentinel
	// does.
	MaxStaleness time.Duration

	// PingPeriod is how often this node PINGs each instance whose master
	// sets no ping-period of its own; zero gives each instance its
	// master's down-after/10, within 50 ms and 1 s (probe.PingTiming).
	// Below 10 ms is refused.
	PingPeriod time.Duration

	// AllowScriptReconfig lets SET change a master's notification-script
	// and client-reconfig-script (Sentinel's deny-scripts-reconfig no).
	// Refused by default: setting a script and then forcing a failover
	// would run any program on the leader. A script setting is committed
	// only when every node allows it and has the file, executable.
	AllowScriptReconfig bool
	// Hooks bounds and spaces hook runs: HookTimeout per run (default 60s,
	// Sentinel's script-max-runtime), HookRetryDelay before the first retry
	// (default 1s, doubling up to a minute), HookMaxRetries (default 10).
	HookTimeout    time.Duration
	HookRetryDelay time.Duration
	HookMaxRetries int
	// Restore seeds a new one-node cluster from a snapshot file (read with
	// fsm.ReadSnapshotFile): the node starts with that state at its index
	// and term, as the only voter, and other nodes join it. Refused when
	// the data directory already holds Raft state.
	Restore *fsm.SnapshotFile
	// Recover turns the Raft state in the data directory into a one-node
	// cluster of this node (raft.RecoverCluster), keeping every committed
	// entry, after checking that no old peer reachable over gRPC reports
	// a leader. For a cluster that lost its quorum for good.
	Recover bool

	// Version is this binary's version, advertised in the node's
	// membership record and shown by status.
	Version string

	// SimulateFailure is a test hook, like Sentinel's SIMULATE-FAILURE: with
	// "crash-after-election" the leader exits with status 99 right after it
	// commits the start of a failover, with "crash-after-promotion" right
	// after it commits the promotion. The next leader must finish the job.
	SimulateFailure string
}

// DefaultMaxStreamAge is Config.MaxStreamAge when unset.
const DefaultMaxStreamAge = 10 * time.Minute

// DefaultHookMaxRetries is Config.HookMaxRetries when unset (Sentinel's 10).
var DefaultHookMaxRetries = orchestrator.DefaultHookPolicy.MaxRetries

// Simulated failures accepted by Config.SimulateFailure.
const (
	CrashAfterElection  = orchestrator.CrashAfterElection
	CrashAfterPromotion = orchestrator.CrashAfterPromotion
)

// ParseBootstrap reads "id=host:port,id=host:port" into a voter list.
func ParseBootstrap(s string) ([]raft.Server, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("bootstrap list is empty")
	}
	var out []raft.Server
	seenID := map[string]bool{}
	seenAddr := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("bootstrap entry %q is not id=host:port", part)
		}
		if err := fsm.ValidateName("node", id); err != nil {
			return nil, fmt.Errorf("bootstrap entry %q: %w", part, err)
		}
		if err := fsm.ValidateAddress("raft", addr); err != nil {
			return nil, fmt.Errorf("bootstrap entry %q: %w", part, err)
		}
		if seenID[id] {
			return nil, fmt.Errorf("bootstrap list names node %q twice", id)
		}
		if seenAddr[addr] {
			return nil, fmt.Errorf("bootstrap list names address %s twice", addr)
		}
		seenID[id], seenAddr[addr] = true, true
		out = append(out, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return out, nil
}

// validateListenAddr checks a host:port to listen on; unlike an advertised
// address it may have port 0, which picks a free port.
func validateListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return fmt.Errorf("address %q is not host:port", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("address %q has an invalid port (0 to 65535; 0 picks a free one)", addr)
	}
	return nil
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if err := fsm.ValidateName("node", c.ID); err != nil {
		return fmt.Errorf("--id: %w", err)
	}
	if c.Transport == nil {
		if err := fsm.ValidateAddress("raft", c.RaftAddr); err != nil {
			return fmt.Errorf("--raft-addr: %w", err)
		}
	} else if c.RaftAddr == "" {
		c.RaftAddr = string(c.Transport.LocalAddr())
	}
	if c.GRPCListener != nil {
		c.GRPCAddr = c.GRPCListener.Addr().String()
	}
	if err := fsm.ValidateAddress("gRPC", c.GRPCAddr); err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	if c.SentinelAddr != "" {
		if err := validateListenAddr(c.SentinelAddr); err != nil {
			return fmt.Errorf("--sentinel-addr: %w", err)
		}
	}
	if c.MetricsAddr != "" {
		if err := validateListenAddr(c.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	if c.Pprof && c.MetricsAddr == "" {
		return errors.New("--pprof is set but --metrics-addr is empty: the profiler is served on the metrics address")
	}
	if c.SentinelPass != "" && c.SentinelAddr == "" {
		return errors.New("--sentinel-pass is set but --sentinel-addr is empty: the password protects an endpoint that is disabled")
	}
	if err := c.validateSecurity(); err != nil {
		return err
	}
	if err := c.validateRaftTiming(); err != nil {
		return err
	}
	if c.SentinelMaxClients < 0 {
		return fmt.Errorf("--sentinel-max-clients %d: want 0 (the default, %d) or more", c.SentinelMaxClients, sentinel.DefaultMaxClients)
	}
	if c.SentinelSubscriberBuffer < 0 {
		return fmt.Errorf("--sentinel-subscriber-buffer %d: want 0 (the default, %d bytes) or more", c.SentinelSubscriberBuffer, sentinel.DefaultSubscriberBuffer)
	}
	if c.SentinelBusyPoll > sentinel.MaxBusyPoll {
		return fmt.Errorf("--sentinel-busy-poll %v: want 0 (off) to %v", c.SentinelBusyPoll, sentinel.MaxBusyPoll)
	}
	injected := c.LogStore != nil && c.StableStore != nil && c.SnapshotStore != nil
	if c.DataDir == "" && !injected {
		return errors.New("--data-dir is required")
	}
	if c.Restore != nil && c.Recover {
		return errors.New("--restore and --recover exclude each other: restore seeds a new cluster from a snapshot file, recover restarts one from this node's own data")
	}
	if (c.Restore != nil || c.Recover) && (len(c.Bootstrap) > 0 || c.Join != "") {
		return errors.New("--restore and --recover start a one-node cluster: leave out --bootstrap and --join, and let the other nodes --join it")
	}
	if len(c.Bootstrap) > 0 && c.Join != "" {
		return errors.New("--bootstrap and --join exclude each other: bootstrap founds a cluster, join enters one")
	}
	if len(c.Bootstrap) > 0 {
		found := false
		for _, s := range c.Bootstrap {
			if string(s.ID) == c.ID {
				found = true
				if string(s.Address) != c.RaftAddr {
					return fmt.Errorf("--bootstrap gives node %q the address %s but --raft-addr is %s", c.ID, s.Address, c.RaftAddr)
				}
			}
		}
		if !found {
			return fmt.Errorf("--bootstrap does not list this node's id %q", c.ID)
		}
	}
	if c.Join != "" {
		if err := fsm.ValidateAddress("join", c.Join); err != nil {
			return fmt.Errorf("--join: %w", err)
		}
	}
	switch c.SimulateFailure {
	case "", CrashAfterElection, CrashAfterPromotion:
	default:
		return fmt.Errorf("--simulate-failure %q: want %s or %s", c.SimulateFailure, CrashAfterElection, CrashAfterPromotion)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	switch {
	case c.MaxStreamAge < 0:
		return fmt.Errorf("--max-stream-age %v: must be positive", c.MaxStreamAge)
	case c.MaxStreamAge == 0:
		c.MaxStreamAge = DefaultMaxStreamAge
	}
	if c.MaxStaleness < 0 {
		c.MaxStaleness = NoMaxStaleness
	}
	if c.HookTimeout < 0 || c.HookRetryDelay < 0 || c.HookMaxRetries < 0 {
		return fmt.Errorf("--hook-timeout, --hook-retry-delay and --hook-max-retries must not be negative (0 takes the default)")
	}
	if c.PingPeriod != 0 && (c.PingPeriod < fsm.MinPingPeriod || c.PingPeriod > fsm.MaxDuration) {
		return fmt.Errorf("--ping-period %v: want 0 (down-after/10, within 50ms and 1s) or %v to %v", c.PingPeriod, fsm.MinPingPeriod, fsm.MaxDuration)
	}
	return nil
}

// applyRaftTiming sets the Raft timeouts the config gives on rc.
func (c *Config) applyRaftTiming(rc *raft.Config) {
	for _, t := range c.raftTimeouts(rc) {
		if t.set > 0 {
			*t.to = t.set
		}
	}
}

type raftTimeout struct {
	flag string
	set  time.Duration
	to   *time.Duration
}

func (c *Config) raftTimeouts(rc *raft.Config) []raftTimeout {
	return []raftTimeout{
		{"--raft-heartbeat-timeout", c.RaftHeartbeatTimeout, &rc.HeartbeatTimeout},
		{"--raft-election-timeout", c.RaftElectionTimeout, &rc.ElectionTimeout},
		{"--raft-lease-timeout", c.RaftLeaderLeaseTimeout, &rc.LeaderLeaseTimeout},
	}
}

// validateRaftTiming names the flags where raft.ValidateConfig would name
// its own fields.
func (c *Config) validateRaftTiming() error {
	rc := raft.DefaultConfig()
	for _, t := range c.raftTimeouts(rc) {
		if t.set < 0 || (t.set > 0 && t.set < 5*time.Millisecond) {
			return fmt.Errorf("%s %v: want at least 5ms", t.flag, t.set)
		}
	}
	c.applyRaftTiming(rc)
	if rc.LeaderLeaseTimeout > rc.HeartbeatTimeout {
		return fmt.Errorf("--raft-lease-timeout %v is longer than --raft-heartbeat-timeout %v: a leader must step down before followers elect another",
			rc.LeaderLeaseTimeout, rc.HeartbeatTimeout)
	}
	if rc.ElectionTimeout < rc.HeartbeatTimeout {
		return fmt.Errorf("--raft-election-timeout %v is shorter than --raft-heartbeat-timeout %v: want it at least as long",
			rc.ElectionTimeout, rc.HeartbeatTimeout)
	}
	// hashicorp/raft's leader heartbeats each follower after a random wait
	// of a tenth to a fifth of the heartbeat timeout, and steps down when no
	// majority answered within the lease. A lease under two of the longest
	// waits lapses in a healthy cluster: with a 3 s heartbeat timeout and
	// the 500 ms lease, the leader stepped down every 15 to 20 s, each time
	// leaving the masters without a failover leader for seconds.
	if least := 2 * rc.HeartbeatTimeout / 5; rc.LeaderLeaseTimeout < least {
		return fmt.Errorf("--raft-lease-timeout %v is shorter than 2/5 of --raft-heartbeat-timeout %v (%v): the leader heartbeats every 1/10 to 1/5 of it, so it would lose its lease between heartbeats and step down; half the heartbeat timeout is usual",
			rc.LeaderLeaseTimeout, rc.HeartbeatTimeout, least)
	}
	return nil
}

// tlsOn tells whether TLS files are configured.
func (c *Config) tlsOn() bool {
	return c.TLSCertFile != "" || c.TLSKeyFile != "" || c.TLSCAFile != ""
}

// redisTLSOn tells whether any --redis-tls-* setting is given.
func (c *Config) redisTLSOn() bool {
	return c.RedisTLSCAFile != "" || c.RedisTLSCertFile != "" || c.RedisTLSKeyFile != "" || c.RedisTLSServerName != ""
}

func (c *Config) validateRedisTLS() error {
	switch {
	case !c.redisTLSOn():
		return nil
	case c.RedisTLSCAFile == "":
		return errors.New("--redis-tls-cert, --redis-tls-key and --redis-tls-server-name need --redis-tls-ca: the CA that signed the Redis servers' certificates")
	case c.RedisTLSCertFile != "" && c.RedisTLSKeyFile == "":
		return fmt.Errorf("--redis-tls-cert %s is given without --redis-tls-key: give both (the client certificate and its key) or neither", c.RedisTLSCertFile)
	case c.RedisTLSCertFile == "" && c.RedisTLSKeyFile != "":
		return fmt.Errorf("--redis-tls-key %s is given without --redis-tls-cert: give both (the client certificate and its key) or neither", c.RedisTLSKeyFile)
	}
	return nil
}

func (c *Config) validateSecurity() error {
	if err := c.validateRedisTLS(); err != nil {
		return err
	}
	if c.tlsOn() && (c.TLSCertFile == "" || c.TLSKeyFile == "" || c.TLSCAFile == "") {
		return errors.New("--tls-cert, --tls-key and --tls-ca go together: give all three or none")
	}
	if c.tlsOn() && c.Transport != nil {
		return errors.New("TLS files and an injected Raft transport exclude each other: the node builds its TLS transport itself")
	}
	if c.AuthFile != "" && !c.tlsOn() {
		for _, a := range c.exposedAddrs() {
			if !isLoopback(a.addr) {
				return fmt.Errorf("--auth-file without TLS on %s %s, which is not a loopback address: tokens would travel in plaintext and node calls would go unauthenticated; give --tls-cert, --tls-key and --tls-ca", a.flag, a.addr)
			}
		}
	}
	return nil
}

type namedAddr struct{ flag, addr string }

// exposedAddrs are the addresses the node listens on.
func (c *Config) exposedAddrs() []namedAddr {
	out := []namedAddr{{"--raft-addr", c.RaftAddr}, {"--grpc-addr", c.GRPCAddr}}
	if c.SentinelAddr != "" {
		out = append(out, namedAddr{"--sentinel-addr", c.SentinelAddr})
	}
	return out
}

// isLoopback tells whether host:port names a loopback address.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
