package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that can issue node and client
// certificates: for development clusters and tests.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
}

// CertRequest describes a certificate to issue: exactly one of Node (a
// node id: the certificate carries raftinel://node/ID and may serve and
// dial), Client (a name: the certificate may only dial) and Server (a name:
// a server that is not a node, such as a monitored redis-server, which
// serves and, with tls-replication, dials its master; it names no node, so
// it never passes for one).
type CertRequest struct {
	Node, Client, Server string
	IPs                  []net.IP
	DNSNames             []string
	Validity             time.Duration // default one year
}

// NewCA creates a CA named name, valid for ten years.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"Raftinel"}},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// KeyPEM is the CA's private key in PEM.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// Issue creates a key and a certificate signed by the CA, both in PEM.
func (ca *CA) Issue(req CertRequest) (certPEM, keyPEM []byte, err error) {
	kinds := 0
	for _, k := range []string{req.Node, req.Client, req.Server} {
		if k != "" {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, nil, errors.New("give exactly one of --node ID, --client NAME and --server NAME")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	validity := req.Validity
	if validity <= 0 {
		validity = 365 * 24 * time.Hour
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: req.IPs, DNSNames: req.DNSNames,
	}
	switch {
	case req.Node != "":
		tmpl.Subject = pkix.Name{CommonName: req.Node, OrganizationalUnit: []string{"node"}, Organization: []string{"Raftinel"}}
		tmpl.URIs = append(tmpl.URIs, NodeURI(req.Node))
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case req.Server != "":
		tmpl.Subject = pkix.Name{CommonName: req.Server, OrganizationalUnit: []string{"server"}, Organization: []string{"Raftinel"}}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	default:
		tmpl.Subject = pkix.Name{CommonName: req.Client, OrganizationalUnit: []string{"client"}, Organization: []string{"Raftinel"}}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// CA file names in a directory made by CreateCADir.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CreateCADir creates a CA in dir (ca.pem, ca-key.pem), refusing to
// overwrite an existing one.
func CreateCADir(dir string) (certPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Stat(p); err == nil {
			return "", fmt.Errorf("%s exists already: refusing to replace a CA (remove it first to start over)", p)
		}
	}
	ca, err := NewCA("Raftinel development CA")
	if err != nil {
		return "", err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(certPath, ca.CertPEM, 0o644); err != nil {
		return "", err
	}
	return certPath, nil
}

// LoadCADir reads the CA CreateCADir wrote in dir.
func LoadCADir(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("no CA in %s (run coordinatorctl tls create-ca --dir %s first): %w", dir, dir, err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("the CA's key: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s or %s is not PEM", CACertFile, CAKeyFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CAKeyFile, err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// IssueToDir issues a certificate with the CA in dir and writes it there
// as NAME.pem and NAME-key.pem (NAME: the node id, client or server name),
// replacing older ones (a renewal). It returns both paths.
func IssueToDir(dir string, req CertRequest) (certPath, keyPath string, err error) {
	ca, err := LoadCADir(dir)
	if err != nil {
		return "", "", err
	}
	name := req.Node + req.Client + req.Server // exactly one is set (Issue checks)
	if err := validFileName(name); err != nil {
		return "", "", err
	}
	certPEM, keyPEM, err := ca.Issue(req)
	if err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := writeAtomic(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeAtomic(certPath, certPEM, 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

func validFileName(name string) error {
	if name == "" || len(name) > 64 || name == "ca" || name == "ca-key" {
		return fmt.Errorf("name %q: want 1 to 64 of [A-Za-z0-9._-], not ca", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("name %q: want 1 to 64 of [A-Za-z0-9._-]", name)
		}
	}
	if name[0] == '.' {
		return fmt.Errorf("name %q must not start with a dot", name)
	}
	return nil
}

// writeAtomic replaces path in one rename, so a node reloading on SIGHUP
// never reads half a file.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
