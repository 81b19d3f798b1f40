// Command coordinator runs one Raftinel node. It parses flags (each also
// read from a COORDINATOR_* environment variable), builds the logger and the
// server config, stops the node gracefully on SIGTERM or SIGINT, and
// re-reads its certificates and auth file on SIGHUP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	"github.com/raftinel/raftinel/server"
	"github.com/raftinel/raftinel/server/sentinel"
)

// version is the binary's version, set at link time
// (-ldflags '-X main.version=v1.2.3'); otherwise the VCS revision the
// go command stamped, or "dev".
var version string

func binaryVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			return rev + "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "dev"
}

func readSnapshotFile(path string) (*fsm.SnapshotFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	snap, err := fsm.ReadSnapshotFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return snap, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

type options struct {
	id, dataDir, raftAddr, grpcAddr, sentinelAddr string
	bootstrap, join, logLevel, logFormat          string
	simulateFailure, sentinelPass, maxStreamAge   string
	metricsAddr                                   string
	pprof                                         bool
	raftHeartbeat, raftElection, raftLease        string
	pingPeriod                                    string
	maxStaleness                                  string
	hookTimeout, hookRetryDelay                   string
	allowScriptReconfig                           bool
	hookMaxRetries                                int
	restore                                       string
	recover                                       bool
	tlsCert, tlsKey, tlsCA, authFile              string
	redisTLSCA, redisTLSCert, redisTLSKey         string
	redisTLSServerName                            string
	sentinelMaxClients, sentinelSubscriberBuffer  int
	sentinelBusyPoll                              string
	// bootstrapGiven is set when --bootstrap or its environment variable
	// was given at all, even empty; bootstrapName names the one that was,
	// for error messages.
	bootstrapGiven bool
	bootstrapName  string
}

// envName maps a flag to its environment variable: data-dir -> COORDINATOR_DATA_DIR.
func envName(flagName string) string {
	return "COORDINATOR_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, def, usage string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			def = v
		}
		fs.StringVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, envName(name)))
	}
	var envErr error
	integer := func(p *int, name string, def int, usage string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			n, err := strconv.Atoi(v)
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: not an integer", envName(name), v)
			}
			def = n
		}
		fs.IntVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, envName(name)))
	}
	boolean := func(p *bool, name string, def bool, usage string) {
		if v, ok := os.LookupEnv(envName(name)); ok {
			b, err := strconv.ParseBool(v)
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: want true or false", envName(name), v)
			}
			def = b
		}
		fs.BoolVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, envName(name)))
	}
	str(&o.id, "id", "", "this node's unique id, 1 to 64 of [A-Za-z0-9._-] (required)")
	str(&o.dataDir, "data-dir", "", "directory for the Raft log, stable store and snapshots (required)")
	str(&o.raftAddr, "raft-addr", "127.0.0.1:7000", "host:port Raft listens on and advertises to peers")
	str(&o.grpcAddr, "grpc-addr", "127.0.0.1:7100", "host:port of the gRPC API")
	str(&o.sentinelAddr, "sentinel-addr", "127.0.0.1:26379", "host:port of the Sentinel-protocol endpoint for Sentinel clients (port 0 picks a free one; empty disables it)")
	str(&o.sentinelPass, "sentinel-pass", "", "password Sentinel clients must send with AUTH; empty: no AUTH needed (prefer the environment variable: flags show in ps)")
	str(&o.metricsAddr, "metrics-addr", "", "host:port to serve Prometheus metrics on, at /metrics (port 0 picks a free one; empty, the default, serves none)")
	boolean(&o.pprof, "pprof", false, "also serve Go's profiler at /debug/pprof/ on --metrics-addr (off by default: profiles show the node's internals)")
	integer(&o.sentinelMaxClients, "sentinel-max-clients", sentinel.DefaultMaxClients, "most open Sentinel connections")
	str(&o.sentinelBusyPoll, "sentinel-busy-poll", sentinel.DefaultBusyPoll.String(), "while Sentinel requests come densely (several clients ready at once), how long the endpoint looks for the next one without sleeping: more requests per second for some CPU; at most "+sentinel.MaxBusyPoll.String()+", 0 turns it off")
	integer(&o.sentinelSubscriberBuffer, "sentinel-subscriber-buffer", sentinel.DefaultSubscriberBuffer, "bytes of events queued for one Sentinel subscriber before it is disconnected")
	str(&o.bootstrap, "bootstrap", "", "initial voters as id=raft-host:port,...; the same list on every founding node, ignored once the node has state")
	str(&o.join, "join", "", "gRPC host:port of any member of a running cluster to join")
	str(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	str(&o.logFormat, "log-format", "text", "log format: text or json")
	str(&o.maxStreamAge, "max-stream-age", server.DefaultMaxStreamAge.String(), "WatchMaster and WatchEvents streams end after this long (plus up to 10% at random) with Unavailable, so clients reconnect and spread over the nodes")
	str(&o.raftHeartbeat, "raft-heartbeat-timeout", "1s", "how long a follower goes without hearing from the leader before it calls an election (this sets how soon a dead leader is replaced: after about 1 to 3 times it, plus the election)")
	str(&o.raftElection, "raft-election-timeout", "1s", "how long a candidate waits for an election to be won before it tries again")
	str(&o.raftLease, "raft-lease-timeout", "500ms", "how long a leader keeps leading without hearing from a majority; at most --raft-heartbeat-timeout and at least 2/5 of it (the leader heartbeats every 1/10 to 1/5 of it)")
	str(&o.maxStaleness, "max-staleness", "auto", "how long after its last contact with a Raft leader this node still names masters to clients; past it, Sentinel discovery (get-master-addr-by-name, MASTERS, MASTER, REPLICAS, SENTINELS, SUBSCRIBE) closes the connection and gRPC GetMaster, ListMasters and WatchMaster answer Unavailable, so clients ask another node; auto: 2s, or 3 times --raft-heartbeat-timeout when longer (3s with the default timing); 0: always answer from this node's copy, as Sentinel does")
	str(&o.pingPeriod, "ping-period", "0", "how often this node PINGs each instance of a master that sets no ping-period of its own; 0: the master's down-after/10, within 50ms and 1s")
	boolean(&o.allowScriptReconfig, "allow-script-reconfig", false, "true lets SET change a master's notification-script and client-reconfig-script (Sentinel's deny-scripts-reconfig no); a script is set only when every node allows it and can execute the file")
	str(&o.hookTimeout, "hook-timeout", "60s", "longest run of one hook (a script is killed, a webhook POST abandoned) before it is retried")
	str(&o.hookRetryDelay, "hook-retry-delay", "1s", "wait before the first retry of a failed hook run; it doubles with each retry, up to a minute")
	integer(&o.hookMaxRetries, "hook-max-retries", server.DefaultHookMaxRetries, "retries of a failed hook run before the hook gives up on the event (-script-error, -webhook-error)")
	str(&o.restore, "restore", "", "seed a NEW one-node cluster from this snapshot file (coordinatorctl snapshot save); refused when --data-dir holds state; other nodes then --join")
	boolean(&o.recover, "recover", false, "after losing quorum for good: make this node's data directory a one-node cluster keeping every committed entry; refused while an old member reachable over gRPC reports a leader; run it once, then other nodes --join")
	str(&o.tlsCert, "tls-cert", "", "this node's certificate (PEM), with the URI SAN raftinel://node/ID; with --tls-key and --tls-ca, Raft, gRPC and the Sentinel endpoint serve TLS (re-read on SIGHUP)")
	str(&o.tlsKey, "tls-key", "", "the key of --tls-cert (PEM)")
	str(&o.tlsCA, "tls-ca", "", "the CA (PEM) every node's certificate, and any client certificate, must be signed by")
	str(&o.redisTLSCA, "redis-tls-ca", "", "the CA (PEM) of the monitored Redis servers' certificates; when set, every connection to Redis (probes and failover commands) uses TLS, as Sentinel's tls-replication and tls-ca-cert-file (re-read on SIGHUP)")
	str(&o.redisTLSCert, "redis-tls-cert", "", "client certificate (PEM) presented to Redis servers that check clients (tls-auth-clients), as Sentinel's tls-cert-file; with --redis-tls-key (re-read on SIGHUP)")
	str(&o.redisTLSKey, "redis-tls-key", "", "the key of --redis-tls-cert (PEM), as Sentinel's tls-key-file")
	str(&o.redisTLSServerName, "redis-tls-server-name", "", "the name every Redis server's certificate must carry (and the SNI sent); empty: the host each instance is monitored by (a name, or an IP matched against IP SANs)")
	str(&o.authFile, "auth-file", "", "API tokens, one a line: NAME ROLE SECRET (ROLE read, operate or admin; SECRET may be sha256:HEX; # starts a comment); with it every gRPC call needs 'authorization: Bearer SECRET' (re-read on SIGHUP)")
	str(&o.simulateFailure, "simulate-failure", "", "test hook: crash-after-election or crash-after-promotion makes a leader exit with status 99 at that failover step")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: coordinator --id ID --data-dir DIR [--bootstrap LIST | --join ADDR] [flags]\n\n")
		fmt.Fprintf(stderr, "Runs one Raftinel node. Every flag can also be set by its environment variable.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if envErr != nil {
		fmt.Fprintf(stderr, "coordinator: %v\n", envErr)
		return nil, envErr
	}
	// The flag package would print its error and then the whole usage
	// text; a mistake gets one line naming it instead, and --help the usage.
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q: every setting is a flag", fs.Arg(0))
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stderr)
		usage()
		return nil, err
	case err != nil:
		fmt.Fprintf(stderr, "coordinator: %v (coordinator --help lists the flags)\n", err)
		return nil, err
	}
	if _, ok := os.LookupEnv(envName("bootstrap")); ok {
		o.bootstrapGiven, o.bootstrapName = true, "--bootstrap (from "+envName("bootstrap")+")"
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "bootstrap" {
			o.bootstrapGiven, o.bootstrapName = true, "--bootstrap"
		}
	})
	return o, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func run(args []string, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "coordinator: %v\n", err)
		return 1
	}
	logger, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return fail(err)
	}
	// go-redis logs failed dials to stderr on its own; route them through
	// the node's logger at debug level instead.
	probe.RouteGoRedisLog(logger)
	cfg := server.Config{
		ID: o.id, DataDir: o.dataDir, RaftAddr: o.raftAddr, GRPCAddr: o.grpcAddr,
		Join: o.join, Logger: logger, SimulateFailure: o.simulateFailure,
		SentinelAddr: o.sentinelAddr, SentinelPass: o.sentinelPass,
		SentinelMaxClients: o.sentinelMaxClients, SentinelSubscriberBuffer: o.sentinelSubscriberBuffer,
		MetricsAddr: o.metricsAddr, Version: binaryVersion(), Pprof: o.pprof,
		TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey, TLSCAFile: o.tlsCA, AuthFile: o.authFile,
		RedisTLSCAFile: o.redisTLSCA, RedisTLSCertFile: o.redisTLSCert, RedisTLSKeyFile: o.redisTLSKey,
		RedisTLSServerName: o.redisTLSServerName,
	}
	if cfg.MaxStreamAge, err = time.ParseDuration(o.maxStreamAge); err != nil || cfg.MaxStreamAge <= 0 {
		return fail(fmt.Errorf("--max-stream-age %q: want a positive duration such as 10m", o.maxStreamAge))
	}
	cfg.AllowScriptReconfig = o.allowScriptReconfig
	if cfg.HookTimeout, err = time.ParseDuration(o.hookTimeout); err != nil || cfg.HookTimeout <= 0 {
		return fail(fmt.Errorf("--hook-timeout %q: want a positive duration such as 60s", o.hookTimeout))
	}
	if cfg.HookRetryDelay, err = time.ParseDuration(o.hookRetryDelay); err != nil || cfg.HookRetryDelay <= 0 {
		return fail(fmt.Errorf("--hook-retry-delay %q: want a positive duration such as 1s", o.hookRetryDelay))
	}
	if o.hookMaxRetries < 1 {
		return fail(fmt.Errorf("--hook-max-retries %d: want 1 or more", o.hookMaxRetries))
	}
	cfg.HookMaxRetries = o.hookMaxRetries
	if o.maxStaleness != "auto" {
		switch d, perr := time.ParseDuration(o.maxStaleness); {
		case perr != nil || d < 0:
			return fail(fmt.Errorf("--max-staleness %q: want auto, 0 (always answer) or a duration such as 2s", o.maxStaleness))
		case d == 0:
			cfg.MaxStaleness = server.NoMaxStaleness
		default:
			cfg.MaxStaleness = d
		}
	}
	switch d, perr := time.ParseDuration(o.sentinelBusyPoll); {
	case perr != nil || d < 0 || d > sentinel.MaxBusyPoll:
		return fail(fmt.Errorf("--sentinel-busy-poll %q: want 0 (off) to %v, such as 50us", o.sentinelBusyPoll, sentinel.MaxBusyPoll))
	case d == 0:
		cfg.SentinelBusyPoll = -1
	default:
		cfg.SentinelBusyPoll = d
	}
	if o.pingPeriod != "0" {
		if cfg.PingPeriod, err = time.ParseDuration(o.pingPeriod); err != nil || cfg.PingPeriod < 0 {
			return fail(fmt.Errorf("--ping-period %q: want 0 (automatic) or a duration such as 100ms", o.pingPeriod))
		}
	}
	for _, d := range []struct {
		flag, value string
		into        *time.Duration
	}{
		{"--raft-heartbeat-timeout", o.raftHeartbeat, &cfg.RaftHeartbeatTimeout},
		{"--raft-election-timeout", o.raftElection, &cfg.RaftElectionTimeout},
		{"--raft-lease-timeout", o.raftLease, &cfg.RaftLeaderLeaseTimeout},
	} {
		if *d.into, err = time.ParseDuration(d.value); err != nil || *d.into <= 0 {
			return fail(fmt.Errorf("%s %q: want a positive duration such as 500ms", d.flag, d.value))
		}
	}
	if o.bootstrapGiven {
		// Given but empty is a mistake, not a way to say "no bootstrap":
		// taken that way, the node would start and wait to be added.
		if strings.TrimSpace(o.bootstrap) == "" {
			return fail(fmt.Errorf("%s is empty: want id=host:port,... naming the founding voters, or leave it unset", o.bootstrapName))
		}
		if cfg.Bootstrap, err = server.ParseBootstrap(o.bootstrap); err != nil {
			return fail(fmt.Errorf("--bootstrap: %w", err))
		}
	}
	cfg.Recover = o.recover
	if o.restore != "" {
		if cfg.Restore, err = readSnapshotFile(o.restore); err != nil {
			return fail(fmt.Errorf("--restore: %w", err))
		}
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := server.New(cfg)
	if err != nil {
		return fail(err)
	}
	// SIGHUP re-reads the certificates (the node's and the Redis ones)
	// and the auth file.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-hup:
			_ = srv.Reload() // logs what failed; what is in use is kept
		case <-ctx.Done():
			break wait
		}
	}
	stop()
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fail(fmt.Errorf("shutdown: %w", err))
	}
	return 0
}
