package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/raftinel/raftinel/security"
)

// create-cert --server issues a certificate for a redis-server: it needs
// the addresses the server is reached at and never names a node.
func TestCreateServerCert(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, nil, "tls", "create-ca", "--dir", dir); r.code != 0 {
		t.Fatalf("create-ca: %+v", r)
	}
	checkFailure(t, runCLI(t, nil, "tls", "create-cert", "--dir", dir, "--server", "redis"), 2, "--ip and/or --dns")
	checkFailure(t, runCLI(t, nil, "tls", "create-cert", "--dir", dir, "--server", "redis", "--node", "n1", "--ip", "127.0.0.1"), 2,
		"exactly one of --node ID, --client NAME and --server NAME")
	if r := runCLI(t, nil, "tls", "create-cert", "--dir", dir, "--server", "redis", "--ip", "127.0.0.1"); r.code != 0 {
		t.Fatalf("create-cert --server: %+v", r)
	}
	// Its key pair loads, and as a node certificate it is refused.
	cert, key := filepath.Join(dir, "redis.pem"), filepath.Join(dir, "redis-key.pem")
	if _, err := os.Stat(key); err != nil {
		t.Fatal(err)
	}
	if _, err := security.LoadTLS(cert, key, filepath.Join(dir, "ca.pem"), "redis"); err == nil {
		t.Fatal("a server certificate was taken for node redis's")
	}
	if _, err := security.LoadRedisTLS(filepath.Join(dir, "ca.pem"), cert, key, ""); err != nil {
		t.Fatalf("as a Redis client certificate: %v", err)
	}
}
