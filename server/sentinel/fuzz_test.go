package sentinel

import (
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/resp"
)

// FuzzConn feeds arbitrary bytes to one connection of a server with the
// standard topology. Nothing may panic (a contained handler panic counts
// too) and the connection must end once the input does.
func FuzzConn(f *testing.F) {
	for _, seed := range []string{
		string(encode("PING")),
		string(encode("HELLO", "3")) + string(encode("SENTINEL", "MASTERS")) + string(encode("SENTINEL", "REPLICAS", "mymaster")),
		string(encode("SENTINEL", "MASTER", "mymaster")) + string(encode("SENTINEL", "SENTINELS", "mymaster")),
		string(encode("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")),
		string(encode("SUBSCRIBE", "a", "b")) + string(encode("PING")) + string(encode("UNSUBSCRIBE")),
		string(encode("PSUBSCRIBE", "[a-")) + string(encode("PUNSUBSCRIBE", "x")),
		string(encode("SENTINEL", "CONFIG", "GET", "*[^a]\\")),
		string(encode("SENTINEL", "SET", "mymaster", "quorum", "2", "rename-command", "a")),
		string(encode("SENTINEL", "MONITOR", "m", "::1", "-0", "1")),
		string(encode("SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "10.0.0.1", "6379", "0", "*")),
		string(encode("SENTINEL", "RESET", "*")) + string(encode("SENTINEL", "INFO-CACHE", "mymaster", "mymaster")),
		string(encode("CLIENT", "KILL", "ID", "1", "SKIPME", "no")),
		string(encode("CLIENT", "LIST", "ID", "1", "2")) + string(encode("CLIENT", "SETINFO", "lib-name", "x")),
		string(encode("COMMAND", "DOCS")) + string(encode("COMMAND", "LIST", "FILTERBY", "ACLCAT", "admin")),
		string(encode("INFO", "everything")) + string(encode("QUIT")),
		"PING\r\nSENTINEL get-master-addr-by-name mymaster\r\n",
		"*1\r\n$-1\r\n",
		"*2\r\n$4\r\nPING\r\n$99999999\r\n",
		"\"unbalanced\r\n",
	} {
		f.Add([]byte(seed))
	}
	fb := newFake()
	topology(fb)
	// f.Log may not be called from the fuzz target: errors (a contained
	// panic with its stack) go to stderr, the rest nowhere.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	s := New(Config{Logger: logger, Limits: resp.Limits{MaxBulkLen: 4096, MaxArgs: 64}}, fb)
	f.Cleanup(func() { _ = s.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serveConn(server)
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, client)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = client.Write(data)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("connection still served 10s after the input ended")
		}
		<-drained
		if n := s.panics.Load(); n != 0 {
			t.Fatalf("%d handler panics", n)
		}
		fb.mu.Lock()
		fb.calls = nil // keep the fake from growing over a long fuzz run
		fb.mu.Unlock()
	})
}

// refGlob transcribes the semantics of Redis's recursive stringmatchlen,
// as the reference for the linear matcher.
func refGlob(p, s string, nocase bool) bool {
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if refGlob(p[1:], s, nocase) {
					return true
				}
				s = s[1:]
			}
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			match := false
			for {
				if len(p) >= 2 && p[0] == '\\' {
					p = p[1:]
					if p[0] == s[0] {
						match = true
					}
				} else if len(p) == 0 {
					break
				} else if p[0] == ']' {
					break
				} else if len(p) >= 3 && p[1] == '-' {
					lo, hi, c := p[0], p[2], s[0]
					if lo > hi {
						lo, hi = hi, lo
					}
					if nocase {
						lo, hi, c = lower(lo), lower(hi), lower(c)
					}
					p = p[2:]
					if c >= lo && c <= hi {
						match = true
					}
				} else if sameByte(p[0], s[0], nocase) {
					match = true
				}
				p = p[1:]
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			s = s[1:]
			if len(p) > 0 {
				p = p[1:] // the ']'
			}
			goto next
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if !sameByte(p[0], s[0], nocase) {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
	next:
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

func TestGlob(t *testing.T) {
	cases := []struct {
		p, s   string
		nocase bool
		want   bool
	}{
		{"*", "+switch-master", false, true},
		{"+switch-*", "+switch-master", false, true},
		{"+switch-*", "+sdown", false, false},
		{"?sdown", "+sdown", false, true},
		{"[-+]sdown", "-sdown", false, true},
		{"[+-]sdown", "-sdown", false, false}, // "+-]" is a range, as in Redis
		{"[^+]sdown", "+sdown", false, false},
		{"[a-c]x", "bx", false, true},
		{"[c-a]x", "bx", false, true},
		{"\\*", "*", false, true},
		{"\\*", "a", false, false},
		{"my*", "mymaster", false, true},
		{"MY*", "mymaster", false, false},
		{"MY*", "mymaster", true, true},
		{"announce-*", "announce-ip", true, true},
		{"*a*a*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, false},
		{"[abc", "b", false, true},
		{"a*[", "a", false, false},
	}
	for _, tc := range cases {
		if got := globMatch(tc.p, tc.s, tc.nocase); got != tc.want {
			t.Errorf("globMatch(%q, %q, %v) = %v, want %v", tc.p, tc.s, tc.nocase, got, tc.want)
		}
		if len(tc.s) > 24 {
			continue // exponential for the reference, as for Redis
		}
		if got := refGlob(tc.p, tc.s, tc.nocase); got != tc.want {
			t.Errorf("refGlob(%q, %q, %v) = %v, want %v", tc.p, tc.s, tc.nocase, got, tc.want)
		}
	}
}

// FuzzGlob checks the linear matcher against the recursive reference.
// Redis never matches an empty string, a case the front end never meets
// (channels and names are never empty), so it is left out.
func FuzzGlob(f *testing.F) {
	f.Add("*a?[b-d]\\*", "xaab*", false)
	f.Add("[^a-]*", "zq", true)
	f.Add("[\\]]x", "]x", false)
	f.Fuzz(func(t *testing.T, p, s string, nocase bool) {
		if s == "" || len(p) > 24 || len(s) > 24 {
			return
		}
		if got, want := globMatch(p, s, nocase), refGlob(p, s, nocase); got != want {
			t.Fatalf("globMatch(%q, %q, %v) = %v, Redis says %v", p, s, nocase, got, want)
		}
	})
}
