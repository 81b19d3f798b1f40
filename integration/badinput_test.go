package integration

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
)

// exitWindow is how long a coordinator given bad input may take to say so.
// The longest legitimate case is the data-dir lock, which waits 1 s.
const exitWindow = 5 * time.Second

// runCoordinator runs the coordinator and waits up to exitWindow for it to
// exit. exited is false when it was still running and had to be killed.
func runCoordinator(t *testing.T, args ...string) (code int, stderr string, exited bool) {
	t.Helper()
	cmd := exec.Command(bins.coordinator, args...)
	cmd.Env = childEnv()
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	})
	select {
	case <-done:
		// Reading errOut after Wait is race-free: Wait copies all output first.
		return cmd.ProcessState.ExitCode(), errOut.String(), true
	case <-time.After(exitWindow):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		return -1, errOut.String(), false
	}
}

// oneLineError says what is wrong with stderr, or "" when it is exactly
// one line of the form "<prog>: ...<want>...".
func oneLineError(stderr, prog, want string) string {
	switch {
	case strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine "):
		return "stderr holds a panic trace"
	case strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n"):
		return fmt.Sprintf("stderr is not exactly one line (%d lines)", strings.Count(stderr, "\n"))
	case !strings.HasPrefix(stderr, prog+": "):
		return fmt.Sprintf("stderr does not start with %q", prog+": ")
	case !strings.Contains(stderr, want):
		return fmt.Sprintf("stderr does not mention %q", want)
	}
	return ""
}

