package security

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAuthFile(t *testing.T) {
	hashed := HashSecret("operator-secret-0123456789")
	ts, err := ParseAuthFile(strings.NewReader(`
# name role secret
reader   read    reader-secret-0123456789   # a comment
ops      operate ` + hashed + `
root     admin   root-secret-0123456789
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 {
		t.Fatalf("%d tokens", len(ts))
	}
	for secret, want := range map[string]string{
		"reader-secret-0123456789":   "reader/read",
		"operator-secret-0123456789": "ops/operate",
		"root-secret-0123456789":     "root/admin",
	} {
		tok, ok := ts.Lookup(secret)
		if !ok || tok.Name+"/"+tok.Role.String() != want {
			t.Errorf("%q: %v %v, want %s", secret, tok, ok, want)
		}
	}
	for _, bad := range []string{"", hashed, "reader-secret-012345678", "Reader-secret-0123456789"} {
		if tok, ok := ts.Lookup(bad); ok {
			t.Errorf("%q matched %s", bad, tok.Name)
		}
	}
}

func TestParseAuthFileErrors(t *testing.T) {
	for name, tc := range map[string]struct{ text, want string }{
		"fields":      {"a read", "want NAME ROLE SECRET"},
		"role":        {"a write secret-0123456789abc", "want read, operate or admin"},
		"short":       {"a read short", "shorter than 16"},
		"hex":         {"a read sha256:zz", "64 hex digits"},
		"dup name":    {"a read secret-0123456789abc\na admin secret-0123456789abd", "appears twice"},
		"dup secret":  {"a read secret-0123456789abc\nb admin secret-0123456789abc", "same secret as a"},
		"bad name":    {"a/b read secret-0123456789abc", "token name"},
		"hashed dup":  {"a read secret-0123456789abc\nb read " + HashSecret("secret-0123456789abc"), "same secret"},
		"line number": {"\n\nx read y", "line 3"},
	} {
		_, err := ParseAuthFile(strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret-0123456789") {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestAuthFileReloadKeepsOldOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(path, []byte("a read secret-0123456789abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAuthFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Lookup("secret-0123456789abc"); !ok {
		t.Fatal("token not found")
	}
	_ = os.WriteFile(path, []byte("a read\n"), 0o600)
	if err := a.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if _, ok := a.Lookup("secret-0123456789abc"); !ok {
		t.Fatal("a failed reload dropped the tokens in force")
	}
	_ = os.WriteFile(path, []byte("b read other-secret-0123456789\n"), 0o600)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Lookup("secret-0123456789abc"); ok {
		t.Fatal("a revoked token still works")
	}
}

func TestNodeID(t *testing.T) {
	u := func(s string) *url.URL { x, _ := url.Parse(s); return x }
	for _, tc := range []struct {
		uris []*url.URL
		id   string
		ok   bool
	}{
		{[]*url.URL{NodeURI("n1")}, "n1", true},
		{[]*url.URL{u("raftinel://node/n1")}, "n1", true},
		{nil, "", false},
		{[]*url.URL{u("raftinel://client/n1")}, "", false},
		{[]*url.URL{u("spiffe://node/n1")}, "", false},
		{[]*url.URL{u("raftinel://node/")}, "", false},
		{[]*url.URL{u("raftinel://node/a/b")}, "", false},
		{[]*url.URL{NodeURI("n1"), NodeURI("n2")}, "", false},
	} {
		id, ok := NodeID(&x509.Certificate{URIs: tc.uris})
		if id != tc.id || ok != tc.ok {
			t.Errorf("%v: %q %v, want %q %v", tc.uris, id, ok, tc.id, tc.ok)
		}
	}
}

func TestIssueNodeAndClientCertificates(t *testing.T) {
	dir := t.TempDir()
	caPath, err := CreateCADir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateCADir(dir); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("a second CA over the first: %v", err)
	}
	nodeCert, nodeKey, err := IssueToDir(dir, CertRequest{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	clientCert, _, err := IssueToDir(dir, CertRequest{Client: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := IssueToDir(dir, CertRequest{Node: "n1", Client: "alice"}); err == nil {
		t.Fatal("both --node and --client accepted")
	}
	if fi, err := os.Stat(nodeKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	tl, err := LoadTLS(nodeCert, nodeKey, caPath, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := tl.NodeID(); !ok || id != "n1" {
		t.Fatalf("node id %q %v", id, ok)
	}
	if _, err := LoadTLS(nodeCert, nodeKey, caPath, "n2"); err == nil || !strings.Contains(err.Error(), `node "n1"'s certificate`) {
		t.Fatalf("n1's certificate for node n2: %v", err)
	}
	b, _ := os.ReadFile(clientCert)
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := NodeID(c); ok || c.Subject.CommonName != "alice" {
		t.Fatalf("client certificate names a node or not alice: %v %v", c.URIs, c.Subject)
	}
	other := t.TempDir()
	if _, err := CreateCADir(other); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTLS(nodeCert, nodeKey, filepath.Join(other, CACertFile), "n1"); err == nil || !strings.Contains(err.Error(), "not signed by") {
		t.Fatalf("a certificate from another CA: %v", err)
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	id := Identity{Kind: KindToken, Name: "alice", Role: RoleOperate, Subject: "CN=alice,O=x", From: "10.0.0.5:4242"}
	got, err := DecodeIdentity(id.Encode())
	if err != nil || got != id {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := DecodeIdentity("kind=root"); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if id.String() != "token alice (cert CN=alice,O=x) from 10.0.0.5:4242" {
		t.Fatalf("%s", id)
	}
}
