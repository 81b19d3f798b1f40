package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/fsm"
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// forwardedKey marks a request a follower sent on to the leader, so a node
// that lost leadership meanwhile answers "not leader" instead of bouncing it.
const forwardedKey = "x-raftinel-forwarded"

// writeMethods must run on the leader: forwardInterceptor sends them
// through leaderCall.
var writeMethods = map[string]bool{
	coordinatorv1.CoordinatorService_Join_FullMethodName:       true,
	coordinatorv1.CoordinatorService_RemoveNode_FullMethodName: true,
	coordinatorv1.CoordinatorService_Monitor_FullMethodName:    true,
	coordinatorv1.CoordinatorService_Remove_FullMethodName:     true,
	coordinatorv1.CoordinatorService_Set_FullMethodName:        true,
	// A forwarded Failover waits on the leader for the outcome, within the
	// caller's deadline, which gRPC carries along.
	coordinatorv1.CoordinatorService_Failover_FullMethodName: true,
	coordinatorv1.CoordinatorService_Reset_FullMethodName:    true,

	coordinatorv1.CoordinatorService_TransferLeadership_FullMethodName: true,
	coordinatorv1.CoordinatorService_CheckLogFormat_FullMethodName:     true,
	// Not a write, but the snapshot is the leader's.
	coordinatorv1.CoordinatorService_SnapshotSave_FullMethodName: true,

	// Votes, from the nodes' own monitors.
	clusterv1.ClusterService_Propose_FullMethodName: true,
}

func forwardedContext(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
}

func isForwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedKey)) > 0
}

// notLeaderError names the leader so a client can go there itself.
type notLeaderError struct{ leaderID, leaderAddr string }

func (e *notLeaderError) Error() string {
	if e.leaderID == "" {
		return "not leader, and no leader is known: the cluster may have lost its quorum"
	}
	return fmt.Sprintf("not leader; the leader is %s at %s", e.leaderID, e.leaderAddr)
}

func (s *Server) notLeader() error {
	_, id := s.raft.LeaderWithID()
	e := &notLeaderError{leaderID: string(id)}
	if n, ok := s.fsm.Node(string(id)); ok {
		e.leaderAddr = n.GrpcAddress
	}
	return e
}

// leaderConn returns a connection to the current leader's gRPC endpoint.
func (s *Server) leaderConn() (*grpc.ClientConn, error) {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return nil, &notLeaderError{}
	}
	n, ok := s.fsm.Node(string(id))
	if !ok {
		return nil, &notLeaderError{leaderID: string(id), leaderAddr: "an address not registered yet"}
	}
	return s.conn(n.GrpcAddress)
}

// waitLeaderConn returns a connection to the leader, waiting out an
// election in progress: a write that arrives between two leaders should be
// delayed by the election, not refused. It waits for at most three quarters
// of the time left to the request (and RequestTimeout), so that when no
// leader appears the caller gets the explanatory Unavailable, not a bare
// DeadlineExceeded. A nil connection means this node became the leader.
func (s *Server) waitLeaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	budget := s.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)*3/4)
	}
	giveUp := time.Now().Add(budget)
	for {
		if s.IsLeader() {
			return nil, nil
		}
		conn, err := s.leaderConn()
		if err == nil || time.Now().After(giveUp) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-s.ctx.Done():
			return nil, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// leaderCall is the one path of a write to the leader, for gRPC calls (via
// forwardInterceptor) and for the node's own writes (onLeader) alike. On
// the leader it runs local. Elsewhere it waits out an election in progress
// and sends method with req to the leader, marked as forwarded, and returns
// the leader's reply or status; a forwarded request that reaches a node no
// longer leading is answered "not leader" rather than sent on again.
//
// It maps no error, so each is mapped once: one from local is returned as
// it is, for errorInterceptor (or sentinelError) to map; one from the
// leader is the status the leader's errorInterceptor made, which toStatus
// passes unchanged.
func (s *Server) leaderCall(ctx context.Context, method string, req any, local func(context.Context) (any, error)) (any, error) {
	if s.IsLeader() {
		return local(ctx)
	}
	if isForwarded(ctx) {
		return nil, s.notLeader()
	}
	conn, err := s.waitLeaderConn(ctx)
	if err != nil {
		return nil, err
	}
	if conn == nil { // this node won the election meanwhile
		return local(ctx)
	}
	reply := newReply(method)
	if reply == nil {
		return nil, status.Errorf(codes.Internal, "no reply type for %s", method)
	}
	// A snapshot may be larger than gRPC's default 4 MiB for a reply.
	if err := conn.Invoke(forwardedContext(callerMetadata(ctx)), method, req, reply, grpc.MaxCallRecvMsgSize(MaxSnapshotBytes)); err != nil {
		return nil, err
	}
	return reply, nil
}

// onLeader runs one of the node's own writes on the leader: handler (an
// API handler, so the write is validated exactly as the same gRPC call
// would be) on this node when it leads, else method on the leader.
func onLeader[Req, Resp proto.Message](s *Server, ctx context.Context, method string, req Req,
	handler func(context.Context, Req) (Resp, error)) (Resp, error) {
	var none Resp
	resp, err := s.leaderCall(ctx, method, req, func(ctx context.Context) (any, error) { return handler(ctx, req) })
	if err != nil {
		return none, err
	}
	out, ok := resp.(Resp)
	if !ok {
		return none, fmt.Errorf("reply %T to %s, want %T", resp, method, none)
	}
	return out, nil
}

// forwardInterceptor sends a write that reached a follower to the leader
// and relays the answer, so clients may talk to any node.
func (s *Server) forwardInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if !writeMethods[info.FullMethod] {
		return handler(ctx, req)
	}
	if info.FullMethod == clusterv1.ClusterService_Propose_FullMethodName && !s.IsLeader() {
		// A vote that reached a node no longer leading goes back to its
		// voter, which finds the leader itself: a vote is taken only
		// straight from the node that casts it.
		return nil, s.notLeader()
	}
	return s.leaderCall(ctx, info.FullMethod, req, func(ctx context.Context) (any, error) { return handler(ctx, req) })
}

