package security

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
)

// NodeURIPrefix starts the URI SAN that names a node: raftinel://node/ID.
const NodeURIPrefix = "raftinel://node/"

// NodeURI is the URI SAN a node certificate for id carries.
func NodeURI(id string) *url.URL {
	return &url.URL{Scheme: "raftinel", Host: "node", Path: "/" + id}
}

// NodeID returns the node id a certificate names in its URI SAN, and
// whether it names one. A certificate with two node URIs names none: it is
// ambiguous, so it is never taken for a node.
func NodeID(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	id, n := "", 0
	for _, u := range cert.URIs {
		if u.Scheme == "raftinel" && u.Host == "node" && strings.HasPrefix(u.Path, "/") && len(u.Path) > 1 && !strings.Contains(u.Path[1:], "/") {
			id, n = u.Path[1:], n+1
		}
	}
	if n != 1 {
		return "", false
	}
	return id, true
}

// PeerNodeID is the node id of the peer of a verified TLS connection: the
// leaf of its verified chain must name a node. An unverified certificate
// (none was required) names nobody.
func PeerNodeID(st tls.ConnectionState) (string, bool) {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	return NodeID(st.VerifiedChains[0][0])
}

// PeerSubject describes the verified client certificate of a connection
// for the audit ("CN=alice"), or "" when there is none.
func PeerSubject(st tls.ConnectionState) string {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return ""
	}
	return st.VerifiedChains[0][0].Subject.String()
}

type material struct {
	cert *tls.Certificate
	leaf *x509.Certificate
	pool *x509.CertPool
}

// TLS is a node's TLS material, read from three PEM files and re-read by
// Reload. Every configuration it hands out reads the current material at
// each handshake, so a reload applies to new connections at once and
// leaves open ones alone.
type TLS struct {
	certFile, keyFile, caFile string
	node                      string
	cur                       atomic.Pointer[material]
}

// LoadTLS reads the node's certificate and key and the CA (PEM files).
// node, when not empty, is the node id the certificate must name, now and
// at every reload.
func LoadTLS(certFile, keyFile, caFile, node string) (*TLS, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("--tls-cert, --tls-key and --tls-ca go together: give all three or none")
	}
	t := &TLS{certFile: certFile, keyFile: keyFile, caFile: caFile, node: node}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the files again. On any error the material in use is kept.
func (t *TLS) Reload() error {
	m, err := loadMaterial(t.certFile, t.keyFile, t.caFile)
	if err != nil {
		return err
	}
	if t.node != "" {
		id, ok := NodeID(m.leaf)
		if !ok {
			return fmt.Errorf("--tls-cert %s names no node: a node certificate carries the URI SAN %s%s (coordinatorctl tls create-cert --node %s)", t.certFile, NodeURIPrefix, t.node, t.node)
		}
		if id != t.node {
			return fmt.Errorf("--tls-cert %s is node %q's certificate, but this node's --id is %q", t.certFile, id, t.node)
		}
	}
	t.cur.Store(m)
	return nil
}

func loadMaterial(certFile, keyFile, caFile string) (*material, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s: %w", certFile, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("--tls-cert %s is not signed by --tls-ca %s: %w", certFile, caFile, err)
	}
	return &material{cert: &cert, leaf: leaf, pool: pool}, nil
}

// NodeID is the node id the node's own certificate names, if any.
func (t *TLS) NodeID() (string, bool) { return NodeID(t.cur.Load().leaf) }

// Leaf is the node's own certificate now in use.
func (t *TLS) Leaf() *x509.Certificate { return t.cur.Load().leaf }

// Pool is the CA pool now in use.
func (t *TLS) Pool() *x509.CertPool { return t.cur.Load().pool }

func (t *TLS) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return t.cur.Load().cert, nil
}

// ServerConfig is for a listener clients reach (gRPC, Sentinel): it
// presents the node's certificate and verifies a client certificate when
// one is given (against the current CA), without requiring one.
func (t *TLS) ServerConfig() *tls.Config {
	return t.serverConfig(tls.VerifyClientCertIfGiven, nil)
}

// NodeServerConfig is for a listener only nodes reach (Raft): the client
// must present a certificate from the CA that names a node.
func (t *TLS) NodeServerConfig() *tls.Config {
	return t.serverConfig(tls.RequireAndVerifyClientCert, requireNode("client"))
}

func (t *TLS) serverConfig(auth tls.ClientAuthType, verify func(tls.ConnectionState) error) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := t.cur.Load()
		return &tls.Config{
			MinVersion:       tls.VersionTLS12,
			Certificates:     []tls.Certificate{*m.cert},
			ClientAuth:       auth,
			ClientCAs:        m.pool,
			VerifyConnection: verify,
			NextProtos:       base.NextProtos,
		}, nil
	}
	return base
}

// NodeClientConfig is for a node dialling another node (gRPC or Raft): it
// presents the node's certificate and accepts only a server whose
// certificate is from the current CA and names a node. The host name is
// not checked: the node URI is the identity, whatever address was dialled.
func (t *TLS) NodeClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: t.getClientCertificate,
		// Verified in VerifyConnection against the CA in use at the time
		// of the handshake, so that a reloaded CA applies at once.
		InsecureSkipVerify: true, //nolint:gosec // verified below
		VerifyConnection: func(st tls.ConnectionState) error {
			if len(st.PeerCertificates) == 0 {
				return errors.New("the peer presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range st.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := st.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: t.cur.Load().pool, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the peer's certificate is not from this cluster's CA: %w", err)
			}
			if _, ok := NodeID(leaf); !ok {
				return fmt.Errorf("the peer's certificate (%s) names no node (URI SAN %sID): it is not a node of this cluster", leaf.Subject, NodeURIPrefix)
			}
			return nil
		},
	}
}

func requireNode(who string) func(tls.ConnectionState) error {
	return func(st tls.ConnectionState) error {
		if _, ok := PeerNodeID(st); !ok {
			return fmt.Errorf("the %s certificate names no node (URI SAN %sID): only nodes may connect here", who, NodeURIPrefix)
		}
		return nil
	}
}
