package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/proto"
)

// buildFormat1Coordinator builds the coordinator as a binary that
// advertises and decodes log format 1 only, as the release before log
// formats does.
func buildFormat1Coordinator(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "coordinator-format1")
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/raftinel/raftinel/fsm.buildLogFormat=1 -X main.version=format1", "-o", out, "./cmd/coordinator")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the format-1 coordinator: %v\n%s", err, b)
	}
	return out
}

func clusterStatus(nodes ...*node) (*coordinatorv1.StatusResponse, error) {
	resp := &coordinatorv1.StatusResponse{}
	return resp, ctlJSON(resp, "--addr", addrs(nodes...), "status")
}

// checkNoneExited fails the test when a node's process ended on its own.
func checkNoneExited(t *testing.T, nodes []*node) {
	t.Helper()
	for _, n := range nodes {
		if p := n.process(); p != nil && p.exited() {
			t.Fatalf("%s exited with code %d; log tail:\n%s", n.id, p.exitCode(), tailFile(n.logPath, 20))
		}
	}
}

// A mixed cluster keeps failing over while its nodes are upgraded one at a
// time from a binary of log format 1, each upgraded node then leading; a
// format-2 entry is refused until the last voter runs the new binary.
func TestRollingUpgradeAcrossLogFormats(t *testing.T) {
	redistest.Require(t)
	old := buildFormat1Coordinator(t)
	c := startClusterOf(t, 3, old)
	all := addrs(c.nodes...)

	st, err := clusterStatus(c.nodes...)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range st.GetNodes() {
		if n.GetLogFormat() != 1 || n.GetVersion() != "format1" {
			t.Fatalf("%s advertises format %d version %q, want 1 and format1", n.GetId(), n.GetLogFormat(), n.GetVersion())
		}
	}
	if r := mustFail(t, "--addr", all, "check-format"); !strings.Contains(r.stderr, "format 1") {
		t.Fatalf("check-format on a format-1 cluster: %v", r)
	}

	g := startGroup(t, "upgrade", nil, nil)
	g.monitor(t, c, 2, 2*time.Second)
	master := g.master
	var epoch uint64
	for i, n := range c.nodes {
		n.stop()
		n.bin = "" // the binary TestMain built: log format 2
		n.start()
		checkNoneExited(t, c.nodes)
		// The upgraded node leads, so the gate it applies is the one in
		// question (an old leader refuses anyway: its binary writes format 1).
		testwait.For(t, waitTimeout, n.id+" leading", func() error {
			if l, err := leaderAmong(c.nodes...); err == nil && l == n.id {
				return nil
			}
			r, err := ctl("--addr", all, "--timeout", "5s", "transfer-leadership", n.id)
			if err != nil {
				return err
			}
			return fmt.Errorf("not leading yet: %v", r)
		})

		// A failover at this step of the upgrade: none is lost.
		oldAddr := master.Addr()
		master.Kill()
		addr, e := waitServed(t, c.nodes, g.name, oldAddr, epoch+1)
		if e != epoch+1 {
			t.Fatalf("step %d: epoch %d after one more failover, want %d", i+1, e, epoch+1)
		}
		epoch = e
		promoted := g.byAddr(addr)
		master.Restart()
		waitFollows(t, master, addr)
		master = promoted
		testwait.For(t, waitTimeout, "the failover journal closed", func() error {
			d, err := detail(n, g.name)
			if err != nil {
				return err
			}
			if d.GetFailover() != nil {
				return fmt.Errorf("failover in phase %s", d.GetFailover().GetPhase())
			}
			return nil
		})

		if i < len(c.nodes)-1 {
			r := mustFail(t, "--addr", all, "check-format")
			for _, behind := range c.nodes[i+1:] {
				if !strings.Contains(r.stderr, behind.id+" (format 1)") {
					t.Fatalf("step %d: check-format should name %s as behind: %v", i+1, behind.id, r)
				}
			}
		}
		checkNoneExited(t, c.nodes)
	}
	// Every voter runs format 2 now: once the last one's record says so,
	// format-2 entries are written and applied everywhere.
	testwait.For(t, waitTimeout, "check-format accepted", func() error {
		r, err := ctl("--addr", all, "--timeout", "5s", "check-format")
		if err != nil {
			return err
		}
		if r.code != 0 {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	st, err = clusterStatus(c.nodes...)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetClusterLogFormat() != 2 || len(st.GetFeatures()) == 0 || !st.GetFeatures()[0].GetEnabled() {
		t.Fatalf("status after the upgrade: format %d, features %v", st.GetClusterLogFormat(), st.GetFeatures())
	}
	r := mustCtl(t, "--addr", all, "status")
	if !strings.Contains(r.stdout, "log format in use: 2") || !strings.Contains(r.stdout, "format_probe (format 2)") {
		t.Fatalf("status table: %s", r.stdout)
	}
	// One more failover on the upgraded cluster, and no node stopped.
	oldAddr := master.Addr()
	master.Kill()
	if _, e := waitServed(t, c.nodes, g.name, oldAddr, epoch+1); e != epoch+1 {
		t.Fatalf("epoch %d after the upgrade's last failover, want %d", e, epoch+1)
	}
	checkNoneExited(t, c.nodes)
}

// mustFail runs coordinatorctl and wants exit code 1.
func mustFail(t *testing.T, args ...string) ctlResult {
	t.Helper()
	r, err := ctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 1 {
		t.Fatalf("want exit 1: %v", r)
	}
	return r
}

// masterState is what a backup must keep of a master.
func masterState(t *testing.T, n *node, name string) *coordinatorv1.Master {
	t.Helper()
	d, err := detail(n, name)
	if err != nil {
		t.Fatal(err)
	}
	return d.GetMaster()
}

// Snapshots saved while a failover runs all read back; the last, restored
// into a new cluster on other ports, gives the same masters, epochs and
// settings, and that cluster fails over. Damaged files are refused.
func TestSnapshotSaveUnderFailoverAndRestore(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	all := addrs(c.nodes...)
	g := startGroup(t, "backup", nil, nil)
	g.monitor(t, c, 2, 2*time.Second)
	mustCtl(t, "--addr", all, "set", g.name, "parallel-syncs", "2", "max-lag", "1048576")
	dir := t.TempDir()

	// Saves in a loop while the master is killed and failed over.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		saved []string
		fails []string
	)
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			path := filepath.Join(dir, fmt.Sprintf("load-%d.snap", i))
			r, err := ctl("--addr", all, "--timeout", "10s", "snapshot", "save", path)
			mu.Lock()
			if err != nil || r.code != 0 {
				fails = append(fails, fmt.Sprint(r, err))
			} else {
				saved = append(saved, path)
			}
			mu.Unlock()
		}
	})
	old := g.master.Addr()
	g.master.Kill()
	checkFailedOver(t, c, g, old)
	close(stop)
	wg.Wait()
	if len(fails) > 0 || len(saved) == 0 {
		t.Fatalf("%d saves during the failover, failures: %v", len(saved), fails)
	}
	for _, p := range saved {
		mustCtl(t, "snapshot", "inspect", p)
	}

	final := filepath.Join(dir, "final.snap")
	r := mustCtl(t, "--addr", all, "snapshot", "save", final)
	if !strings.Contains(r.stdout, "saved the state at index") {
		t.Fatalf("save: %v", r)
	}
	if fi, err := os.Stat(final); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file mode: %v %v, want 0600", fi.Mode(), err)
	}
	if r, _ := ctl("--addr", all, "snapshot", "save", final); r.code != 4 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("a second save to the same file: %v", r)
	}
	want := masterState(t, c.nodes[0], g.name)
	r = mustCtl(t, "snapshot", "inspect", final)
	for _, s := range []string{"checksum ok", g.name, want.GetAddress(), "members:     n1, n2, n3"} {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("inspect does not show %q:\n%s", s, r.stdout)
		}
	}

	// Damaged copies: refused by inspect and by --restore, with the reason.
	data, err := os.ReadFile(final)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "corrupt.snap")
	damaged := slices.Clone(data)
	damaged[len(damaged)-10] ^= 0x40
	if err := os.WriteFile(bad, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if r, _ := ctl("snapshot", "inspect", bad); r.code != 4 || !strings.Contains(r.stderr, "checksum mismatch") {
		t.Fatalf("inspect of a corrupted file: %v", r)
	}
	short := filepath.Join(dir, "short.snap")
	if err := os.WriteFile(short, data[:len(data)-100], 0o600); err != nil {
		t.Fatal(err)
	}
	ports := freeAddrs(t, 9)
	for _, f := range []struct{ path, want string }{{bad, "checksum mismatch"}, {short, "cut short"}} {
		code, stderr, exited := runCoordinator(t, "--id", "r1", "--data-dir", filepath.Join(dir, "refused"), "--raft-addr", ports[0],
			"--grpc-addr", ports[3], "--sentinel-addr", ports[6], "--restore", f.path)
		if !exited || code != 1 || oneLineError(stderr, "coordinator", f.want) != "" {
			t.Fatalf("--restore %s: exit %d (exited %v), stderr %q", filepath.Base(f.path), code, exited, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "refused", "raft.db")); err == nil {
		t.Fatal("a refused restore left a Raft store behind")
	}

	// The old cluster stops; a new one on other ports starts from the file.
	for _, n := range c.nodes {
		n.kill()
	}
	ndir := t.TempDir()
	r1 := newNode(t, ndir, "r1", ports[0], ports[3], ports[6], "--restore", final)
	r1.start()
	r2 := newNode(t, ndir, "r2", ports[1], ports[4], ports[7], "--join", r1.grpcAddr)
	r3 := newNode(t, ndir, "r3", ports[2], ports[5], ports[8], "--join", r1.grpcAddr)
	r2.start()
	r3.start()
	restored := &cluster{t: t, nodes: []*node{r1, r2, r3}}
	testwait.For(t, waitTimeout, "the restored cluster formed", func() error { return restored.checkMembers(r1, restored.nodes) })
	waitMasters(t, restored.nodes, g.name)
	for _, n := range restored.nodes {
		got := masterState(t, n, g.name)
		if got.GetAddress() != want.GetAddress() || got.GetEpoch() != want.GetEpoch() || !proto.Equal(got.GetSettings(), want.GetSettings()) {
			t.Fatalf("%s after the restore: %v, want %v", n.id, got, want)
		}
	}

	// Started again with --restore, the node refuses: its directory has state.
	r1.stop()
	code, stderr, exited := runCoordinator(t, r1.args()...)
	if !exited || code != 1 || !strings.Contains(stderr, "already holds Raft state") {
		t.Fatalf("--restore on a directory with state: exit %d (exited %v), stderr %q", code, exited, stderr)
	}
	r1.extra = nil
	r1.start()

	// The restored cluster fails over.
	cur := g.byAddr(want.GetAddress())
	cur.Kill()
	if _, e := waitServed(t, restored.nodes, g.name, want.GetAddress(), want.GetEpoch()+1); e != want.GetEpoch()+1 {
		t.Fatalf("epoch %d after a failover in the restored cluster, want %d", e, want.GetEpoch()+1)
	}
}

// Two of three nodes are lost with their data; the third, recovered with
// --recover, keeps every master and epoch, two new nodes join it, and a
// failover works. While the old cluster still had a leader, --recover was
// refused.
func TestRecoverAfterQuorumLoss(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	all := addrs(c.nodes...)
	g := startGroup(t, "survivor", nil, nil)
	g.monitor(t, c, 2, 2*time.Second)
	old := g.master.Addr()
	g.master.Kill()
	checkFailedOver(t, c, g, old)
	g.master.Restart()
	want := masterState(t, c.nodes[0], g.name)
	mustCtl(t, "--addr", all, "set", g.name, "parallel-syncs", "3")
	want.Settings.ParallelSyncs = 3
	waitSetting := func(n *node) error {
		if got := masterState(t, n, g.name); got.GetSettings().GetParallelSyncs() != 3 {
			return fmt.Errorf("%s: parallel-syncs %d", n.id, got.GetSettings().GetParallelSyncs())
		}
		return nil
	}
	n3 := c.nodes[2]
	testwait.For(t, waitTimeout, "n3 applied the set", func() error { return waitSetting(n3) })

	// n1 and n2 still form a cluster with a leader: refused, n3 unchanged.
	n3.stop()
	recoverArgs := []string{"--id", n3.id, "--data-dir", n3.dataDir, "--raft-addr", n3.raftAddr, "--grpc-addr", n3.grpcAddr,
		"--sentinel-addr", n3.sentinelAddr, "--recover"}
	testwait.For(t, waitTimeout, "n1 and n2 agree on a leader", func() error {
		_, err := leaderAmong(c.nodes[0], c.nodes[1])
		return err
	})
	code, stderr, exited := runCoordinator(t, recoverArgs...)
	if !exited || code != 1 || oneLineError(stderr, "coordinator", "still has a leader") != "" {
		t.Fatalf("--recover while the old cluster has a leader: exit %d (exited %v), stderr %q", code, exited, stderr)
	}

	// Quorum lost for good: n1 and n2 die with their data.
	for _, n := range c.nodes[:2] {
		n.kill()
		if err := os.RemoveAll(n.dataDir); err != nil {
			t.Fatal(err)
		}
	}
	n3.extra = []string{"--recover"}
	n3.start()
	testwait.For(t, waitTimeout, "n3 leads alone", func() error {
		l, err := leaderAmong(n3)
		if err == nil && l != n3.id {
			err = fmt.Errorf("leader %s", l)
		}
		return err
	})
	if got := masterState(t, n3, g.name); got.GetAddress() != want.GetAddress() || got.GetEpoch() != want.GetEpoch() || !proto.Equal(got.GetSettings(), want.GetSettings()) {
		t.Fatalf("after the recovery: %v, want %v", got, want)
	}

	ports := freeAddrs(t, 6)
	dir := t.TempDir()
	n4 := newNode(t, dir, "n4", ports[0], ports[2], ports[4], "--join", n3.grpcAddr)
	n5 := newNode(t, dir, "n5", ports[1], ports[3], ports[5], "--join", n3.grpcAddr)
	n4.start()
	n5.start()
	nc := &cluster{t: t, nodes: []*node{n3, n4, n5}}
	// The lost members are gone from the configuration and the records.
	testwait.For(t, waitTimeout, "n3, n4 and n5 are the members", func() error { return nc.checkMembers(n4, nc.nodes) })
	testwait.For(t, waitTimeout, "n1 and n2's records forgotten", func() error {
		path := filepath.Join(dir, fmt.Sprintf("check-%d.snap", time.Now().UnixNano()))
		r, err := ctl("--addr", n3.grpcAddr, "snapshot", "save", path)
		if err != nil || r.code != 0 {
			return fmt.Errorf("%v %v", r, err)
		}
		r = mustCtl(t, "snapshot", "inspect", path)
		if !strings.Contains(r.stdout, "members:     n3, n4, n5\n") {
			return fmt.Errorf("inspect: %s", r.stdout)
		}
		return nil
	})
	for _, n := range nc.nodes {
		testwait.For(t, waitTimeout, n.id+" has the state", func() error { return waitSetting(n) })
	}

	cur := g.byAddr(want.GetAddress())
	cur.Kill()
	if _, e := waitServed(t, nc.nodes, g.name, want.GetAddress(), want.GetEpoch()+1); e != want.GetEpoch()+1 {
		t.Fatalf("epoch %d after a failover in the recovered cluster, want %d", e, want.GetEpoch()+1)
	}
}
