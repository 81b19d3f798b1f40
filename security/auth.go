package security

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
)

// Role is what a token may do. Each role includes the ones below it.
type Role int

// The roles, weakest first. RoleNone is no role at all.
const (
	RoleNone Role = iota
	RoleRead
	RoleOperate
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleRead:
		return "read"
	case RoleOperate:
		return "operate"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole reads read, operate or admin.
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "operate":
		return RoleOperate, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q: want read, operate or admin", s)
}

// SentinelAccess is what a Sentinel-protocol user may do.
type SentinelAccess int

// Sentinel users' rights: discovery only, or every command.
const (
	SentinelNone SentinelAccess = iota
	SentinelRead
	SentinelAdmin
)

// Token is one line of the auth file: an API token (Role) or a
// Sentinel-protocol ACL user (Sentinel, with the roles sentinel-read and
// sentinel-admin). Only the SHA-256 of its secret is kept.
type Token struct {
	Name     string
	Role     Role
	Sentinel SentinelAccess
	hash     [sha256.Size]byte
}

// Tokens is the parsed auth file.
type Tokens []Token

// ParseAuthFile reads "NAME ROLE SECRET" lines; SECRET may be written as
// sha256:HEX (the SHA-256 of the secret in hex); "#" starts a comment.
// Errors name the line but never echo a secret.
func ParseAuthFile(r io.Reader) (Tokens, error) {
	var out Tokens
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want NAME ROLE SECRET, got %d fields", n, len(f))
		}
		if err := validFileName(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: token %w", n, err)
		}
		if names[f[0]] {
			return nil, fmt.Errorf("line %d: token name %q appears twice", n, f[0])
		}
		t := Token{Name: f[0]}
		switch f[1] {
		case "sentinel-read":
			t.Sentinel = SentinelRead
		case "sentinel-admin":
			t.Sentinel = SentinelAdmin
		default:
			role, err := ParseRole(f[1])
			if err != nil {
				return nil, fmt.Errorf("line %d (%s): %w, or sentinel-read or sentinel-admin for a Sentinel user", n, f[0], err)
			}
			t.Role = role
		}
		if hx, ok := strings.CutPrefix(f[2], "sha256:"); ok {
			b, err := hex.DecodeString(hx)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("line %d (%s): sha256: wants 64 hex digits", n, f[0])
			}
			copy(t.hash[:], b)
		} else {
			if len(f[2]) < 16 {
				return nil, fmt.Errorf("line %d (%s): the secret is shorter than 16 characters", n, f[0])
			}
			t.hash = sha256.Sum256([]byte(f[2]))
		}
		if other, dup := hashes[t.hash]; dup {
			return nil, fmt.Errorf("line %d (%s): same secret as %s: each token needs its own", n, f[0], other)
		}
		names[f[0]], hashes[t.hash] = true, f[0]
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// HashSecret is the sha256:HEX form of a secret, for the auth file.
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(h[:])
}

// Lookup finds the API token whose secret this is (Sentinel users are no
// API tokens). Every token is compared, in constant time, so the time
// taken says nothing about which one matched.
func (ts Tokens) Lookup(secret string) (Token, bool) {
	h := sha256.Sum256([]byte(secret))
	var found Token
	ok := 0
	for _, t := range ts {
		if subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1 && t.Role != RoleNone {
			found, ok = t, 1
		}
	}
	return found, ok == 1
}

// LookupSentinel finds the Sentinel user with this name and password.
func (ts Tokens) LookupSentinel(user, pass string) (Token, bool) {
	h := sha256.Sum256([]byte(pass))
	var found Token
	ok := 0
	for _, t := range ts {
		match := subtle.ConstantTimeCompare(h[:], t.hash[:]) & subtle.ConstantTimeCompare([]byte(user), []byte(t.Name))
		if match == 1 && t.Sentinel != SentinelNone {
			found, ok = t, 1
		}
	}
	return found, ok == 1
}

// HasSentinelUsers tells whether any line is a Sentinel user.
func (ts Tokens) HasSentinelUsers() bool {
	for _, t := range ts {
		if t.Sentinel != SentinelNone {
			return true
		}
	}
	return false
}

// AuthFile is an auth file kept in memory and re-read by Reload.
type AuthFile struct {
	path string
	cur  atomic.Pointer[Tokens]
}

// LoadAuthFile reads path.
func LoadAuthFile(path string) (*AuthFile, error) {
	a := &AuthFile{path: path}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads the file again; on an error the tokens in use are kept.
func (a *AuthFile) Reload() error {
	data, err := os.ReadFile(a.path)
	if err != nil {
		return fmt.Errorf("--auth-file: %w", err)
	}
	ts, err := ParseAuthFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("--auth-file %s: %w", a.path, err)
	}
	a.cur.Store(&ts)
	return nil
}

// Tokens are the tokens now in force.
func (a *AuthFile) Tokens() Tokens { return *a.cur.Load() }

// Lookup finds the API token in force whose secret this is.
func (a *AuthFile) Lookup(secret string) (Token, bool) { return a.Tokens().Lookup(secret) }

// LookupSentinel finds the Sentinel user in force with this password.
func (a *AuthFile) LookupSentinel(user, pass string) (Token, bool) {
	return a.Tokens().LookupSentinel(user, pass)
}
