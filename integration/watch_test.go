package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
)

// ctlStream runs a streaming coordinatorctl command in the background and
// hands over its stdout line by line. It is killed when the test ends.
func ctlStream(t *testing.T, args ...string) <-chan string {
	t.Helper()
	cmd := exec.Command(bins.ctl, args...)
	cmd.Env = childEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return lines
}

// nextJSON decodes the stream's next line into v.
func nextJSON(t *testing.T, lines <-chan string, v any) {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("the command ended")
		}
		if err := json.Unmarshal([]byte(l), v); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no line within %v", waitTimeout)
	}
}

// The streaming commands, as built binaries, through a SIGKILL of the node
// they stream from and a real failover after it: watch prints the new
// master without ever printing a lower epoch, events prints the
// +switch-master with no event twice.
func TestWatchAndEventsFollowAFailoverAcrossANodeKill(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	g := startGroup(t, "mymaster", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)
	old := g.master.Addr()

	// nodes[0] is first in --addr and up, so both streams start on it.
	watch := ctlStream(t, "--addr", addrs(c.nodes...), "watch", g.name, "-o", "json")
	events := ctlStream(t, "--addr", addrs(c.nodes...), "events", g.name, "--follow", "-o", "json")
	var w struct {
		Address string `json:"address"`
		Epoch   uint64 `json:"epoch"`
	}
	nextJSON(t, watch, &w)
	if w.Address != old || w.Epoch != 0 {
		t.Fatalf("watch began with %+v, want %s at epoch 0", w, old)
	}

	c.nodes[0].kill()
	g.master.Kill()
	for w.Epoch < 1 {
		last := w.Epoch
		nextJSON(t, watch, &w)
		if w.Epoch < last {
			t.Fatalf("watch printed epoch %d after %d", w.Epoch, last)
		}
	}
	if w.Epoch != 1 || w.Address == old || g.byAddr(w.Address) == nil {
		t.Fatalf("watch printed %+v after the failover, want a replica at epoch 1", w)
	}

	var e struct {
		Seq     uint64 `json:"seq"`
		Type    string `json:"type"`
		Payload string `json:"payload"`
	}
	var lastSeq uint64
	for range 200 {
		nextJSON(t, events, &e)
		if e.Seq <= lastSeq {
			t.Fatalf("event %+v after seq %d", e, lastSeq)
		}
		lastSeq = e.Seq
		if e.Type == "+switch-master" {
			break
		}
	}
	oh, op, _ := net.SplitHostPort(old)
	nh, np, _ := net.SplitHostPort(w.Address)
	if want := fmt.Sprintf("%s %s %s %s %s", g.name, oh, op, nh, np); e.Type != "+switch-master" || e.Payload != want {
		t.Fatalf("events printed %+v, want +switch-master %q", e, want)
	}
}
