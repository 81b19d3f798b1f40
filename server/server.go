package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/raftinel/raftinel/fsm"
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/security"
	"github.com/raftinel/raftinel/server/sentinel"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// Server is one running node.
type Server struct {
	cfg    Config
	log    *slog.Logger
	fsm    *fsm.FSM
	raft   *raft.Raft
	grpc   *grpc.Server
	lis    net.Listener
	closer []func() error // stores and transport, closed after raft

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc
	wg     sync.WaitGroup

	monitor *monitor
	actions *actions
	watch   *watchHub
	// hookRunner runs the masters' hooks while this node leads.
	hookRunner *hookRunner
	health     *health.Server

	// sentinelLis is bound in New before anything else starts, so a taken
	// port fails the start cleanly; sentinel serves on it (nil when the
	// endpoint is disabled).
	sentinelLis net.Listener
	sentinel    *sentinel.Server

	// staleness decides whether the node may name masters to clients, by
	// its last contact with a Raft leader.
	staleness *staleness
	raftLease time.Duration // Raft's LeaderLeaseTimeout in force
	restarted bool          // the node started with Raft state of its own

	// metrics is this node's registry; metricsLis is bound in New like
	// sentinelLis, and metricsHTTP serves /metrics on it (both nil when
	// metrics are off).
	metrics     *nodeMetrics
	metricsLis  net.Listener
	metricsHTTP *http.Server
	// local carries this node's own events (+tilt, -tilt) to its front
	// ends; they are not committed.
	local *localEvents
	// snapshots is raft's snapshot store, read for the snapshot size.
	snapshots raft.SnapshotStore

	// tls is the node's TLS material (nil: plaintext); auth the tokens of
	// the auth file (nil: none required).
	tls  *security.TLS
	auth *security.AuthFile
	// redisTLS, when set, is the TLS every connection to Redis uses.
	redisTLS *security.RedisTLS

	connsMu sync.Mutex
	conns   map[string]*grpc.ClientConn // by gRPC address, for forwarding and status

	// nudges asks for a barrier after a commit (runCommitNudges).
	nudges chan struct{}
	// leadershipChanged wakes the staleness watch when this node gains or
	// loses leadership.
	leadershipChanged chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error
}

// New opens the stores, starts Raft and serves gRPC. Call Shutdown to stop.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("node", cfg.ID), fsm: fsm.New(), conns: map[string]*grpc.ClientConn{}, local: newLocalEvents(),
		nudges: make(chan struct{}, 1), leadershipChanged: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			s.cancel()
			s.closeAll()
		}
	}()

	if err := s.loadSecurity(); err != nil {
		return nil, err
	}
	if cfg.SentinelAddr != "" {
		lis, err := net.Listen("tcp", cfg.SentinelAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on Sentinel address: %w", err)
		}
		// Advertise what was bound: with port 0 the kernel chose it.
		s.cfg.SentinelAddr = lis.Addr().String()
		if s.tls != nil {
			lis = tls.NewListener(lis, s.tls.ServerConfig())
		}
		s.sentinelLis = lis
	}
	if err := s.listenMetrics(); err != nil {
		return nil, fmt.Errorf("listen on metrics address: %w", err)
	}
	s.metrics = newNodeMetrics(s)
	if err := s.openRaft(); err != nil {
		return nil, err
	}
	s.watchLeaderChanges()
	s.staleness = newStaleness(s.raft, s.cfg.MaxStaleness, s.raftLease)
	if s.restarted {
		// Its state may be old: catch up with the leader first.
		s.staleness.caughtUp = false
	}
	lis := cfg.GRPCListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, fmt.Errorf("listen on gRPC address: %w", err)
		}
	}
	s.lis = lis
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.authUnary, errorInterceptor, s.forwardInterceptor),
		grpc.ChainStreamInterceptor(s.authStream),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls.ServerConfig())))
	}
	s.grpc = grpc.NewServer(opts...)
	s.startWatchHub()
	coordinatorv1.RegisterCoordinatorServiceServer(s.grpc, &api{s: s})
	clusterv1.RegisterClusterServiceServer(s.grpc, &clusterAPI{s: s})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, healthService{Server: s.health, stop: s.ctx})
	reflection.Register(s.grpc)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(lis); err != nil {
			s.log.Error("gRPC server stopped", "err", err)
		}
	}()
	s.actions = newActions("raftinel-"+cfg.ID, s.redisTLSConfig())
	s.hookRunner = newHookRunner(cfg.ID)
	monitor, err := newMonitor(s)
	if err != nil {
		return nil, err
	}
	s.monitor = monitor
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.monitor.run(s.ctx)
	}()
	s.wg.Go(s.monitorLeadership)
	s.wg.Go(s.runCommitNudges)
	if s.sentinelLis != nil {
		if err := s.startSentinel(s.sentinelLis); err != nil {
			return nil, err
		}
	}
	if s.cfg.MaxStaleness > 0 {
		s.wg.Go(s.watchStaleness)
	}
	s.wg.Add(1)
	go s.registerSelf()
	if cfg.Join != "" {
		s.wg.Add(1)
		go s.joinCluster()
	}
	s.serveMetrics()
	ok = true
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(coordinatorv1.CoordinatorService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.log.Info("node started", "raft_addr", cfg.RaftAddr, "grpc_addr", cfg.GRPCAddr, "sentinel_addr", s.cfg.SentinelAddr,
		"metrics_addr", s.cfg.MetricsAddr, "data_dir", cfg.DataDir)
	return s, nil
}

