package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	"github.com/raftinel/raftinel/probe"
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// actions keeps one command connection per instance for what the leader
// sends to Redis (promotions, REPLICAOF), apart from the probe's
// connections so a slow action never delays a PING.
type actions struct {
	name  string
	tls   func(host string) *tls.Config // nil: plaintext
	mu    sync.Mutex
	conns map[string]*actionConn
}

type actionConn struct {
	auth probe.Auth
	conn *probe.Conn
}

func newActions(clientName string, tlsConfig func(host string) *tls.Config) *actions {
	return &actions{name: clientName, tls: tlsConfig, conns: map[string]*actionConn{}}
}

var _ orchestrator.Redis = (*actions)(nil)

// Instance returns the command connection to addr, opening it (again, when
// the credentials changed) as needed.
func (a *actions) Instance(addr string, auth probe.Auth) (orchestrator.Instance, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.conns[addr]; ok && c.auth == auth {
		return c.conn, nil
	} else if ok {
		_ = c.conn.Close()
	}
	c, err := probe.NewConn(probe.ConnConfig{Addr: addr, Auth: auth, ClientName: a.name, TLS: a.tls})
	if err != nil {
		return nil, err
	}
	a.conns[addr] = &actionConn{auth: auth, conn: c}
	return c, nil
}

func (a *actions) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.conns {
		_ = c.conn.Close()
	}
	a.conns = map[string]*actionConn{}
}

// simulateFailure ends the process when the configured test hook matches.
func (s *Server) simulateFailure(point string) {
	if s.cfg.SimulateFailure == point {
		s.log.Warn("simulated failure: exiting", "point", point)
		os.Exit(99)
	}
}

// propose commits a node's own observation (a vote) through
// ClusterService.Propose on the leader.
func (s *Server) propose(ctx context.Context, cmd *fsmv1.Command) error {
	_, err := onLeader(s, ctx, clusterv1.ClusterService_Propose_FullMethodName, &clusterv1.ProposeRequest{Command: cmd}, (&clusterAPI{s: s}).Propose)
	return err
}

// clusterAPI is the node-to-node service. Propose is a write: it reaches it
// on the leader only (leaderCall sees to that).
type clusterAPI struct {
	clusterv1.UnimplementedClusterServiceServer
	s *Server
}

func (c *clusterAPI) Propose(ctx context.Context, req *clusterv1.ProposeRequest) (*clusterv1.ProposeResponse, error) {
	if _, ok := req.GetCommand().GetKind().(*fsmv1.Command_ReportVote); !ok {
		return nil, &fsm.Error{Kind: fsm.Invalid, Msg: fmt.Sprintf("nodes may only propose votes, not %T", req.GetCommand().GetKind())}
	}
	idx, err := c.s.apply(ctx, req.GetCommand())
	if err != nil {
		return nil, err
	}
	return &clusterv1.ProposeResponse{Index: idx}, nil
}
