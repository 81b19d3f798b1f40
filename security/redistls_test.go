package security

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// redisPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into a temporary directory.
type redisPKI struct {
	dir                                      string
	ca                                       *CA
	caFile, srvCert, srvKey, cliCert, cliKey string
	srvPair                                  tls.Certificate
}

func newRedisPKI(t *testing.T) *redisPKI {
	t.Helper()
	p := &redisPKI{dir: t.TempDir()}
	var err error
	if p.ca, err = NewCA("redis test CA"); err != nil {
		t.Fatal(err)
	}
	p.caFile = p.write(t, "ca.pem", p.ca.CertPEM)
	sc, sk, err := p.ca.Issue(CertRequest{Server: "redis1", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"redis.internal"}})
	if err != nil {
		t.Fatal(err)
	}
	p.srvCert, p.srvKey = p.write(t, "srv.pem", sc), p.write(t, "srv-key.pem", sk)
	if p.srvPair, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	cc, ck, err := p.ca.Issue(CertRequest{Client: "raftinel"})
	if err != nil {
		t.Fatal(err)
	}
	p.cliCert, p.cliKey = p.write(t, "cli.pem", cc), p.write(t, "cli-key.pem", ck)
	return p
}

func (p *redisPKI) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// handshake runs one TLS handshake between cfg (client) and a server with
// the PKI's server certificate that requires a client certificate from the
// CA; it returns the client certificate the server saw (nil when it
// refused the client) and the client's error.
func (p *redisPKI) handshake(t *testing.T, cfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	// Loopback TCP, not net.Pipe: an alert written to a peer that is no
	// longer reading must not block.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c1, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c1.SetDeadline(time.Now().Add(10 * time.Second))
	_ = c2.SetDeadline(time.Now().Add(10 * time.Second))
	srv := tls.Server(c2, &tls.Config{Certificates: []tls.Certificate{p.srvPair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	seen := make(chan *x509.Certificate, 1)
	go func() {
		var cert *x509.Certificate
		if srv.Handshake() == nil {
			cert = srv.ConnectionState().PeerCertificates[0]
		}
		c2.Close()
		seen <- cert
	}()
	cli := tls.Client(c1, cfg)
	err = cli.Handshake()
	if err == nil {
		// With TLS 1.3 the server judges the client's certificate after
		// the client's handshake is done: a read sees its verdict.
		_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = cli.Read(make([]byte, 1))
	}
	c1.Close()
	return <-seen, err
}

func TestRedisTLSHandshake(t *testing.T) {
	p := newRedisPKI(t)
	r, err := LoadRedisTLS(p.caFile, p.cliCert, p.cliKey, "")
	if err != nil {
		t.Fatal(err)
	}
	seen, err := p.handshake(t, r.ClientConfig("127.0.0.1"))
	if err != nil || seen == nil || seen.Subject.CommonName != "raftinel" {
		t.Fatalf("handshake with 127.0.0.1: %v, client certificate seen %v", err, seen)
	}
	// The host must be named by the server's certificate.
	if _, err := p.handshake(t, r.ClientConfig("10.1.2.3")); err == nil || !strings.Contains(err.Error(), "10.1.2.3") {
		t.Fatalf("a certificate that does not name the host passed: %v", err)
	}
	// Unless the server name says which name to check.
	named, err := LoadRedisTLS(p.caFile, p.cliCert, p.cliKey, "redis.internal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.handshake(t, named.ClientConfig("10.1.2.3")); err != nil {
		t.Fatalf("with --redis-tls-server-name redis.internal: %v", err)
	}
	// A server from another CA is refused.
	other, err := NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherFile := p.write(t, "other-ca.pem", other.CertPEM)
	stranger, err := LoadRedisTLS(otherFile, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.handshake(t, stranger.ClientConfig("127.0.0.1")); err == nil || !strings.Contains(err.Error(), "--redis-tls-ca") {
		t.Fatalf("a server certificate from another CA passed: %v", err)
	}
	// Without a client certificate a server that requires one refuses.
	anon, err := LoadRedisTLS(p.caFile, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if seen, _ := p.handshake(t, anon.ClientConfig("127.0.0.1")); seen != nil {
		t.Fatal("the server accepted a client without a certificate")
	}
}

func TestRedisTLSReload(t *testing.T) {
	p := newRedisPKI(t)
	r, err := LoadRedisTLS(p.caFile, p.cliCert, p.cliKey, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.ClientConfig("127.0.0.1") // handed out once, as to a connection pool
	first := r.Leaf().SerialNumber
	cc, ck, err := p.ca.Issue(CertRequest{Client: "raftinel"})
	if err != nil {
		t.Fatal(err)
	}
	p.write(t, "cli.pem", cc)
	p.write(t, "cli-key.pem", ck)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	seen, err := p.handshake(t, cfg)
	if err != nil || seen == nil || seen.SerialNumber.Cmp(first) == 0 || seen.SerialNumber.Cmp(r.Leaf().SerialNumber) != 0 {
		t.Fatalf("after a reload the next handshake presented %v (err %v), want the new certificate %v", seen, err, r.Leaf().SerialNumber)
	}
	// A broken file leaves the material in use alone.
	p.write(t, "ca.pem", []byte("garbage"))
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("reload of a broken CA: %v", err)
	}
	if _, err := p.handshake(t, cfg); err != nil {
		t.Fatalf("after a failed reload: %v", err)
	}
}

func TestLoadRedisTLSErrors(t *testing.T) {
	p := newRedisPKI(t)
	notPEM := p.write(t, "not.pem", []byte("hello"))
	for name, tc := range map[string]struct {
		ca, cert, key, server, want string
	}{
		"no CA":          {cert: p.cliCert, key: p.cliKey, want: "need --redis-tls-ca"},
		"cert, no key":   {ca: p.caFile, cert: p.cliCert, want: "without --redis-tls-key"},
		"key, no cert":   {ca: p.caFile, key: p.cliKey, want: "without --redis-tls-cert"},
		"missing CA":     {ca: filepath.Join(p.dir, "none.pem"), want: "--redis-tls-ca: open"},
		"CA not PEM":     {ca: notPEM, want: "no PEM certificate"},
		"cert not PEM":   {ca: p.caFile, cert: notPEM, key: p.cliKey, want: "--redis-tls-cert " + notPEM},
		"key of another": {ca: p.caFile, cert: p.cliCert, key: p.srvKey, want: "private key does not match"},
		"server, no CA":  {server: "redis.internal", want: "need --redis-tls-ca"},
	} {
		if _, err := LoadRedisTLS(tc.ca, tc.cert, tc.key, tc.server); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// A server certificate (for a redis-server) serves and dials, but never
// names a node.
func TestIssueServerCertificate(t *testing.T) {
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(CertRequest{Server: "redis1", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := NodeID(cert); ok {
		t.Fatalf("a server certificate names node %q", id)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Fatalf("key usages %v, want server and client auth", cert.ExtKeyUsage)
	}
	if _, _, err := ca.Issue(CertRequest{Server: "a", Client: "b"}); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("two kinds at once: %v", err)
	}
}