// newReply makes an empty response message for a method of the service.
func newReply(method string) proto.Message {
	switch method {
	case coordinatorv1.CoordinatorService_Join_FullMethodName:
		return &coordinatorv1.JoinResponse{}
	case coordinatorv1.CoordinatorService_RemoveNode_FullMethodName:
		return &coordinatorv1.RemoveNodeResponse{}
	case coordinatorv1.CoordinatorService_Monitor_FullMethodName:
		return &coordinatorv1.MonitorResponse{}
	case coordinatorv1.CoordinatorService_Remove_FullMethodName:
		return &coordinatorv1.RemoveResponse{}
	case coordinatorv1.CoordinatorService_Set_FullMethodName:
		return &coordinatorv1.SetResponse{}
	case coordinatorv1.CoordinatorService_Failover_FullMethodName:
		return &coordinatorv1.FailoverResponse{}
	case coordinatorv1.CoordinatorService_Reset_FullMethodName:
		return &coordinatorv1.ResetResponse{}
	case coordinatorv1.CoordinatorService_TransferLeadership_FullMethodName:
		return &coordinatorv1.TransferLeadershipResponse{}
	case coordinatorv1.CoordinatorService_CheckLogFormat_FullMethodName:
		return &coordinatorv1.CheckLogFormatResponse{}
	case coordinatorv1.CoordinatorService_SnapshotSave_FullMethodName:
		return &coordinatorv1.SnapshotSaveResponse{}
	case coordinatorv1.CoordinatorService_Explain_FullMethodName:
		return &coordinatorv1.ExplainResponse{}
	case clusterv1.ClusterService_Propose_FullMethodName:
		return &clusterv1.ProposeResponse{}
	}
	return nil
}

// errorDomain is the domain of the google.rpc.ErrorInfo detail that carries
// an fsm.Reason in a gRPC status.
const errorDomain = "raftinel.io"

// ReasonOf reads the typed reason of a refusal from any error a write may
// return: an *fsm.Error from this node, or a gRPC status (from toStatus here
// or received from the leader) with an ErrorInfo of errorDomain. It is ""
// for every other error.
func ReasonOf(err error) fsm.Reason {
	var fe *fsm.Error
	if errors.As(err, &fe) {
		return fe.Reason
	}
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return fsm.Reason(info.GetReason())
		}
	}
	return ""
}

// errorInterceptor is the one place errors become gRPC status codes. An
// answer relayed from the leader is a status already and passes unchanged.
func errorInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// toStatus maps an error to a gRPC status: an fsm.Error by its Kind, with
// its Reason as an ErrorInfo detail. A status passes unchanged.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *fsm.Error
	var nl *notLeaderError
	switch {
	case errors.As(err, &fe):
		code := map[fsm.Kind]codes.Code{
			fsm.Invalid:            codes.InvalidArgument,
			fsm.NotFound:           codes.NotFound,
			fsm.AlreadyExists:      codes.AlreadyExists,
			fsm.FailedPrecondition: codes.FailedPrecondition,
		}[fe.Kind]
		if code == codes.OK {
			code = codes.Unknown
		}
		st := status.New(code, fe.Msg)
		if fe.Reason != "" {
			// Only a code of OK or a detail that cannot be marshalled
			// fails here, neither of which can happen.
			if withReason, err := st.WithDetails(&errdetails.ErrorInfo{Reason: string(fe.Reason), Domain: errorDomain}); err == nil {
				st = withReason
			}
		}
		return st.Err()
	case errors.As(err, &nl):
		return status.Error(codes.Unavailable, nl.Error())
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, errNoQuorum):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}
