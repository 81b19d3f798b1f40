package server

import (
	"strings"
	"testing"

	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/security"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Every method a node serves has an entry in methodAccess: a new RPC
// without a role fails here before it is refused to everyone.
func TestEveryRPCHasARole(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	info := c.nodes[0].srv.grpc.GetServiceInfo()
	if len(info) < 4 {
		t.Fatalf("only %d services registered", len(info))
	}
	for svc, si := range info {
		for _, m := range si.Methods {
			full := "/" + svc + "/" + m.Name
			if _, ok := methodAccess[full]; !ok {
				t.Errorf("%s has no role in methodAccess", full)
			}
		}
	}
}

func TestAuthorize(t *testing.T) {
	const (
		status_   = coordinatorv1.CoordinatorService_Status_FullMethodName
		failover  = coordinatorv1.CoordinatorService_Failover_FullMethodName
		removeN   = coordinatorv1.CoordinatorService_RemoveNode_FullMethodName
		join      = coordinatorv1.CoordinatorService_Join_FullMethodName
		propose   = clusterv1.ClusterService_Propose_FullMethodName
		watch     = coordinatorv1.CoordinatorService_WatchMaster_FullMethodName
		health    = "/grpc.health.v1.Health/Check"
		unknownRP = "/coordinator.v1.CoordinatorService/NoSuchCall"
	)
	tok := func(r security.Role) security.Identity {
		return security.Identity{Kind: security.KindToken, Name: "t", Role: r}
	}
	node := security.Identity{Kind: security.KindNode, Name: "n1"}
	anon := security.Identity{Kind: security.Anonymous}
	secured := authMode{tls: true, tokens: true}
	tlsOnly := authMode{tls: true}
	open := authMode{}
	for _, tc := range []struct {
		mode   authMode
		method string
		caller security.Identity
		want   codes.Code
	}{
		{secured, status_, tok(security.RoleRead), codes.OK},
		{secured, watch, tok(security.RoleRead), codes.OK},
		{secured, failover, tok(security.RoleRead), codes.PermissionDenied},
		{secured, failover, tok(security.RoleOperate), codes.OK},
		{secured, removeN, tok(security.RoleOperate), codes.PermissionDenied},
		{secured, removeN, tok(security.RoleAdmin), codes.OK},
		{secured, join, tok(security.RoleOperate), codes.PermissionDenied},
		{secured, join, tok(security.RoleAdmin), codes.OK},
		{secured, propose, tok(security.RoleAdmin), codes.PermissionDenied},
		{secured, propose, node, codes.OK},
		{secured, join, node, codes.OK},
		{secured, status_, node, codes.OK},
		{secured, failover, node, codes.PermissionDenied},
		{secured, removeN, node, codes.PermissionDenied},
		{secured, status_, anon, codes.Unauthenticated},
		{secured, health, anon, codes.OK},
		{secured, unknownRP, tok(security.RoleAdmin), codes.PermissionDenied},
		{tlsOnly, failover, anon, codes.OK},
		{tlsOnly, propose, anon, codes.PermissionDenied},
		{tlsOnly, join, anon, codes.PermissionDenied},
		{open, propose, anon, codes.OK},
		{open, join, anon, codes.OK},
		{secured, failover, security.Identity{Kind: security.KindSentinel, Name: "app", Role: security.RoleRead}, codes.PermissionDenied},
	} {
		err := authorize(tc.mode, tc.method, tc.caller)
		if got := status.Code(err); got != tc.want {
			t.Errorf("%+v %s by %s: %v, want %v", tc.mode, tc.method, tc.caller, err, tc.want)
		}
	}
}

func TestCheckClaims(t *testing.T) {
	n2 := security.Identity{Kind: security.KindNode, Name: "n2"}
	fwd := n2
	fwd.Forwarded = true
	mode := authMode{tls: true}
	vote := func(id string) *clusterv1.ProposeRequest {
		return &clusterv1.ProposeRequest{Command: testVote(id, "127.0.0.1:1")}
	}
	for _, tc := range []struct {
		name   string
		req    any
		caller security.Identity
		ok     bool
	}{
		{"own vote", vote("n2"), n2, true},
		{"another node's vote", vote("n1"), n2, false},
		{"own vote, forwarded", vote("n2"), fwd, false},
		{"join as itself", &coordinatorv1.JoinRequest{Id: "n2"}, n2, true},
		{"join as another", &coordinatorv1.JoinRequest{Id: "n3"}, n2, false},
		{"join forwarded for itself", &coordinatorv1.JoinRequest{Id: "n2"}, fwd, true},
		{"an admin joins any node", &coordinatorv1.JoinRequest{Id: "n3"}, security.Identity{Kind: security.KindToken, Role: security.RoleAdmin}, true},
	} {
		err := checkClaims(mode, "", tc.req, tc.caller)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: code %v", tc.name, status.Code(err))
		}
	}
	if err := checkClaims(authMode{}, "", vote("n1"), n2); err != nil {
		t.Errorf("without TLS nothing is checked: %v", err)
	}
}

func TestSecurityConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{ID: "n1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:7000", GRPCAddr: "127.0.0.1:7100"}
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"tls files go together": {func(c *Config) { c.TLSCertFile = "n1.pem" }, "go together"},
		"auth file without TLS beyond loopback": {func(c *Config) {
			c.AuthFile, c.GRPCAddr = "auth", "10.0.0.1:7100"
		}, "--auth-file without TLS on --grpc-addr 10.0.0.1:7100"},
		"auth file without TLS on a Sentinel address beyond loopback": {func(c *Config) {
			c.AuthFile, c.SentinelAddr = "auth", "0.0.0.0:26379"
		}, "--sentinel-addr 0.0.0.0:26379"},
		"auth file without TLS on loopback": {func(c *Config) { c.AuthFile = "auth" }, ""},
	} {
		c := base()
		tc.edit(&c)
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func TestHookChangesNeedTheAdminRole(t *testing.T) {
	keys := []string{"client-reconfig-script"}
	for _, tc := range []struct {
		name string
		mode authMode
		id   security.Identity
		ok   bool
	}{
		{"no tokens", authMode{}, security.Identity{}, true},
		{"admin token", authMode{tls: true, tokens: true}, security.Identity{Kind: security.KindToken, Name: "ops", Role: security.RoleAdmin}, true},
		{"operate token", authMode{tls: true, tokens: true}, security.Identity{Kind: security.KindToken, Name: "deploy", Role: security.RoleOperate}, false},
		{"read token", authMode{tls: true, tokens: true}, security.Identity{Kind: security.KindToken, Name: "grafana", Role: security.RoleRead}, false},
	} {
		err := authorizeHookKeys(tc.mode, tc.id, keys)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && (status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "admin role")) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
