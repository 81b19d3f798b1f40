package security

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// Kind is what sort of caller an Identity is.
type Kind string

// The kinds of caller.
const (
	// Anonymous: no token and no node certificate (allowed only where the
	// node has no auth file).
	Anonymous Kind = "anonymous"
	// KindNode: a node of the cluster, by its certificate.
	KindNode Kind = "node"
	// KindToken: a user, by a token of the auth file.
	KindToken Kind = "token"
	// KindSentinel: a client of the Sentinel endpoint.
	KindSentinel Kind = "sentinel"
)

// Identity is who made a call, as the node that received it established
// it, and from where. It travels with a forwarded write to the leader.
type Identity struct {
	Kind Kind
	// Name: the node id, the token's name or the Sentinel user.
	Name string
	// Role of a token or a Sentinel user; nodes and anonymous callers have
	// RoleNone (their rights are decided by kind).
	Role Role
	// Subject of a verified client certificate, if one was presented.
	Subject string
	// From is the caller's address as the receiving node saw it.
	From string
	// Forwarded: the identity came with a call another node forwarded,
	// rather than from the peer of the connection itself.
	Forwarded bool
}

// Who is the identity for the audit: "token alice", "node n2",
// "sentinel default", "anonymous" (with the certificate subject if any).
func (id Identity) Who() string {
	var s string
	switch id.Kind {
	case "", Anonymous:
		s = "anonymous"
	default:
		s = string(id.Kind) + " " + id.Name
	}
	if id.Subject != "" {
		s += " (cert " + id.Subject + ")"
	}
	return s
}

func (id Identity) String() string {
	if id.From == "" {
		return id.Who()
	}
	return id.Who() + " from " + id.From
}

// Encode is the identity as a metadata value for a forwarded call.
func (id Identity) Encode() string {
	v := url.Values{}
	v.Set("kind", string(id.Kind))
	v.Set("name", id.Name)
	v.Set("role", id.Role.String())
	if id.Subject != "" {
		v.Set("subject", id.Subject)
	}
	v.Set("from", id.From)
	return v.Encode()
}

// DecodeIdentity reads what Encode wrote.
func DecodeIdentity(s string) (Identity, error) {
	v, err := url.ParseQuery(s)
	if err != nil {
		return Identity{}, fmt.Errorf("caller identity %q: %w", s, err)
	}
	id := Identity{Kind: Kind(v.Get("kind")), Name: v.Get("name"), Subject: v.Get("subject"), From: v.Get("from")}
	switch id.Kind {
	case Anonymous, KindNode, KindToken, KindSentinel:
	default:
		return Identity{}, fmt.Errorf("caller identity: unknown kind %q", id.Kind)
	}
	if r := v.Get("role"); r != "none" && r != "" {
		if id.Role, err = ParseRole(strings.TrimSpace(r)); err != nil {
			return Identity{}, fmt.Errorf("caller identity: %w", err)
		}
	}
	return id, nil
}

type identityKey struct{}

// WithIdentity returns ctx carrying the caller's identity.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the caller identity in ctx, if any.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