// logCacheEntries is how many of the newest Raft entries are kept in
// memory (raft.NewLogCache): enough for the followers' replication and a
// burst of failovers.
const logCacheEntries = 512

func (s *Server) openRaft() error {
	cfg := s.cfg
	hlog := newHclog(s.log, "raft")
	logs, stable, snaps, trans := cfg.LogStore, cfg.StableStore, cfg.SnapshotStore, cfg.Transport
	if cfg.DataDir != "" {
		// Owner only: the log and raft's snapshot files hold every
		// master's auth-pass, and raft writes its snapshot files with the
		// umask's mode.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
	}
	if logs == nil || stable == nil {
		path := filepath.Join(cfg.DataDir, "raft.db")
		store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: time.Second}})
		if errors.Is(err, bbolt.ErrTimeout) {
			return fmt.Errorf("data dir %s is in use by another running node", cfg.DataDir)
		}
		if err != nil {
			return fmt.Errorf("open raft store: %w", err)
		}
		s.closer = append(s.closer, store.Close)
		if logs == nil {
			logs = store
		}
		if stable == nil {
			stable = store
		}
	}
	if snaps == nil {
		fss, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
		if err != nil {
			return fmt.Errorf("open snapshot store: %w", err)
		}
		snaps = fss
	}
	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	if cfg.Recover {
		// Before the Raft port is bound: the old leader, if there is one,
		// keeps sending to it.
		if !existing {
			return fmt.Errorf("--recover needs the data directory of a node of the old cluster, but %s holds no Raft state", cfg.DataDir)
		}
		if err := s.checkOldClusterGone(logs, snaps); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
	}
	if trans == nil && s.tls != nil {
		layer, err := security.NewRaftLayer(cfg.RaftAddr, nil, s.tls, func(remote net.Addr, err error) {
			s.log.Warn("raft connection refused at the TLS handshake", "remote", remote.String(), "err", err)
		})
		if err != nil {
			return fmt.Errorf("listen on raft address: %w", err)
		}
		nt := raft.NewNetworkTransportWithLogger(layer, 3, 10*time.Second, hlog)
		s.closer = append(s.closer, nt.Close)
		trans = nt
	}
	if trans == nil {
		addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("resolve raft address: %w", err)
		}
		tcp, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, addr, 3, 10*time.Second, hlog)
		if err != nil {
			return fmt.Errorf("listen on raft address: %w", err)
		}
		s.closer = append(s.closer, tcp.Close)
		trans = tcp
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.CommitTimeout = commitTimeout
	cfg.applyRaftTiming(rc)
	if cfg.TuneRaft != nil {
		cfg.TuneRaft(rc)
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}
	s.raftLease = rc.LeaderLeaseTimeout
	if s.cfg.MaxStaleness == 0 {
		s.cfg.MaxStaleness = defaultMaxStaleness(rc.HeartbeatTimeout)
	}
	// The entries already in the log are replayed: the failovers they end
	// were counted by the process that first applied them.
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("read raft log: %w", err)
	}
	s.fsm.CountEndsAfter(last)
	s.snapshots = snaps
	switch {
	case cfg.Restore != nil:
		if existing {
			return fmt.Errorf("--restore seeds a new cluster, but the data directory %s already holds Raft state: use an empty directory", cfg.DataDir)
		}
		if err := seedFromSnapshot(cfg.Restore, self(cfg), stable, snaps, trans); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		s.log.Warn("restored from a snapshot file: this node is a new one-node cluster; add the others with --join",
			"index", cfg.Restore.Header.Index, "term", cfg.Restore.Header.Term, "masters", len(cfg.Restore.State.GetMasters()))
	case cfg.Recover:
		if err := raft.RecoverCluster(rc, fsm.New(), logs, stable, snaps, trans, self(cfg)); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		s.log.Warn("recovered: this node is now a one-node cluster holding every committed entry; add new nodes with --join, and remove --recover from its command line")
	}
	if !existing && len(cfg.Bootstrap) > 0 {
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, raft.Configuration{Servers: cfg.Bootstrap}); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	if !existing && len(cfg.Bootstrap) == 0 && cfg.Join == "" {
		s.log.Warn("no raft state, no --bootstrap and no --join: this node waits until a member adds it")
	}
	// The leader sends each follower an AppendEntries every CommitTimeout
	// even when idle, reading the entry before the next one each time: the
	// cache answers from memory what was a read of the bolt file, 20 times
	// a second per follower.
	cached, err := raft.NewLogCache(logCacheEntries, logs)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	r, err := raft.NewRaft(rc, s.fsm, cached, stable, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.raft = r
	s.restarted = existing
	return nil
}

