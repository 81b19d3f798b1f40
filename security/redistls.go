package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
)

// RedisTLS is the TLS material a node uses to reach the monitored Redis
// instances (the client side of Sentinel's tls-replication): the CA their
// certificates must come from, and an optional client certificate for
// servers that check clients (tls-auth-clients, on by default in Redis).
// Reload re-reads the files; every configuration handed out reads the
// material in use at each handshake, so a reload applies to the next
// connection and leaves open ones alone.
type RedisTLS struct {
	caFile, certFile, keyFile string
	serverName                string
	cur                       atomic.Pointer[redisMaterial]
}

type redisMaterial struct {
	pool *x509.CertPool
	cert *tls.Certificate // nil: no client certificate
	leaf *x509.Certificate
}

// LoadRedisTLS reads the CA and, when given, the client certificate and
// key (PEM). serverName, when not empty, is the name every instance's
// certificate must carry, in place of the host each instance is dialled by.
func LoadRedisTLS(caFile, certFile, keyFile, serverName string) (*RedisTLS, error) {
	switch {
	case caFile == "" && (certFile != "" || keyFile != "" || serverName != ""):
		return nil, errors.New("--redis-tls-cert, --redis-tls-key and --redis-tls-server-name need --redis-tls-ca: the CA that signed the Redis servers' certificates")
	case caFile == "":
		return nil, errors.New("--redis-tls-ca is empty")
	case certFile != "" && keyFile == "":
		return nil, fmt.Errorf("--redis-tls-cert %s is given without --redis-tls-key: give both (the client certificate and its key) or neither", certFile)
	case certFile == "" && keyFile != "":
		return nil, fmt.Errorf("--redis-tls-key %s is given without --redis-tls-cert: give both (the client certificate and its key) or neither", keyFile)
	}
	r := &RedisTLS{caFile: caFile, certFile: certFile, keyFile: keyFile, serverName: serverName}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the files again. On any error the material in use is kept.
func (r *RedisTLS) Reload() error {
	caPEM, err := os.ReadFile(r.caFile)
	if err != nil {
		return fmt.Errorf("--redis-tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("--redis-tls-ca %s: no PEM certificate in it", r.caFile)
	}
	m := &redisMaterial{pool: pool}
	if r.certFile != "" {
		cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
		if err != nil {
			return fmt.Errorf("--redis-tls-cert %s / --redis-tls-key %s: %w", r.certFile, r.keyFile, err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return fmt.Errorf("--redis-tls-cert %s: %w", r.certFile, err)
		}
		m.cert, m.leaf = &cert, leaf
	}
	r.cur.Store(m)
	return nil
}

// Leaf is the client certificate in use, or nil when there is none.
func (r *RedisTLS) Leaf() *x509.Certificate { return r.cur.Load().leaf }

// ClientConfig is the configuration for dialling the instance at host (an
// address's host part, a name or an IP). The server's certificate must
// chain to the CA in use at the time of the handshake and name host (or
// the configured server name: an IP is matched against the certificate's
// IP SANs). The client certificate in use, if any, is presented.
func (r *RedisTLS) ClientConfig(host string) *tls.Config {
	name := host
	if r.serverName != "" {
		name = r.serverName
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := r.cur.Load().cert; c != nil {
				return c, nil
			}
			// No certificate: a server that requires one refuses the
			// handshake, and says so.
			return &tls.Certificate{}, nil
		},
		// Verified in VerifyConnection against the CA in use at the time
		// of the handshake, so that a reloaded CA applies at once.
		InsecureSkipVerify: true, //nolint:gosec // verified below
		VerifyConnection: func(st tls.ConnectionState) error {
			if len(st.PeerCertificates) == 0 {
				return fmt.Errorf("redis %s presented no certificate", name)
			}
			inter := x509.NewCertPool()
			for _, c := range st.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := st.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: r.cur.Load().pool, Intermediates: inter, DNSName: name,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("redis server certificate (%s) refused (check --redis-tls-ca and --redis-tls-server-name): %w", leaf.Subject, err)
			}
			return nil
		},
	}
	// SNI carries names only, never IP addresses.
	if net.ParseIP(name) == nil {
		cfg.ServerName = name
	}
	return cfg
}
