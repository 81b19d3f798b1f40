package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// parseAddrs reads the --addr list. Bad entries are usage errors: sending a
// request to half a list would hide a typo until the first node dies.
func parseAddrs(s string) ([]string, error) {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		host, port, err := net.SplitHostPort(part)
		if err != nil || host == "" {
			return nil, usageErrorf("--addr: %q is not host:port", part)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, usageErrorf("--addr: %q has an invalid port (1 to 65535)", part)
		}
		out = append(out, part)
	}
	if len(out) == 0 {
		return nil, usageErrorf("--addr: no node address given")
	}
	return out, nil
}

// client talks to whichever of the given nodes answers first. Every node
// serves reads from its own state and forwards writes to the leader, so the
// first node that answers is as good as any.
type client struct {
	addrs   []string
	timeout time.Duration
	conns   map[string]*grpc.ClientConn
	// opts carry the transport security and the token (none: plaintext).
	opts []grpc.DialOption
}

func newClient(addrs []string, timeout time.Duration, opts ...grpc.DialOption) *client {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return &client{addrs: addrs, timeout: timeout, conns: map[string]*grpc.ClientConn{}, opts: opts}
}

func (c *client) conn(addr string) (*grpc.ClientConn, error) {
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	// NewClient does not connect; the first call does, and fails fast with
	// Unavailable when nothing listens, which is what moves us to the next
	// address.
	cc, err := grpc.NewClient(addr, append(c.opts, grpc.WithUnaryInterceptor(noteAnswer))...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// Close releases every connection the client opened.
func (c *client) Close() {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
}

// answeredKey carries, in a call's context, where noteAnswer records that
// the node itself answered.
type answeredKey struct{}

// noteAnswer records whether a call reached the node (it has a peer), so
// that "could not reach this node" reads apart from "this node answered
// that it cannot serve": a follower relays its own failure to reach the
// leader as Unavailable, and that must not read as if the node were down.
// The connection's state after the call cannot tell: it may change at any
// moment.
func noteAnswer(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var p peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if answered, ok := ctx.Value(answeredKey{}).(*bool); ok && p.Addr != nil {
		*answered = true
	}
	return err
}

func describeUnavailable(addr string, answered bool, err error) string {
	if answered {
		return addr + " answered: " + grpcMessage(err)
	}
	return addr + ": " + grpcMessage(err)
}

// call runs fn against the nodes in order until one answers. The whole
// call, every address included, gets one --timeout: an operator waiting on
// a cluster without quorum must get an answer, not a multiple of the
// deadline.
func (c *client) call(ctx context.Context, fn func(context.Context, coordinatorv1.CoordinatorServiceClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var failed []string
	for _, addr := range c.addrs {
		cc, err := c.conn(addr)
		answered := new(bool)
		if err == nil {
			err = fn(context.WithValue(ctx, answeredKey{}, answered), coordinatorv1.NewCoordinatorServiceClient(cc))
		}
		if err == nil {
			return nil
		}
		st, isStatus := status.FromError(err)
		switch {
		case !isStatus:
			failed = append(failed, addr+": "+err.Error())
		case st.Code() == codes.Unavailable:
			failed = append(failed, describeUnavailable(addr, *answered, err))
		case st.Code() == codes.DeadlineExceeded:
			return fromCall(status.Errorf(codes.DeadlineExceeded, "%s: no answer within %v", addr, c.timeout))
		default:
			return fromCall(err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return fromCall(status.Errorf(codes.Unavailable, "no node could serve the request: %s", strings.Join(failed, "; ")))
}
