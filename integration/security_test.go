package integration

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// The tokens of the secured cluster's auth file.
const (
	readToken    = "read-token-0123456789abcdef"
	operateToken = "operate-token-0123456789abcdef"
	adminToken   = "admin-token-0123456789abcdef"
)

// secured is a 3-node cluster started with TLS and an auth file, with the
// certificates coordinatorctl tls made.
type secured struct {
	*cluster
	certs, authFile string
}

// startSecuredCluster makes a CA and node certificates with coordinatorctl
// tls, writes an auth file and founds a 3-node cluster with both.
func startSecuredCluster(t *testing.T) *secured {
	t.Helper()
	dir := t.TempDir()
	s := &secured{certs: filepath.Join(dir, "certs"), authFile: filepath.Join(dir, "auth")}
	mustCtl(t, "tls", "create-ca", "--dir", s.certs)
	for _, id := range []string{"n1", "n2", "n3"} {
		mustCtl(t, "tls", "create-cert", "--dir", s.certs, "--node", id, "--ip", "127.0.0.1")
	}
	mustCtl(t, "tls", "create-cert", "--dir", s.certs, "--client", "alice")
	s.writeAuth(t, "reader read "+readToken, "ops operate "+operateToken, "root admin "+adminToken)

	ports := freeAddrs(t, 9)
	var boot []string
	for i := range 3 {
		boot = append(boot, fmt.Sprintf("n%d=%s", i+1, ports[i]))
	}
	s.cluster = &cluster{t: t}
	for i := range 3 {
		id := fmt.Sprintf("n%d", i+1)
		n := newNode(t, dir, id, ports[i], ports[3+i], ports[6+i], "--bootstrap", strings.Join(boot, ","),
			"--tls-cert", filepath.Join(s.certs, id+".pem"), "--tls-key", filepath.Join(s.certs, id+"-key.pem"),
			"--tls-ca", filepath.Join(s.certs, "ca.pem"), "--auth-file", s.authFile)
		s.nodes = append(s.nodes, n)
	}
	for _, n := range s.nodes {
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, waitTimeout, "secured cluster formed", func() error {
		resp := &coordinatorv1.ListMembersResponse{}
		if err := ctlJSON(resp, s.ctlArgs(readToken, "members")...); err != nil {
			return err
		}
		if len(resp.GetMembers()) != 3 || resp.GetLeaderId() == "" {
			return fmt.Errorf("members %v, leader %q", resp.GetMembers(), resp.GetLeaderId())
		}
		for _, m := range resp.GetMembers() {
			if m.GetGrpcAddress() == "" {
				return fmt.Errorf("%s has not registered", m.GetId())
			}
		}
		return nil
	})
	return s
}

