package server

import (
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/security"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// access is what a caller needs to call a method.
type access int

const (
	// accessPublic: anyone who completes the TLS handshake (health checks,
	// for load balancers).
	accessPublic access = iota + 1
	accessRead
	accessOperate
	accessAdmin
	// accessNode: nodes only, by their certificate (votes).
	accessNode
	// accessJoin: the joining node itself, or an admin.
	accessJoin
)

func (a access) String() string {
	switch a {
	case accessPublic:
		return "public"
	case accessRead:
		return "read"
	case accessOperate:
		return "operate"
	case accessAdmin:
		return "admin"
	case accessNode:
		return "node"
	case accessJoin:
		return "admin or the joining node"
	}
	return "none"
}

// methodAccess is the one table of what every RPC needs. A method missing
// here is refused to everyone (TestEveryRPCHasARole fails for it first).
var methodAccess = map[string]access{
	coordinatorv1.CoordinatorService_Status_FullMethodName:          accessRead,
	coordinatorv1.CoordinatorService_ListMembers_FullMethodName:     accessRead,
	coordinatorv1.CoordinatorService_ListMasters_FullMethodName:     accessRead,
	coordinatorv1.CoordinatorService_GetMaster_FullMethodName:       accessRead,
	coordinatorv1.CoordinatorService_GetMasterDetail_FullMethodName: accessRead,
	coordinatorv1.CoordinatorService_WatchMaster_FullMethodName:     accessRead,
	coordinatorv1.CoordinatorService_WatchEvents_FullMethodName:     accessRead,
	coordinatorv1.CoordinatorService_Explain_FullMethodName:         accessRead,

	coordinatorv1.CoordinatorService_Monitor_FullMethodName:  accessOperate,
	coordinatorv1.CoordinatorService_Set_FullMethodName:      accessOperate,
	coordinatorv1.CoordinatorService_Remove_FullMethodName:   accessOperate,
	coordinatorv1.CoordinatorService_Reset_FullMethodName:    accessOperate,
	coordinatorv1.CoordinatorService_Failover_FullMethodName: accessOperate,

	coordinatorv1.CoordinatorService_Join_FullMethodName:               accessJoin,
	coordinatorv1.CoordinatorService_RemoveNode_FullMethodName:         accessAdmin,
	coordinatorv1.CoordinatorService_TransferLeadership_FullMethodName: accessAdmin,
	// A snapshot holds every master's auth-pass.
	coordinatorv1.CoordinatorService_SnapshotSave_FullMethodName:   accessAdmin,
	coordinatorv1.CoordinatorService_CheckLogFormat_FullMethodName: accessAdmin,

	clusterv1.ClusterService_Propose_FullMethodName:         accessNode,
	clusterv1.ClusterService_HookCheckScript_FullMethodName: accessNode,

	healthpb.Health_Check_FullMethodName: accessPublic,
	healthpb.Health_Watch_FullMethodName: accessPublic,
	healthpb.Health_List_FullMethodName:  accessPublic,

	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      accessRead,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": accessRead,
}

// authMode is how a node checks its callers.
type authMode struct {
	// tls: the node serves TLS and knows nodes by their certificates.
	tls bool
	// tokens: the node has an auth file; every caller that is not a node
	// needs a token.
	tokens bool
}

// authorize decides whether caller may call method. Pure: the identity was
// established by authenticate (or carried from the node that did).
func authorize(mode authMode, method string, caller security.Identity) error {
	need, ok := methodAccess[method]
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s has no role assigned on this node: refused to everyone", method)
	}
	if need == accessPublic {
		return nil
	}
	switch caller.Kind {
	case security.KindNode:
		switch need {
		case accessRead, accessNode, accessJoin:
			return nil // the claims are checked by checkClaims
		}
		return status.Errorf(codes.PermissionDenied, "%s needs the %s role; node %s's certificate only reads, votes and joins", method, need, caller.Name)
	case security.KindToken, security.KindSentinel:
		if need == accessNode {
			return status.Errorf(codes.PermissionDenied, "%s is for nodes only: it needs a node certificate (URI SAN %sID), %s is not one", method, security.NodeURIPrefix, caller.Who())
		}
		want := map[access]security.Role{accessRead: security.RoleRead, accessOperate: security.RoleOperate,
			accessAdmin: security.RoleAdmin, accessJoin: security.RoleAdmin}[need]
		if caller.Role < want {
			return status.Errorf(codes.PermissionDenied, "%s needs the %s role; %s has the %s role", method, want, caller.Who(), caller.Role)
		}
		return nil
	}
	// Anonymous.
	if mode.tls && need == accessNode {
		return status.Errorf(codes.PermissionDenied, "%s is for nodes only: it needs a node certificate (URI SAN %sID)", method, security.NodeURIPrefix)
	}
	if mode.tokens {
		return status.Errorf(codes.Unauthenticated, "%s needs a token: send the metadata 'authorization: Bearer SECRET' (coordinatorctl --token or COORDINATOR_TOKEN)", method)
	}
	if mode.tls && need == accessJoin {
		return status.Errorf(codes.PermissionDenied, "%s is for the joining node itself (its node certificate) or an admin token", method)
	}
	return nil
}

// checkClaims refuses a request whose content claims to come from another
// node than the caller: a vote is cast only by the node it names, straight
// (never forwarded by a third node), and a node joins only as itself.
func checkClaims(mode authMode, method string, req any, caller security.Identity) error {
	if !mode.tls || caller.Kind != security.KindNode {
		return nil
	}
	switch r := req.(type) {
	case *clusterv1.ProposeRequest:
		if caller.Forwarded {
			return status.Errorf(codes.PermissionDenied, "a vote must come straight from the node that casts it, not forwarded (claimed by %s)", caller)
		}
		v, ok := r.GetCommand().GetKind().(*fsmv1.Command_ReportVote)
		if !ok {
			return nil // Propose refuses every other kind itself
		}
		if got := v.ReportVote.GetNodeId(); got != caller.Name {
			return status.Errorf(codes.PermissionDenied, "node %s may not cast a vote for node %q: a vote is accepted only from the node it names", caller.Name, got)
		}
	case *coordinatorv1.JoinRequest:
		if r.GetId() != caller.Name {
			return status.Errorf(codes.PermissionDenied, "node %s may not join as node %q: a node joins only as the id in its certificate", caller.Name, r.GetId())
		}
	}
	return nil
}
