package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/internal/testwait"
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/security"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// testPKI is a CA in a directory, issuing certificates into it.
type testPKI struct {
	t   testing.TB
	dir string
	ca  *security.CA
}

func newTestPKI(t testing.TB) *testPKI {
	dir := t.TempDir()
	if _, err := security.CreateCADir(dir); err != nil {
		t.Fatal(err)
	}
	ca, err := security.LoadCADir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{t: t, dir: dir, ca: ca}
}

func (p *testPKI) caFile() string { return filepath.Join(p.dir, security.CACertFile) }

// issue writes a certificate for a node (node != "") or a client.
func (p *testPKI) issue(node, client string) (certFile, keyFile string) {
	cert, key, err := security.IssueToDir(p.dir, security.CertRequest{Node: node, Client: client, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		p.t.Fatal(err)
	}
	return cert, key
}

// clientTLS is a client's TLS config trusting the CA, presenting the
// given certificate when files are given.
func (p *testPKI) clientTLS(certFile, keyFile string) *tls.Config {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(p.caFile())
	if err != nil {
		p.t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			p.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

type secureNode struct {
	id       string
	raftAddr string
	srv      *Server
}

type secureCluster struct {
	t     testing.TB
	pki   *testPKI
	nodes []*secureNode
}

func freeTCPAddr(t testing.TB) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// newSecureCluster starts n nodes with TLS on Raft (real TCP), gRPC and
// the Sentinel endpoint, and the auth file authFile when not empty.
func newSecureCluster(t testing.TB, n int, authFile string) *secureCluster {
	c := &secureCluster{t: t, pki: newTestPKI(t)}
	var boot []raft.Server
	for i := range n {
		nd := &secureNode{id: fmt.Sprintf("n%d", i+1), raftAddr: freeTCPAddr(t)}
		c.nodes = append(c.nodes, nd)
		boot = append(boot, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(nd.id), Address: raft.ServerAddress(nd.raftAddr)})
	}
	// All at once: one by one, a stopping leader can wait forever on its
	// Raft pipeline to a follower whose Raft stopped but whose transport
	// is still open (hashicorp/raft's pipeline has no deadline).
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, nd := range c.nodes {
			if nd.srv != nil {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = nd.srv.Shutdown(ctx)
				})
			}
		}
		wg.Wait()
	})
	for _, nd := range c.nodes {
		cert, key := c.pki.issue(nd.id, "")
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(Config{
			ID: nd.id, DataDir: t.TempDir(), RaftAddr: nd.raftAddr, GRPCListener: lis, Bootstrap: boot, SentinelAddr: "127.0.0.1:0",
			Logger: testLogger(t).With("test_node", nd.id), TuneRaft: secureRaft, RequestTimeout: 3 * time.Second,
			TLSCertFile: cert, TLSKeyFile: key, TLSCAFile: c.pki.caFile(), AuthFile: authFile,
		})
		if err != nil {
			t.Fatal(err)
		}
		nd.srv = srv
	}
	testwait.Until(t, 20*time.Second, "a leader and every node registered", func() bool {
		leaders := 0
		for _, nd := range c.nodes {
			if nd.srv.IsLeader() {
				leaders++
			}
			if len(nd.srv.FSM().Nodes()) != n {
				return false
			}
		}
		return leaders == 1
	})
	return c
}

// leader waits for a leader and returns it.
func (c *secureCluster) leader() *secureNode {
	var l *secureNode
	testwait.Until(c.t, 10*time.Second, "a leader", func() bool {
		for _, nd := range c.nodes {
			if nd.srv.IsLeader() {
				l = nd
				return true
			}
		}
		return false
	})
	return l
}

// secureRaft is Raft's timing for these clusters: hashicorp/raft's
// defaults, as TLS handshakes on a loaded machine under -race starve
// fastRaft's 150 ms (leaders stepped down mid-test).
func secureRaft(c *raft.Config) {
	c.CommitTimeout = 5 * time.Millisecond
}

