package orchestrator

import (
	"net"
	"strconv"
	"testing"
)

func TestSameHostPortMatchesJoinHostPort(t *testing.T) {
	addrs := []string{"127.0.0.1:6379", "127.0.0.1:637", "[::1]:6379", "::1:6379", "host:6379", "host:06379",
		"host:", ":6379", "host", "[::1]:x", "10.0.0.1:65535", "10.0.0.1:165535", ""}
	hosts := []struct {
		host string
		port int
	}{{"127.0.0.1", 6379}, {"127.0.0.1", 637}, {"::1", 6379}, {"host", 6379}, {"", 6379}, {"10.0.0.1", 65535}, {"10.0.0.1", 165535}}
	for _, a := range addrs {
		for _, h := range hosts {
			want := a == net.JoinHostPort(h.host, strconv.Itoa(h.port))
			if got := sameHostPort(a, h.host, h.port); got != want {
				t.Errorf("sameHostPort(%q, %q, %d) = %v, want %v", a, h.host, h.port, got, want)
			}
		}
	}
}