func (s *secured) writeAuth(t *testing.T, lines ...string) {
	t.Helper()
	if err := os.WriteFile(s.authFile, []byte("# NAME ROLE SECRET\n"+strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ctlArgs are coordinatorctl's arguments for a call with a token through
// every node.
func (s *secured) ctlArgs(token string, args ...string) []string {
	return append([]string{"--addr", addrs(s.nodes...), "--tls-ca", filepath.Join(s.certs, "ca.pem"), "--token", token}, args...)
}

func (s *secured) tlsConfig(t *testing.T, client string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(s.certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if client != "" {
		c, err := tls.LoadX509KeyPair(filepath.Join(s.certs, client+".pem"), filepath.Join(s.certs, client+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// The forged-vote attack of the issue, against three processes and a
// healthy real master with down-after 5 s: a process with no certificate,
// a client certificate, a certificate from another CA or the certificate
// of n2 proposes down votes for n1..n3. Every proposal is refused and the
// master is neither judged down nor failed over.
func TestSecuredClusterRefusesForgedVotes(t *testing.T) {
	s := startSecuredCluster(t)
	m := redistest.Start(t)
	r := redistest.Start(t, redistest.ReplicaOf(m.Addr()))
	redistest.WaitReplicating(t, r, m)
	testwait.For(t, waitTimeout, "monitor mymaster", func() error {
		r, err := ctl(s.ctlArgs(operateToken, "monitor", "mymaster", m.Addr(), "--quorum", "2", "--down-after", "5s")...)
		if err != nil || (r.code != 0 && r.code != 4) {
			return fmt.Errorf("%v %v", r, err)
		}
		return nil
	})

	otherCA := filepath.Join(t.TempDir(), "other")
	mustCtl(t, "tls", "create-ca", "--dir", otherCA)
	mustCtl(t, "tls", "create-cert", "--dir", otherCA, "--node", "n1", "--ip", "127.0.0.1")
	other, err := tls.LoadX509KeyPair(filepath.Join(otherCA, "n1.pem"), filepath.Join(otherCA, "n1-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	otherCfg := s.tlsConfig(t, "")
	otherCfg.Certificates = []tls.Certificate{other}

	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		code  codes.Code
		votes []string
	}{
		{"plaintext", insecure.NewCredentials(), codes.Unavailable, []string{"n1", "n2", "n3"}},
		{"TLS without a certificate", credentials.NewTLS(s.tlsConfig(t, "")), codes.PermissionDenied, []string{"n1", "n2", "n3"}},
		{"a client certificate of the cluster's CA", credentials.NewTLS(s.tlsConfig(t, "alice")), codes.PermissionDenied, []string{"n1", "n2", "n3"}},
		{"n1's certificate from another CA", credentials.NewTLS(otherCfg), codes.Unavailable, []string{"n1", "n2", "n3"}},
		{"n2's certificate", credentials.NewTLS(s.tlsConfig(t, "n2")), codes.PermissionDenied, []string{"n1", "n3"}},
	} {
		for _, n := range s.nodes {
			conn, err := grpc.NewClient(n.grpcAddr, grpc.WithTransportCredentials(tc.creds))
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range tc.votes {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := clusterv1.NewClusterServiceClient(conn).Propose(ctx, &clusterv1.ProposeRequest{Command: &fsmv1.Command{
					Kind: &fsmv1.Command_ReportVote{ReportVote: &fsmv1.ReportVote{Master: "mymaster", NodeId: id, Address: m.Addr(), Down: true, Reason: "forged"}}}})
				cancel()
				if status.Code(err) != tc.code {
					t.Errorf("%s: vote for %s sent to %s: %v, want %v", tc.name, id, n.id, err, tc.code)
				}
			}
			conn.Close()
		}
	}
	// Over the next down-after, the master stays up in every node's view.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range s.nodes {
			d := &coordinatorv1.GetMasterDetailResponse{}
			if err := ctlJSON(d, append(s.ctlArgs(readToken, "master", "mymaster"), "--addr", n.grpcAddr)...); err != nil {
				t.Fatal(err)
			}
			got := d.GetDetail()
			if got.GetMaster().GetEpoch() != 0 || got.GetOdown() {
				t.Fatalf("%s: the master was judged down or failed over: %v", n.id, protojson.Format(d))
			}
			for _, v := range got.GetVotes() {
				if v.GetDown() {
					t.Fatalf("%s: a down vote was committed: %v", n.id, v)
				}
			}
		}
		time.Sleep(pollInterval) // a poll interval: checking that nothing happens over a window
	}
}

// Roles and tokens through coordinatorctl: no token and a read token are
// refused a failover with a clear message and exit code 6, writes sent to
// a follower are forwarded as the user's, and a token removed from the
// auth file stops working after SIGHUP, without a restart.
func TestSecuredClusterTokensAndRoles(t *testing.T) {
	s := startSecuredCluster(t)
	caArgs := []string{"--addr", addrs(s.nodes...), "--tls-ca", filepath.Join(s.certs, "ca.pem")}

	r, err := ctl(append(caArgs, "masters")...)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 6 || !strings.Contains(r.stderr, "needs a token") {
		t.Fatalf("no token: %v", r)
	}
	r, err = ctl(s.ctlArgs("not-a-token-0123456789", "masters")...)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 6 || !strings.Contains(r.stderr, "token is not valid") {
		t.Fatalf("a wrong token: %v", r)
	}
	r, err = ctl(append([]string{"--addr", addrs(s.nodes...)}, "status")...)
	if err != nil {
		t.Fatal(err)
	}
	if r.code == 0 {
		t.Fatalf("a plaintext client was served: %v", r)
	}
	// Writes need operate; through each node, so followers forward them.
	for i, n := range s.nodes {
		name := fmt.Sprintf("m%d", i)
		args := []string{"--addr", n.grpcAddr, "--tls-ca", filepath.Join(s.certs, "ca.pem"), "--token"}
		r, err := ctl(append(args, readToken, "monitor", name, "127.0.0.1:1", "--quorum", "2")...)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 6 || !strings.Contains(r.stderr, "needs the operate role; token reader has the read role") {
			t.Fatalf("monitor with a read token via %s: %v", n.id, r)
		}
		// Retried while the cluster elects a leader (a loaded machine may
		// cost one); exit 4 (already exists) means an earlier try won.
		testwait.For(t, waitTimeout, "monitor "+name+" via "+n.id, func() error {
			r, err := ctl(append(args, operateToken, "monitor", name, "127.0.0.1:1", "--quorum", "2")...)
			if err != nil || (r.code != 0 && r.code != 4) {
				return fmt.Errorf("%v %v", r, err)
			}
			return nil
		})
		r, err = ctl(append(args, operateToken, "remove-node", "n9")...)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 6 || !strings.Contains(r.stderr, "needs the admin role") {
			t.Fatalf("remove-node with an operate token via %s: %v", n.id, r)
		}
	}
	r, err = ctl(s.ctlArgs(readToken, "failover", "m0")...)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 6 || !strings.Contains(r.stderr, "needs the operate role") {
		t.Fatalf("failover with a read token: %v", r)
	}
	// Revoke the read token, add another; SIGHUP every node.
	s.writeAuth(t, "ops operate "+operateToken, "root admin "+adminToken, "reader2 read sha256:"+sha256Hex("second-read-token-0123456789"))
	for _, n := range s.nodes {
		if err := n.process().cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range s.nodes {
		args := []string{"--addr", n.grpcAddr, "--tls-ca", filepath.Join(s.certs, "ca.pem"), "--token"}
		testwait.For(t, waitTimeout, n.id+" reloaded its tokens", func() error {
			r, err := ctl(append(args, readToken, "masters")...)
			if err != nil {
				return err
			}
			if r.code != 6 {
				return fmt.Errorf("the revoked token still works: %v", r)
			}
			return nil
		})
		mustCtl(t, append(args, "second-read-token-0123456789", "masters")...)
	}
	if tail := tailFile(s.nodes[0].logPath, 400); strings.Contains(tail, readToken) || strings.Contains(tail, operateToken) {
		t.Fatal("a token appears in a node's log")
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