// dial connects to a node's gRPC API with the given credentials.
func dialWith(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func forgedVote(nodeID, addr string) *clusterv1.ProposeRequest {
	v := testVote(nodeID, addr)
	v.GetReportVote().Down = true
	v.GetReportVote().Reason = "forged"
	return &clusterv1.ProposeRequest{Command: v}
}

// The attack of the issue: a process on the network proposes down votes
// for n1..n3 about a healthy master. On a secured cluster every variant
// fails and the master keeps its epoch, with no vote against it.
func TestForgedVotesFailOnASecuredCluster(t *testing.T) {
	c := newSecureCluster(t, 3, "")
	leader := c.leader()
	anon := coordinatorv1.NewCoordinatorServiceClient(dialWith(t, leader.srv.GRPCAddr(), credentials.NewTLS(c.pki.clientTLS("", ""))))
	addr := unusedAddr(t)
	testwait.For(t, 30*time.Second, "monitor", func() error {
		_, err := anon.Monitor(ctxT(t, 5*time.Second), &coordinatorv1.MonitorRequest{Name: "m", Address: addr,
			Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(time.Hour), FailoverTimeout: durationpb.New(time.Hour)}})
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return err
	})

	cases := []struct {
		name  string
		creds credentials.TransportCredentials
		md    []string
		code  codes.Code
		want  string
		votes []string // the nodes whose vote is forged
	}{
		{name: "plaintext", creds: insecure.NewCredentials(), code: codes.Unavailable, votes: []string{"n1", "n2", "n3"}},
		{name: "TLS without a certificate", creds: credentials.NewTLS(c.pki.clientTLS("", "")), code: codes.PermissionDenied,
			want: "nodes only", votes: []string{"n1", "n2", "n3"}},
		{name: "a client certificate of the same CA", creds: credentials.NewTLS(c.pki.clientTLS(c.pki.issue("", "mallory"))),
			code: codes.PermissionDenied, want: "nodes only", votes: []string{"n1", "n2", "n3"}},
		{name: "n2's certificate casting the others' votes", creds: credentials.NewTLS(c.pki.clientTLS(c.pki.issue("n2", ""))),
			code: codes.PermissionDenied, want: "may not cast a vote for node", votes: []string{"n1", "n3"}},
		{name: "n2's certificate vouching for n1", creds: credentials.NewTLS(c.pki.clientTLS(c.pki.issue("n2", ""))),
			md: []string{callerKey, security.Identity{Kind: security.KindNode, Name: "n1"}.Encode()}, code: codes.PermissionDenied,
			want: "straight from the node", votes: []string{"n1"}},
		{name: "a vouched identity without a node certificate", creds: credentials.NewTLS(c.pki.clientTLS("", "")),
			md: []string{callerKey, security.Identity{Kind: security.KindNode, Name: "n1"}.Encode()}, code: codes.PermissionDenied,
			want: "only a node may forward", votes: []string{"n1"}},
	}
	other := newTestPKI(t)
	otherCert, otherKey := other.issue("n1", "")
	otherTLS := other.clientTLS(otherCert, otherKey)
	otherTLS.RootCAs = c.pki.clientTLS("", "").RootCAs // trusts the cluster, but is not trusted by it
	cases = append(cases, struct {
		name  string
		creds credentials.TransportCredentials
		md    []string
		code  codes.Code
		want  string
		votes []string
	}{name: "a node certificate from another CA", creds: credentials.NewTLS(otherTLS), code: codes.Unavailable, votes: []string{"n1", "n2", "n3"}})

	for _, tc := range cases {
		for _, nd := range c.nodes {
			cl := clusterv1.NewClusterServiceClient(dialWith(t, nd.srv.GRPCAddr(), tc.creds))
			for _, v := range tc.votes {
				ctx := ctxT(t, 5*time.Second)
				if tc.md != nil {
					ctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
				}
				_, err := cl.Propose(ctx, forgedVote(v, addr))
				if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%s, vote for %s sent to %s: %v, want %v containing %q", tc.name, v, nd.id, err, tc.code, tc.want)
				}
			}
		}
	}
	// A node's own vote still passes, from its own certificate, sent to
	// the leader (any other node sends it back: not leader).
	n2Creds := credentials.NewTLS(c.pki.clientTLS(c.pki.issue("n2", "")))
	up := forgedVote("n2", addr)
	up.GetCommand().GetReportVote().Down = false
	up.GetCommand().GetReportVote().Reason = "n2's own"
	testwait.For(t, 30*time.Second, "n2's own vote accepted", func() error {
		n2 := clusterv1.NewClusterServiceClient(dialWith(t, c.leader().srv.GRPCAddr(), n2Creds))
		_, err := n2.Propose(ctxT(t, 5*time.Second), up)
		if status.Code(err) == codes.Unavailable {
			return err
		}
		if err != nil {
			return testwait.Stop(err)
		}
		return nil
	})
	for _, nd := range c.nodes {
		m, _, ok := nd.srv.FSM().Master("m")
		if !ok {
			t.Fatalf("%s lost the master", nd.id)
		}
		for _, v := range m.GetVotes() {
			if v.GetReason() == "forged" || v.GetDown() {
				t.Fatalf("%s holds a down vote: %v", nd.id, v)
			}
		}
		if m.GetEpoch() != 0 || m.GetOdown() {
			t.Fatalf("%s: the master was judged down or failed over: %v", nd.id, m)
		}
	}
}

