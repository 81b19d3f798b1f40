package server

import (
	"context"
	"strings"

	"github.com/raftinel/raftinel/security"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callerKey carries, on a call a node forwards to the leader, the identity
// of the caller the forwarding node authenticated. The leader honours it
// only from a peer whose certificate names a node.
const callerKey = "x-raftinel-caller"

func (s *Server) authMode() authMode {
	return authMode{tls: s.tls != nil, tokens: s.auth != nil}
}

// authenticate establishes who made the call: a node by its certificate
// (or, on a call a node forwarded, the caller it vouches for), a user by
// the token of the auth file, or nobody.
func (s *Server) authenticate(ctx context.Context) (security.Identity, error) {
	id := security.Identity{Kind: security.Anonymous}
	p, ok := peer.FromContext(ctx)
	if ok && p.Addr != nil {
		id.From = p.Addr.String()
	}
	nodeID, isNode := "", false
	if ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			nodeID, isNode = security.PeerNodeID(ti.State)
			id.Subject = security.PeerSubject(ti.State)
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if vouched := md.Get(callerKey); len(vouched) > 0 {
		// Without TLS nothing can be verified, and nothing is enforced:
		// the identity is kept for the audit only.
		if !isNode && s.tls != nil {
			return id, status.Errorf(codes.PermissionDenied, "only a node may forward a call on behalf of another caller; %s is not a node", id)
		}
		v, err := security.DecodeIdentity(vouched[0])
		if err != nil {
			return id, status.Error(codes.InvalidArgument, err.Error())
		}
		v.Forwarded = true
		return v, nil
	}
	if isNode {
		return security.Identity{Kind: security.KindNode, Name: nodeID, From: id.From}, nil
	}
	if auth := md.Get("authorization"); len(auth) > 0 && s.auth != nil {
		secret, ok := strings.CutPrefix(auth[0], "Bearer ")
		if !ok {
			return id, status.Error(codes.Unauthenticated, "the authorization metadata must be 'Bearer SECRET'")
		}
		tok, ok := s.auth.Lookup(strings.TrimSpace(secret))
		if !ok {
			return id, status.Error(codes.Unauthenticated, "the token is not valid here: unknown, mistyped or revoked")
		}
		id.Kind, id.Name, id.Role = security.KindToken, tok.Name, tok.Role
	}
	return id, nil
}

// authUnary authenticates and authorizes every unary call, and puts the
// caller's identity in the context (for forwarding and the audit).
func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	caller, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	mode := s.authMode()
	if err := authorize(mode, info.FullMethod, caller); err != nil {
		s.log.Info("call refused", "method", info.FullMethod, "caller", caller.String(), "err", status.Convert(err).Message())
		return nil, err
	}
	if err := checkClaims(mode, info.FullMethod, req, caller); err != nil {
		s.log.Warn("call refused: it claims to come from another node", "method", info.FullMethod, "caller", caller.String(), "err", status.Convert(err).Message())
		return nil, err
	}
	return handler(security.WithIdentity(ctx, caller), req)
}

type identityStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s identityStream) Context() context.Context { return s.ctx }

// authStream is authUnary for streams.
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	caller, err := s.authenticate(ss.Context())
	if err != nil {
		return err
	}
	if err := authorize(s.authMode(), info.FullMethod, caller); err != nil {
		s.log.Info("call refused", "method", info.FullMethod, "caller", caller.String(), "err", status.Convert(err).Message())
		return err
	}
	return handler(srv, identityStream{ServerStream: ss, ctx: security.WithIdentity(ss.Context(), caller)})
}

// callerMetadata adds the identity of the caller in ctx, if any, to a call
// this node forwards to the leader.
func callerMetadata(ctx context.Context) context.Context {
	id, ok := security.IdentityFrom(ctx)
	if !ok {
		return ctx // the node's own write: the leader knows it by its certificate
	}
	return metadata.AppendToOutgoingContext(ctx, callerKey, id.Encode())
}