// FSM gives read access to the replicated state (for embedding and tests).
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Raft exposes the Raft instance (for embedding and tests).
func (s *Server) Raft() *raft.Raft { return s.raft }

// ID is this node's id.
func (s *Server) ID() string { return s.cfg.ID }

// GRPCAddr is the address the gRPC API is served on.
func (s *Server) GRPCAddr() string { return s.lis.Addr().String() }

// SentinelAddr is the address the Sentinel protocol is served on, or ""
// when the endpoint is disabled.
func (s *Server) SentinelAddr() string { return s.cfg.SentinelAddr }

// IsLeader tells whether this node is the Raft leader now.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// Shutdown stops the node. A leader first hands leadership to another voter
// so the cluster does not wait for an election timeout.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		if s.IsLeader() && s.otherVoters() > 0 {
			done := make(chan error, 1)
			go func() { done <- s.raft.LeadershipTransfer().Error() }()
			select {
			case err := <-done:
				if err != nil {
					s.log.Warn("leadership transfer before shutdown failed", "err", err)
				}
			case <-ctx.Done():
			}
		}
		s.closeMetrics()
		if s.sentinel != nil {
			// First, so its event relays and writes end before the node does.
			if err := s.sentinel.Close(); err != nil {
				s.log.Warn("closing the Sentinel endpoint", "err", err)
			}
		}
		s.health.Shutdown() // NOT_SERVING for every service, so balancers move on
		s.cancel()
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.grpc.Stop()
		}
		s.shutdownErr = s.raft.Shutdown().Error()
		s.wg.Wait()
		s.closeAll()
		s.log.Info("node stopped")
	})
	return s.shutdownErr
}

func (s *Server) closeAll() {
	s.closeMetrics()
	if s.sentinel != nil {
		_ = s.sentinel.Close() // also closes sentinelLis
	} else if s.sentinelLis != nil {
		_ = s.sentinelLis.Close()
	}
	if s.actions != nil {
		s.actions.close()
	}
	s.connsMu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = map[string]*grpc.ClientConn{}
	s.connsMu.Unlock()
	if s.lis != nil && s.grpc == nil {
		_ = s.lis.Close()
	}
	for i := len(s.closer) - 1; i >= 0; i-- {
		if err := s.closer[i](); err != nil {
			s.log.Warn("close", "err", err)
		}
	}
	s.closer = nil
}

func (s *Server) otherVoters() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != s.cfg.ID {
			n++
		}
	}
	return n
}

// conn returns a cached client connection to another node's gRPC address.
func (s *Server) conn(addr string) (*grpc.ClientConn, error) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	creds := insecure.NewCredentials()
	if s.tls != nil {
		creds = credentials.NewTLS(s.tls.NodeClientConfig())
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}

// apply commits a command through Raft on this node, which must be the
// leader, and waits for it to be applied or for ctx to end.
//
// A kind of entry newer than log format 1 is refused (fsm.Error with reason
// LOG_FORMAT_TOO_OLD) until every voter advertises a format that includes
// it, so no node meets an entry its binary cannot decode.
func (s *Server) apply(ctx context.Context, cmd *fsmv1.Command) (uint64, error) {
	return s.applyInOrder(ctx, cmd)
}