// Raft's port speaks only to nodes: a plaintext peer, a client
// certificate and a certificate from another CA are refused at the
// handshake.
func TestRaftPortAcceptsOnlyNodes(t *testing.T) {
	c := newSecureCluster(t, 1, "")
	raftAddr := c.nodes[0].raftAddr
	other := newTestPKI(t)
	for name, cfg := range map[string]*tls.Config{
		"no certificate":     c.pki.clientTLS("", ""),
		"client certificate": c.pki.clientTLS(c.pki.issue("", "alice")),
		"another CA's node":  other.clientTLS(other.issue("n9", "")),
	} {
		cfg.InsecureSkipVerify = true // the client accepts anything: the server must refuse
		conn, err := tls.Dial("tcp", raftAddr, cfg)
		if err == nil {
			// TLS 1.3 reports a refused client certificate on the first read.
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil {
			t.Fatalf("%s: the Raft port accepted the connection", name)
		}
	}
	// Plaintext: the server waits for a TLS hello and drops the rest.
	conn, err := net.Dial("tcp", raftAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("\x00plaintext raft rpc"))
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 64)); err == nil && n > 0 {
		// An alert record (type 21) is all a plaintext peer may get.
		t.Logf("plaintext peer got %d bytes (a TLS alert)", n)
	}
}

type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return true }

// A write sent to a follower is forwarded as the user's own call: the
// leader checks the user's role, not the follower's, and the events carry
// the user and the user's address, never the token.
func TestForwardedWritesKeepTheCallersIdentity(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "auth")
	const ops, reader = "operate-secret-0123456789", "reader-secret-0123456789"
	if err := os.WriteFile(auth, []byte("ops operate "+ops+"\nreader read "+security.HashSecret(reader)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newSecureCluster(t, 3, auth)
	leader := c.leader()
	var follower *secureNode
	for _, nd := range c.nodes {
		if nd != leader {
			follower = nd
		}
	}
	dial := func(token string) (coordinatorv1.CoordinatorServiceClient, *grpc.ClientConn) {
		conn, err := grpc.NewClient(follower.srv.GRPCAddr(), grpc.WithTransportCredentials(credentials.NewTLS(c.pki.clientTLS("", ""))),
			grpc.WithPerRPCCredentials(tokenCreds(token)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return coordinatorv1.NewCoordinatorServiceClient(conn), conn
	}
	readCl, _ := dial(reader)
	_, err := readCl.Monitor(ctxT(t, 5*time.Second), monitorReq("m", "127.0.0.1:1"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "needs the operate role; token reader has the read role") {
		t.Fatalf("monitor with a read token through a follower: %v", err)
	}
	opsCl, _ := dial(ops)
	var resp *coordinatorv1.MonitorResponse
	testwait.For(t, 30*time.Second, "monitor through a follower", func() error {
		resp, err = opsCl.Monitor(ctxT(t, 5*time.Second), monitorReq("m", "127.0.0.1:1"))
		if status.Code(err) == codes.Unavailable || status.Code(err) == codes.AlreadyExists {
			return err // AlreadyExists: an earlier try won; the next read waits for it
		}
		if err != nil {
			return testwait.Stop(err)
		}
		return nil
	})
	d, err := readCl.GetMasterDetail(ctxT(t, 5*time.Second), &coordinatorv1.GetMasterDetailRequest{Name: "m",
		Consistency: &coordinatorv1.ReadConsistency{MinIndex: resp.GetIndex()}})
	if err != nil {
		t.Fatal(err)
	}
	var mon *coordinatorv1.Event
	for _, e := range d.GetDetail().GetEvents() {
		if e.GetType() == "+monitor" {
			mon = e
		}
	}
	if mon == nil || mon.GetActor() != "token ops" || !strings.HasPrefix(mon.GetActorAddress(), "127.0.0.1:") {
		t.Fatalf("+monitor event %v, want the actor token ops and the client's address", mon)
	}
	if strings.Contains(mon.String(), ops) {
		t.Fatal("the event holds the token")
	}
	// A node's certificate cannot drive a write itself.
	n2 := coordinatorv1.NewCoordinatorServiceClient(dialWith(t, leader.srv.GRPCAddr(), credentials.NewTLS(c.pki.clientTLS(c.pki.issue("n2", "")))))
	if _, err := n2.Remove(ctxT(t, 5*time.Second), &coordinatorv1.RemoveRequest{Name: "m"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("remove with a node certificate: %v", err)
	}
	// Reads and health need a token, except health.
	anon := coordinatorv1.NewCoordinatorServiceClient(dialWith(t, leader.srv.GRPCAddr(), credentials.NewTLS(c.pki.clientTLS("", ""))))
	if _, err := anon.ListMasters(ctxT(t, 5*time.Second), &coordinatorv1.ListMastersRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a read without a token: %v", err)
	}
}

func metadataBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}