func TestBadInputExitsCleanly(t *testing.T) {
	t.Run("coordinator", func(t *testing.T) {
		dir := t.TempDir()
		// node builds a command line with fresh ports; SELF in a later
		// argument stands for the node's own Raft address, so cases about
		// something else keep --bootstrap consistent with --raft-addr.
		node := func(id string, more ...string) []string {
			ports := freeAddrs(t, 2)
			raft := ports[0]
			args := []string{"--id", id, "--data-dir", filepath.Join(dir, id), "--raft-addr", raft, "--grpc-addr", ports[1], "--sentinel-addr", "127.0.0.1:0"}
			for _, m := range more {
				args = append(args, strings.ReplaceAll(m, "SELF", raft))
			}
			return args
		}
		// A port this test holds, for the Sentinel endpoint to find taken.
		held, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{name: "unknown flag", args: node("n1", "--no-such-flag"), want: "no-such-flag"},
			{name: "stray argument", args: node("n1", "stray"), want: "stray"},
			{name: "missing id", args: []string{"--data-dir", filepath.Join(dir, "x")}, want: "--id"},
			{name: "missing data dir", args: []string{"--id", "n1"}, want: "--data-dir"},
			{name: "bad log level", args: node("n1", "--log-level", "loud"), want: "--log-level"},
			{name: "bad grpc address", args: []string{"--id", "n1", "--data-dir", filepath.Join(dir, "n1"), "--grpc-addr", "nowhere"}, want: "--grpc-addr"},
			{name: "empty bootstrap", args: node("n1", "--bootstrap="), want: "--bootstrap is empty: want id=host:port,..."},
			{name: "blank bootstrap", args: node("n1", "--bootstrap", " "), want: "--bootstrap is empty: want id=host:port,..."},
			{name: "bootstrap entry without address", args: node("n1", "--bootstrap", "n1"), want: "not id=host:port"},
			{name: "bootstrap address without port", args: node("n1", "--bootstrap", "n1=127.0.0.1"), want: "not host:port"},
			{name: "bootstrap names a node twice", args: node("n1", "--bootstrap", "n1=127.0.0.1:1,n1=127.0.0.1:2"), want: "twice"},
			{name: "id missing from bootstrap", args: node("n1", "--bootstrap", "n2=127.0.0.1:1,n3=127.0.0.1:2"), want: `does not list this node's id "n1"`},
			{name: "bootstrap and join", args: node("n1", "--bootstrap", "n1=SELF", "--join", "127.0.0.1:2"), want: "exclude each other"},
			{name: "bad sentinel address", args: node("n1", "--sentinel-addr", "nowhere"), want: "--sentinel-addr"},
			{name: "sentinel port taken", args: node("n1", "--sentinel-addr", held.Addr().String()), want: "Sentinel address"},
			{name: "sentinel password without endpoint", args: node("n1", "--sentinel-addr", "", "--sentinel-pass", "x"), want: "--sentinel-pass"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				args := tc.args
				start := time.Now()
				code, stderr, exited := runCoordinator(t, args...)
				problem := ""
				switch {
				case !exited:
					problem = fmt.Sprintf("still running after %v", exitWindow)
				case code == 0:
					problem = "exit code 0"
				default:
					problem = oneLineError(stderr, "coordinator", tc.want)
				}
				if problem == "" {
					t.Logf("exit %d after %v: %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))
					return
				}
				if strings.Contains(stderr, "panic") {
					t.Fatalf("coordinator panicked:\n%s", stderr)
				}
				msg := fmt.Sprintf("coordinator %s: %s (exit %d, stderr %q)", strings.Join(args, " "), problem, code, stderr)
				t.Fatal(msg)
			})
		}
	})

	c := startCluster(t, 3)
	all := addrs(c.nodes...)
	mustCtl(t, "--addr", all, "monitor", "mymaster", "127.0.0.1:6379", "--quorum", "2")

	t.Run("data dir held by a running node", func(t *testing.T) {
		n1 := c.nodes[0]
		ports := freeAddrs(t, 2)
		code, stderr, exited := runCoordinator(t, "--id", "n1", "--data-dir", n1.dataDir, "--raft-addr", ports[0], "--grpc-addr", ports[1], "--sentinel-addr", "127.0.0.1:0")
		if !exited || code == 0 {
			t.Fatalf("second coordinator on a held data dir: exited=%v code=%d stderr %q", exited, code, stderr)
		}
		if p := oneLineError(stderr, "coordinator", "in use"); p != "" {
			t.Fatalf("%s: %q", p, stderr)
		}
		// And the node that holds it is unharmed.
		mustCtl(t, "--addr", n1.grpcAddr, "master", "mymaster")
	})

	checkCtl := func(t *testing.T, code int, want string, args ...string) ctlResult {
		t.Helper()
		r, err := ctl(args...)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != code {
			t.Fatalf("want exit %d: %v", code, r)
		}
		if p := oneLineError(r.stderr, "coordinatorctl", want); p != "" {
			t.Fatalf("%s: %v", p, r)
		}
		return r
	}

	t.Run("coordinatorctl answers", func(t *testing.T) {
		for _, tc := range []struct {
			code int
			want string
			args []string
		}{
			{3, `unknown master "nosuch"`, []string{"master", "nosuch"}},
			{3, `unknown master "nosuch"`, []string{"remove", "nosuch"}},
			{3, `unknown master "nosuch"`, []string{"set", "nosuch", "quorum", "2"}},
			{3, `unknown node "n9"`, []string{"remove-node", "n9"}},
			{4, "not-an-address", []string{"monitor", "m2", "not-an-address", "--quorum", "2"}},
			{4, "quorum", []string{"monitor", "m2", "127.0.0.1:6399", "--quorum", "0"}},
			{4, "bad/name", []string{"monitor", "bad/name", "127.0.0.1:6399", "--quorum", "2"}},
			{4, "mymaster", []string{"monitor", "mymaster", "127.0.0.1:6399", "--quorum", "2"}},
			{4, "quorum", []string{"set", "mymaster", "quorum", "0"}},
			{4, "bogus", []string{"set", "mymaster", "bogus", "1"}},
			{4, "down-after-milliseconds", []string{"set", "mymaster", "down-after-milliseconds", "10"}},
			{2, `"quorum" not set`, []string{"monitor", "m2", "127.0.0.1:6399"}},
			{2, "whole number of milliseconds", []string{"monitor", "m2", "127.0.0.1:6399", "--quorum", "2", "--down-after", "1.5ms"}},
		} {
			checkCtl(t, tc.code, tc.want, append([]string{"--addr", all}, tc.args...)...)
		}
		// None of the rejected writes changed anything.
		waitMasters(t, c.nodes, "mymaster")
	})

	t.Run("no reachable node", func(t *testing.T) {
		r := checkCtl(t, 1, "no node could serve the request", "--addr", strings.Join(freeAddrs(t, 2), ","), "--timeout", "3s", "status")
		if r.elapsed > 3*time.Second {
			t.Fatalf("took longer than --timeout: %v", r)
		}
	})

	t.Run("writes without quorum", func(t *testing.T) {
		survivor := c.nodes[2]
		c.nodes[0].kill()
		c.nodes[1].kill()
		const timeout = 3 * time.Second
		for _, args := range [][]string{
			{"--addr", survivor.grpcAddr, "monitor", "m3", "127.0.0.1:6398", "--quorum", "2"},
			{"--addr", addrs(c.nodes...), "set", "mymaster", "quorum", "3"},
			{"--addr", survivor.grpcAddr, "remove", "mymaster"},
		} {
			r, err := ctl(append([]string{"--timeout", timeout.String()}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if r.code == 0 {
				t.Fatalf("a write without quorum succeeded: %v", r)
			}
			if p := oneLineError(r.stderr, "coordinatorctl", ""); p != "" {
				t.Fatalf("%s: %v", p, r)
			}
			// Process start-up on a busy machine comes on top of the
			// CLI's own deadline.
			if r.elapsed > timeout+2*time.Second {
				t.Fatalf("not within --timeout %v: %v", timeout, r)
			}
			t.Logf("%v", r)
		}
		// Once --max-staleness has passed without a leader, the survivor no
		// longer names masters from its own state: the read is refused
		// with a clear error rather than answered from a copy the others
		// (had they a quorum) might have moved past.
		testwait.Until(t, 30*time.Second, "the survivor refuses to name masters without a leader", func() bool {
			r, err := ctl("--timeout", timeout.String(), "--addr", survivor.grpcAddr, "masters")
			return err == nil && r.code != 0 && strings.Contains(r.stderr, "no contact with a Raft leader")
		})
	})
}
