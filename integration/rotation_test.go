package integration

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/security"
)

// servedCert is the certificate a node presents on a new TLS connection to
// addr, trusting any CA in caFile.
func servedCert(caFile, addr string) (*x509.Certificate, error) {
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func certSerial(t *testing.T, path string) *big.Int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitServes waits until every node presents, on new gRPC and Sentinel
// connections, the certificate with the serial want gives.
func (s *secured) waitServes(t *testing.T, what string, want func(n *node) *big.Int) {
	t.Helper()
	caFile := filepath.Join(s.certs, "ca.pem")
	for _, n := range s.nodes {
		for _, addr := range []string{n.grpcAddr, n.sentinelAddr} {
			testwait.For(t, waitTimeout, n.id+" serving "+what+" on "+addr, func() error {
				c, err := servedCert(caFile, addr)
				if err != nil {
					return err
				}
				if c.SerialNumber.Cmp(want(n)) != 0 {
					return fmt.Errorf("serves serial %x, want %x", c.SerialNumber, want(n))
				}
				return nil
			})
		}
	}
}

func (s *secured) hup(t *testing.T) {
	t.Helper()
	for _, n := range s.nodes {
		if err := n.process().cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP %s: %v", n.id, err)
		}
	}
}

// commits monitors a new master (a real redis-server) through the leader
// and waits until every node lists it: the cluster has a leader and
// commits. Then it restarts n3, whose new Raft and gRPC connections to the
// others must pass with the certificates now in use, and commits again
// through it.
func (s *secured) commits(t *testing.T, name string) {
	t.Helper()
	m := redistest.Start(t)
	mustCtl(t, s.ctlArgs(operateToken, "monitor", name, m.Addr(), "--quorum", "2", "--down-after", "30s")...)
	s.waitLists(t, name)
	n3 := s.nodes[2]
	n3.kill()
	if err := n3.launch(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, waitTimeout, "restarted n3 back in the cluster", func() error {
		resp := &coordinatorv1.StatusResponse{}
		if err := ctlJSON(resp, append(s.ctlArgs(readToken, "status"), "--addr", n3.grpcAddr)...); err != nil {
			return err
		}
		for _, st := range resp.GetNodes() {
			if st.GetId() == "n3" && st.GetLeaderId() != "" {
				return nil
			}
		}
		return fmt.Errorf("n3 knows no leader: %v", resp.GetNodes())
	})
	m2 := redistest.Start(t)
	mustCtl(t, append(s.ctlArgs(operateToken, "monitor", name+"-after-restart", m2.Addr(), "--quorum", "2", "--down-after", "30s"), "--addr", n3.grpcAddr)...)
	s.waitLists(t, name+"-after-restart")
}

func (s *secured) waitLists(t *testing.T, name string) {
	t.Helper()
	for _, n := range s.nodes {
		testwait.For(t, waitTimeout, n.id+" lists "+name, func() error {
			resp := &coordinatorv1.ListMastersResponse{}
			if err := ctlJSON(resp, append(s.ctlArgs(readToken, "masters"), "--addr", n.grpcAddr)...); err != nil {
				return err
			}
			for _, m := range resp.GetMasters() {
				if m.GetName() == name {
					return nil
				}
			}
			return fmt.Errorf("masters %v", resp.GetMasters())
		})
	}
}

// Certificate rotation on running coordinator processes, by SIGHUP only:
// first new node certificates from the same CA, then a move to a new CA
// through a bundle of both (new certificates from the new CA, then the old
// CA dropped). After each step every node serves its new certificate on
// new gRPC and Sentinel connections, and the cluster keeps a leader and
// commits, also through a node restarted with the new material.
func TestCertificateRotationAcrossProcesses(t *testing.T) {
	redistest.Require(t)
	s := startSecuredCluster(t)
	caFile := filepath.Join(s.certs, "ca.pem")
	nodeCert := func(n *node) string { return filepath.Join(s.certs, n.id+".pem") }
	s.waitServes(t, "its first certificate", func(n *node) *big.Int { return certSerial(t, nodeCert(n)) })
	first := map[string]*big.Int{}
	for _, n := range s.nodes {
		first[n.id] = certSerial(t, nodeCert(n))
	}

	// 1. New certificates from the same CA.
	for _, n := range s.nodes {
		mustCtl(t, "tls", "create-cert", "--dir", s.certs, "--node", n.id, "--ip", "127.0.0.1")
	}
	s.hup(t)
	s.waitServes(t, "a renewed certificate", func(n *node) *big.Int {
		got := certSerial(t, nodeCert(n))
		if got.Cmp(first[n.id]) == 0 {
			t.Fatalf("%s: create-cert kept the serial", n.id)
		}
		return got
	})
	s.commits(t, "after-renewal")

	// 2. A new CA: trust both, then serve certificates from the new one.
	oldCA, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	newCA, err := security.NewCA("rotated CA")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, caFile, append(append([]byte{}, oldCA...), newCA.CertPEM...), 0o644)
	s.hup(t)
	for _, n := range s.nodes {
		certPEM, keyPEM, err := newCA.Issue(security.CertRequest{Node: n.id, IPs: []net.IP{net.ParseIP("127.0.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(s.certs, n.id+"-key.pem"), keyPEM, 0o600)
		writeFile(t, nodeCert(n), certPEM, 0o644)
	}
	s.hup(t)
	s.waitServes(t, "a certificate from the new CA", func(n *node) *big.Int { return certSerial(t, nodeCert(n)) })
	for _, n := range s.nodes {
		c, err := servedCert(caFile, n.grpcAddr)
		if err != nil {
			t.Fatal(err)
		}
		if c.Issuer.CommonName != "rotated CA" {
			t.Fatalf("%s serves a certificate issued by %q", n.id, c.Issuer.CommonName)
		}
	}
	s.commits(t, "during-ca-rotation")

	// 3. Drop the old CA.
	writeFile(t, caFile, newCA.CertPEM, 0o644)
	s.hup(t)
	s.commits(t, "after-ca-rotation")
}
