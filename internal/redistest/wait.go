package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
)

// ReplicationTimeout bounds WaitReplicating: a full sync of a test dataset
// takes milliseconds, the margin is for loaded machines.
const ReplicationTimeout = 20 * time.Second

// Info returns INFO fields as a map; with no sections, the default ones.
func (s *Server) Info(ctx context.Context, sections ...string) (map[string]string, error) {
	text, err := s.Client().Info(ctx, sections...).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s on %s: %w", strings.Join(sections, " "), s.Addr(), err)
	}
	fields := make(map[string]string)
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = v
		}
	}
	return fields, nil
}

// Role returns the role from INFO replication ("master" or "slave") and,
// for a replica, the address of its master as "host:port".
func (s *Server) Role(ctx context.Context) (role, masterAddr string, err error) {
	f, err := s.Info(ctx, "replication")
	if err != nil {
		return "", "", err
	}
	role = f["role"]
	if role == "slave" {
		masterAddr = net.JoinHostPort(f["master_host"], f["master_port"])
	}
	return role, masterAddr, nil
}

// WaitReplicating waits until replica reports, in INFO replication, that
// it replicates from master with the link up, and master lists it as an
// online replica.
func WaitReplicating(tb testing.TB, replica, master *Server) {
	tb.Helper()
	err := testwait.Poll(ReplicationTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		f, err := replica.Info(ctx, "replication")
		if err != nil {
			return err
		}
		got := net.JoinHostPort(f["master_host"], f["master_port"])
		if f["role"] != "slave" || got != master.Addr() || f["master_link_status"] != "up" {
			return fmt.Errorf("%s: role:%s master:%s master_link_status:%s; want a replica of %s with the link up",
				replica.Addr(), f["role"], got, f["master_link_status"], master.Addr())
		}
		// The replica sees the link up before the master has moved it to
		// the online state that FAILOVER and WAIT look for.
		m, err := master.Info(ctx, "replication")
		if err != nil {
			return err
		}
		want := "port=" + strconv.Itoa(replica.Port()) + ","
		for k, v := range m {
			if strings.HasPrefix(k, "slave") && strings.Contains(v, want) && strings.Contains(v, "state=online") {
				return nil
			}
		}
		return fmt.Errorf("master %s does not list %s as an online replica yet", master.Addr(), replica.Addr())
	})
	if err != nil {
		tb.Fatalf("redistest: %v\n%s\n%s", err, replica.LogTail(), master.LogTail())
	}
}

// WaitRole waits until the server reports role ("master" or "slave").
func WaitRole(tb testing.TB, s *Server, role string) {
	tb.Helper()
	err := testwait.Poll(ReplicationTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		got, _, err := s.Role(ctx)
		if err != nil {
			return err
		}
		if got != role {
			return fmt.Errorf("%s reports role %q, want %q", s.Addr(), got, role)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: %v\n%s", err, s.LogTail())
	}
}
