package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"sync"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Config tunes a Client. The zero value of every field but Addrs is a
// sensible default.
type Config struct {
	// Addrs are gRPC host:port of cluster nodes; at least one. The other
	// members' addresses are learned from the first node that answers.
	Addrs []string
	// DialOptions replace the default (plaintext) options, for TLS for
	// example.
	DialOptions []grpc.DialOption
	// CallTimeout bounds one call, retries included, when its context has
	// no deadline. Default 10 s.
	CallTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause between two rounds over the
	// nodes. Defaults 50 ms and 2 s.
	MinBackoff, MaxBackoff time.Duration
}

// Client talks to a Raftinel cluster. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu        sync.Mutex
	addrs     []string // known nodes, the configured ones first
	conns     map[string]*grpc.ClientConn
	preferred string // the node that answered last
	leader    string // gRPC address from the last "not leader" hint
	closed    bool
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("raftinel client is closed")

// New connects to a cluster through any of addrs: it returns once one node
// has answered (and told the other members' addresses), or ctx ends.
func New(ctx context.Context, addrs ...string) (*Client, error) {
	return NewWithConfig(ctx, Config{Addrs: addrs})
}

// NewWithConfig is New with settings.
func NewWithConfig(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("raftinel client: no node address given")
	}
	for _, a := range cfg.Addrs {
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("raftinel client: node address %q is not host:port", a)
		}
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(2*time.Second, cfg.MinBackoff)
	}
	c := &Client{cfg: cfg, addrs: slices.Clone(cfg.Addrs), conns: map[string]*grpc.ClientConn{}}
	var members *coordinatorv1.ListMembersResponse
	err := c.call(ctx, false, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
		members, err = api.ListMembers(ctx, &coordinatorv1.ListMembersRequest{})
		return err
	})
	if err != nil {
		c.Close()
		st := status.Convert(err)
		return nil, status.Errorf(st.Code(), "raftinel client: no node answered: %s", st.Message())
	}
	for _, m := range members.GetMembers() {
		c.learn(m.GetGrpcAddress())
	}
	return c, nil
}

// Close releases the connections. Watchers of this client end.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	c.conns = map[string]*grpc.ClientConn{}
}

// learn adds a node address found in the cluster's answers.
func (c *Client) learn(addr string) {
	if addr == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.addrs, addr) {
		c.addrs = append(c.addrs, addr)
	}
}

// order lists the nodes to try: the leader hint first for a write, then the
// node that answered last, then the rest in their order.
func (c *Client) order(write bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	if write && c.leader != "" {
		out = append(out, c.leader)
	}
	if c.preferred != "" && !slices.Contains(out, c.preferred) {
		out = append(out, c.preferred)
	}
	for _, a := range c.addrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

func (c *Client) answered(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.preferred = addr
}

// leaderHint matches the server's "not leader; the leader is n1 at
// host:port".
var leaderHint = regexp.MustCompile(`the leader is \S+ at (\S+:\d+)`)

func (c *Client) noteLeaderHint(err error) {
	m := leaderHint.FindStringSubmatch(status.Convert(err).Message())
	if m == nil {
		return
	}
	c.learn(m[1])
	c.mu.Lock()
	c.leader = m[1]
	c.mu.Unlock()
}

// retryable tells a failure worth another node or another try from an
// answer. Unavailable is a node down, a node without a leader, or a stream
// the node ended so the client moves on; ResourceExhausted and Aborted are
// transient too.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// backoff is a doubling pause with full jitter.
type backoff struct {
	min, max, next time.Duration
}

func (c *Client) newBackoff() *backoff {
	return &backoff{min: c.cfg.MinBackoff, max: c.cfg.MaxBackoff, next: c.cfg.MinBackoff}
}

func (b *backoff) reset() { b.next = b.min }

// wait sleeps for the next pause, or until ctx ends.
func (b *backoff) wait(ctx context.Context) error {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(2*b.next, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call runs fn on the nodes in turn until one answers something other than
// a retryable failure, pausing with backoff after each round, until ctx
// (or CallTimeout when ctx has no deadline) ends, which gives a
// DeadlineExceeded (or Canceled) status error. A write goes first to the
// leader the cluster last named; any node would forward it.
func (c *Client) call(ctx context.Context, write bool, fn func(context.Context, coordinatorv1.CoordinatorServiceClient) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
	}
	b := c.newBackoff()
	last := ""
	for {
		for _, addr := range c.order(write) {
			cc, err := c.conn(addr)
			if err != nil {
				return err
			}
			err = fn(ctx, coordinatorv1.NewCoordinatorServiceClient(cc))
			if err == nil {
				c.answered(addr)
				return nil
			}
			if ctx.Err() != nil {
				return gaveUp(ctx, failure(addr, err))
			}
			if !retryable(err) {
				return err
			}
			c.noteLeaderHint(err)
			last = failure(addr, err)
		}
		if b.wait(ctx) != nil {
			return gaveUp(ctx, last)
		}
	}
}

// gaveUp is the error of a call whose context ended: a DeadlineExceeded or
// Canceled status that also says what failed last.
func gaveUp(ctx context.Context, last string) error {
	st := status.FromContextError(ctx.Err())
	return status.Errorf(st.Code(), "%s; last failure: %s", st.Message(), last)
}

// failure describes one node's failure by the server's message, without
// grpc-go's "rpc error: code = ... desc =" wrapping.
func failure(addr string, err error) string {
	return addr + ": " + status.Convert(err).Message()
}

// Master is one master's address at an epoch, and the Raft index of the
// state it was read from.
type Master struct {
	Name    string
	Address string
	Epoch   uint64
	Index   uint64
}

// Master returns the current master of a monitored group, from any node.
// An unknown name gives a NotFound status error.
func (c *Client) Master(ctx context.Context, name string) (Master, error) {
	var resp *coordinatorv1.GetMasterResponse
	err := c.call(ctx, false, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
		resp, err = api.GetMaster(ctx, &coordinatorv1.GetMasterRequest{Name: name})
		return err
	})
	if err != nil {
		return Master{}, err
	}
	m := resp.GetMaster()
	return Master{Name: m.GetName(), Address: m.GetAddress(), Epoch: m.GetEpoch(), Index: resp.GetIndex()}, nil
}

// TransferLeadership asks the leader to hand over to the voter id (or, when
// id is empty, to the most up to date one) and returns the new leader's id
// when it was known by the time of the answer.
func (c *Client) TransferLeadership(ctx context.Context, id string) (string, error) {
	var resp *coordinatorv1.TransferLeadershipResponse
	err := c.call(ctx, true, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
		resp, err = api.TransferLeadership(ctx, &coordinatorv1.TransferLeadershipRequest{Id: id})
		return err
	})
	return resp.GetLeaderId(), err
}

// Call runs any API call with the client's failover and retries. Set write
// for a method that changes the cluster, so it goes to the leader first.
func (c *Client) Call(ctx context.Context, write bool, fn func(context.Context, coordinatorv1.CoordinatorServiceClient) error) error {
	return c.call(ctx, write, fn)
}
