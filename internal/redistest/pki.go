package redistest

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/raftinel/raftinel/security"
)

// PKI is a CA with a redis-server certificate for 127.0.0.1 and a client
// certificate, written as PEM files in a temporary directory: what
// TLS-only servers and the coordinators that monitor them need.
type PKI struct {
	Dir    string
	CA     *security.CA
	CAFile string
	// ServerCert and ServerKey are the redis-servers' certificate
	// (security.CertRequest.Server, IP SAN 127.0.0.1), which they also
	// present to their master with tls-replication.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are a client certificate from the same CA.
	ClientCert, ClientKey string
}

// NewPKI creates a PKI in tb.TempDir.
func NewPKI(tb testing.TB) *PKI {
	tb.Helper()
	p := &PKI{Dir: tb.TempDir()}
	var err error
	if p.CA, err = security.NewCA("redistest CA"); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	p.CAFile = p.write(tb, "ca.pem", p.CA.CertPEM)
	p.ServerCert, p.ServerKey = p.issue(tb, "redis", security.CertRequest{Server: "redis", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	p.ClientCert, p.ClientKey = p.issue(tb, "client", security.CertRequest{Client: "raftinel"})
	return p
}

func (p *PKI) issue(tb testing.TB, name string, req security.CertRequest) (string, string) {
	tb.Helper()
	c, k, err := p.CA.Issue(req)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return p.write(tb, name+".pem", c), p.write(tb, name+"-key.pem", k)
}

func (p *PKI) write(tb testing.TB, name string, data []byte) string {
	tb.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	return path
}

// TLS is the WithTLS setting for a TLS-only server of this PKI that
// requires client certificates and replicates over TLS.
func (p *PKI) TLS() TLS {
	return TLS{CertFile: p.ServerCert, KeyFile: p.ServerKey, CAFile: p.CAFile, AuthClients: true, Replication: true,
		ClientCertFile: p.ClientCert, ClientKeyFile: p.ClientKey}
}