// applyInOrder is apply for several commands, proposed one after the
// other without waiting for each to commit: they enter the log in this
// order (other proposals may come between them) and are committed
// together, one commit's wait for all. It returns the index of the last,
// or the error of the first that failed or was rejected; those after it
// were proposed and are applied (or rejected) all the same.
func (s *Server) applyInOrder(ctx context.Context, cmds ...*fsmv1.Command) (uint64, error) {
	data := make([][]byte, len(cmds))
	for i, cmd := range cmds {
		if fsm.FormatOf(cmd) > fsm.Format1 {
			if err := fsm.CheckFormat(cmd, s.voters()); err != nil {
				return 0, err
			}
		}
		cmd.ProposedAtUnixNanos = time.Now().UnixNano()
		s.stampActor(ctx, cmd)
		var err error
		if data[i], err = fsm.Encode(cmd); err != nil {
			return 0, fmt.Errorf("encode command: %w", err)
		}
	}
	timeout := s.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return 0, context.DeadlineExceeded
	}
	start := time.Now()
	futures := make([]raft.ApplyFuture, len(data))
	for i, d := range data {
		futures[i] = s.raft.Apply(d, timeout)
	}
	last := futures[len(futures)-1]
	done := make(chan error, 1)
	go func() { done <- last.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return 0, err
		}
		s.metrics.commit.Observe(time.Since(start).Seconds())
		s.nudgeFollowers()
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(timeout):
		return 0, errNoQuorum
	}
	// Raft applies in log order, so the earlier futures are done too.
	var index uint64
	for _, f := range futures {
		if err := f.Error(); err != nil {
			return 0, err
		}
		res, ok := f.Response().(*fsm.Result)
		if !ok {
			return 0, fmt.Errorf("unexpected apply response %T", f.Response())
		}
		if res.Err != nil {
			return res.Index, res.Err
		}
		index = res.Index
	}
	return index, nil
}

var errNoQuorum = errors.New("the cluster did not commit the write in time: no quorum of voters is reachable")

// registerSelf keeps trying until the FSM holds this node's current
// addresses, so peers can find its gRPC and Sentinel endpoints.
func (s *Server) registerSelf() {
	defer s.wg.Done()
	want := &fsmv1.Node{Id: s.cfg.ID, RaftAddress: s.cfg.RaftAddr, GrpcAddress: s.GRPCAddr(), SentinelAddress: s.cfg.SentinelAddr,
		LogFormat: fsm.LogFormat(), Version: s.cfg.Version}
	delay := 200 * time.Millisecond
	for {
		// The log format too: after an upgrade the record must advertise
		// the new one (a leader still on an older binary drops the field,
		// so this retries until an upgraded leader records it).
		if n, ok := s.fsm.Node(s.cfg.ID); ok && n.RaftAddress == want.RaftAddress &&
			n.GrpcAddress == want.GrpcAddress && n.SentinelAddress == want.SentinelAddress &&
			n.LogFormat == want.LogFormat && n.Version == want.Version {
			return
		}
		if s.inConfiguration() {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			_, err := onLeader(s, ctx, coordinatorv1.CoordinatorService_Join_FullMethodName, &coordinatorv1.JoinRequest{
				Id: want.Id, RaftAddress: want.RaftAddress, GrpcAddress: want.GrpcAddress, SentinelAddress: want.SentinelAddress,
				LogFormat: want.LogFormat, Version: want.Version,
			}, (&api{s: s}).Join)
			cancel()
			if err != nil {
				s.log.Debug("registering this node's addresses", "err", err)
			}
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// voters are the voters of the Raft configuration with their membership
// records, for the log format gate. A configuration that cannot be read
// gives none, and then only this binary's own format limits what is
// written; raft refuses the write anyway when this node does not lead.
func (s *Server) voters() []fsm.Voter {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []fsm.Voter
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		v := fsm.Voter{ID: string(srv.ID)}
		if n, ok := s.fsm.Node(v.ID); ok {
			v.Node = n
		}
		out = append(out, v)
	}
	return out
}

// FeatureEnabled tells leader-internal code whether every voter
// understands a kind of entry now: a feature whose entries are refused
// stays off (and should say so in its log) rather than fail its writes.
func (s *Server) FeatureEnabled(cmd *fsmv1.Command) error {
	return fsm.CheckFormat(cmd, s.voters())
}

func (s *Server) inConfiguration() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == s.cfg.ID {
			return true
		}
	}
	return false
}

// joinCluster asks a member to add this node, retrying until it is in the
// configuration (a restarted node is already there and skips the call).
func (s *Server) joinCluster() {
	defer s.wg.Done()
	delay := 200 * time.Millisecond
	for !s.inConfiguration() {
		conn, err := s.conn(s.cfg.Join)
		if err == nil {
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			_, err = coordinatorv1.NewCoordinatorServiceClient(conn).Join(ctx, &coordinatorv1.JoinRequest{
				Id: s.cfg.ID, RaftAddress: s.cfg.RaftAddr, GrpcAddress: s.GRPCAddr(), SentinelAddress: s.cfg.SentinelAddr,
				LogFormat: fsm.LogFormat(), Version: s.cfg.Version,
			})
			cancel()
		}
		if err == nil {
			s.log.Info("joined the cluster", "through", s.cfg.Join)
			return
		}
		s.log.Warn("joining the cluster", "through", s.cfg.Join, "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
