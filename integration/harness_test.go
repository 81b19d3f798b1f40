package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Timeouts are generous because the machine may be small and busy; waits
// poll (internal/testwait) so a passing test is still quick. pollInterval
// paces the checks that something holds throughout a window.
const (
	waitTimeout  = 30 * time.Second
	pollInterval = 50 * time.Millisecond
	// stopTimeout bounds a graceful stop: the node's own shutdown budget is
	// 10 s, plus room for a slow machine.
	stopTimeout = 30 * time.Second
)

// bins are the binaries TestMain built.
var bins struct{ coordinator, ctl string }

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "raftinel-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	bins.coordinator = filepath.Join(dir, "coordinator")
	bins.ctl = filepath.Join(dir, "coordinatorctl")
	for out, pkg := range map[string]string{bins.coordinator: "./cmd/coordinator", bins.ctl: "./cmd/coordinatorctl"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: go build %s: %v\n%s", pkg, err, b)
			return 1
		}
	}
	return m.Run()
}

// moduleRoot asks the go command rather than walking up from the working
// directory, so the tests build what `go test` is testing.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// childEnv is the environment of every process a test starts, without
// the COORDINATOR_* variables of whoever runs the tests: an exported
// COORDINATOR_BOOTSTRAP or COORDINATOR_ADDR would change what the tests do.
func childEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "COORDINATOR_") })
}

// freeAddrs returns n distinct 127.0.0.1 addresses that were free a moment
// ago. All listeners stay open until every port is chosen, so the kernel
// cannot hand the same port out twice. Another process may still take one
// before the node binds; callers that can retry with new ports do (see
// startCluster).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		defer lis.Close()
		out[i] = lis.Addr().String()
	}
	return out
}

// process is one run of a binary. err and the exit code are valid once
// done is closed.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) exitCode() int { return p.cmd.ProcessState.ExitCode() }

// node is one coordinator: its flags and data directory outlive its
// processes, so it can be restarted as an operator would. Each node has its
// own Sentinel port, so nodes on one machine never meet on the default.
type node struct {
	t            testing.TB
	id           string
	dataDir      string
	raftAddr     string
	grpcAddr     string
	sentinelAddr string
	extra        []string // --bootstrap or --join, kept across restarts
	logPath      string
	// bin is the coordinator binary the node runs; empty means the one
	// TestMain built. A rolling upgrade changes it between restarts.
	bin string

	mu     sync.Mutex
	proc   *process
	starts int
}

func newNode(t testing.TB, dir, id, raftAddr, grpcAddr, sentinelAddr string, extra ...string) *node {
	n := &node{
		t: t, id: id, dataDir: filepath.Join(dir, id, "data"), raftAddr: raftAddr, grpcAddr: grpcAddr, sentinelAddr: sentinelAddr,
		extra: extra, logPath: filepath.Join(dir, id, "node.log"),
	}
	if err := os.MkdirAll(filepath.Dir(n.logPath), 0o750); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("--- tail of %s's log ---\n%s", n.id, tailFile(n.logPath, 40))
		}
	})
	return n
}

func (n *node) args() []string {
	return append([]string{"--id", n.id, "--data-dir", n.dataDir, "--raft-addr", n.raftAddr, "--grpc-addr", n.grpcAddr,
		"--sentinel-addr", n.sentinelAddr}, n.extra...)
}

// launch starts the node's process without waiting for it to serve.
func (n *node) launch() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("%s is already running", n.id)
	}
	n.starts++
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	bin := n.bin
	if bin == "" {
		bin = bins.coordinator
	}
	fmt.Fprintf(f, "=== start %d: %s %s\n", n.starts, filepath.Base(bin), strings.Join(n.args(), " "))
	p, err := startProcess(bin, n.args(), f)
	if err != nil {
		f.Close()
		return err
	}
	n.proc = p
	return nil
}

// startProcess runs a binary with its output in w, which it closes when
// the process ends.
func startProcess(bin string, args []string, w *os.File) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		w.Close()
		close(p.done)
	}()
	return p, nil
}

func (n *node) process() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

// errBindFailed marks a start that lost its port to another process.
var errBindFailed = errors.New("address already in use")

// waitServing waits until the node answers gRPC. Raft's transport binds
// before the gRPC listener, so a node that answers holds both ports.
func (n *node) waitServing() error {
	p := n.process()
	return testwait.Poll(waitTimeout, func() error {
		if p.exited() {
			if strings.Contains(tailFile(n.logPath, 5), "address already in use") {
				return testwait.Stop(errBindFailed)
			}
			return testwait.Stop(fmt.Errorf("%s exited with code %d before serving", n.id, p.exitCode()))
		}
		return localStatus(n.grpcAddr)
	})
}

// localStatus asks one node about itself only.
func localStatus(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = coordinatorv1.NewCoordinatorServiceClient(conn).Status(ctx, &coordinatorv1.StatusRequest{LocalOnly: true})
	return err
}

// start launches the node and waits until it serves. A restart reuses the
// node's ports, which are part of the cluster's configuration; if another
// process grabbed one meanwhile, it tries again until the port is free.
func (n *node) start() {
	n.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		if err := n.launch(); err != nil {
			n.t.Fatalf("start %s: %v", n.id, err)
		}
		err := n.waitServing()
		if err == nil {
			return
		}
		if !errors.Is(err, errBindFailed) || time.Now().After(deadline) {
			n.t.Fatalf("start %s: %v", n.id, err)
		}
		n.t.Logf("start %s: %v; trying again", n.id, err)
		time.Sleep(pollInterval) // a poll interval, waiting for the port's holder to let go
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	p := n.process()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// terminate sends SIGTERM, the graceful stop.
func (n *node) terminate() {
	if p := n.process(); p != nil && !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// waitExit waits for the current process to end and returns its exit code.
func (n *node) waitExit(timeout time.Duration) (int, error) {
	p := n.process()
	select {
	case <-p.done:
		return p.exitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still running %v later", n.id, timeout)
	}
}

// stop stops the node gracefully and checks it exited cleanly.
func (n *node) stop() {
	n.t.Helper()
	n.terminate()
	code, err := n.waitExit(stopTimeout)
	if err != nil {
		n.t.Fatalf("SIGTERM: %v", err)
	}
	if code != 0 {
		n.t.Fatalf("%s exited with code %d after SIGTERM", n.id, code)
	}
}

// tailFile returns the last lines of a file, for failure messages.
func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", filepath.Base(path), err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// cluster is a set of nodes founded together.
type cluster struct {
	t     testing.TB
	nodes []*node
}

// startCluster founds an n-node cluster with the same --bootstrap list on
// every node and waits until every node has registered its addresses and
// a leader is known. A lost port race starts over with fresh ports.
func startCluster(t testing.TB, size int) *cluster {
	t.Helper()
	return startClusterWith(t, size)
}

// startClusterWith is startCluster with more flags for every node; they
// are kept for restarts like the others.
func startClusterWith(t testing.TB, size int, flags ...string) *cluster {
	t.Helper()
	return startClusterOf(t, size, "", flags...)
}

// startClusterOf is startClusterWith with every node running bin (empty:
// the binary TestMain built).
func startClusterOf(t testing.TB, size int, bin string, flags ...string) *cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := tryStartCluster(t, size, bin, flags)
		if err == nil {
			c.waitFormed()
			return c
		}
		if !errors.Is(err, errBindFailed) || attempt == 3 {
			t.Fatalf("start a %d-node cluster: %v", size, err)
		}
		t.Logf("port taken while starting the cluster, retrying with new ports: %v", err)
	}
}

func tryStartCluster(t testing.TB, size int, bin string, flags []string) (*cluster, error) {
	dir := t.TempDir()
	c := &cluster{t: t}
	var boot []string
	ports := freeAddrs(t, 3*size)
	raftAddrs, grpcAddrs, sentinelAddrs := ports[:size], ports[size:2*size], ports[2*size:]
	for i := range size {
		boot = append(boot, fmt.Sprintf("n%d=%s", i+1, raftAddrs[i]))
	}
	for i := range size {
		extra := append([]string{"--bootstrap", strings.Join(boot, ",")}, flags...)
		n := newNode(t, dir, fmt.Sprintf("n%d", i+1), raftAddrs[i], grpcAddrs[i], sentinelAddrs[i], extra...)
		n.bin = bin
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := n.launch(); err != nil {
			return nil, err
		}
	}
	for _, n := range c.nodes {
		if err := n.waitServing(); err != nil {
			for _, n := range c.nodes {
				n.kill()
			}
			return nil, fmt.Errorf("%s: %w", n.id, err)
		}
	}
	return c, nil
}

// waitFormed waits until the configuration lists every node with its gRPC
// address and a leader is known: from then on any node forwards writes.
func (c *cluster) waitFormed() {
	c.t.Helper()
	testwait.For(c.t, waitTimeout, "cluster formed", func() error {
		return c.checkMembers(c.nodes[0], c.nodes)
	})
}

// checkMembers asks via on which members it sees, and wants exactly want,
// all voters with a registered gRPC address, and a leader among them.
func (c *cluster) checkMembers(via *node, want []*node) error {
	resp := &coordinatorv1.ListMembersResponse{}
	if err := ctlJSON(resp, "--addr", via.grpcAddr, "members"); err != nil {
		return err
	}
	var got []string
	for _, m := range resp.GetMembers() {
		if !m.GetVoter() || m.GetGrpcAddress() == "" {
			return fmt.Errorf("member %s is not yet a voter with a gRPC address: %v", m.GetId(), m)
		}
		got = append(got, m.GetId()+"@"+m.GetGrpcAddress())
	}
	var exp []string
	for _, n := range want {
		exp = append(exp, n.id+"@"+n.grpcAddr)
	}
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		return fmt.Errorf("members %v, want %v", got, exp)
	}
	if !slices.ContainsFunc(want, func(n *node) bool { return n.id == resp.GetLeaderId() }) {
		return fmt.Errorf("leader %q is not one of the members", resp.GetLeaderId())
	}
	return nil
}

func (c *cluster) node(id string) *node {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	c.t.Fatalf("no node %q", id)
	return nil
}

// addrs is an --addr value for the given nodes.
func addrs(nodes ...*node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.grpcAddr)
	}
	return strings.Join(out, ",")
}

func without(nodes []*node, drop *node) []*node {
	return slices.DeleteFunc(slices.Clone(nodes), func(n *node) bool { return n == drop })
}

// ctlResult is one coordinatorctl run.
type ctlResult struct {
	args           []string
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func (r ctlResult) String() string {
	return fmt.Sprintf("coordinatorctl %s: exit %d after %v, stdout %q, stderr %q",
		strings.Join(r.args, " "), r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
}

// ctl runs coordinatorctl. The context's limit is far above any --timeout
// used, so a CLI that hangs fails the test instead of stalling it.
func ctl(args ...string) (ctlResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.ctl, args...)
	cmd.Env = childEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := ctlResult{args: args, stdout: out.String(), stderr: errOut.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		return r, fmt.Errorf("coordinatorctl %s: %w (stderr %q)", strings.Join(args, " "), err, r.stderr)
	}
	return r, nil
}

// mustCtl runs coordinatorctl and wants exit code 0.
func mustCtl(t testing.TB, args ...string) ctlResult {
	t.Helper()
	r, err := ctl(args...)
	if err != nil {
		t.Fatal(err)
	}
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

// ctlJSON runs a read with -o json and decodes its answer into m, which
// also checks that the output is the response message's JSON mapping.
func ctlJSON(m proto.Message, args ...string) error {
	r, err := ctl(append([]string{"-o", "json", "--timeout", "5s"}, args...)...)
	if err != nil {
		return err
	}
	if r.code != 0 {
		return errors.New(r.String())
	}
	if err := protojson.Unmarshal([]byte(r.stdout), m); err != nil {
		return fmt.Errorf("%v: decode: %w", r, err)
	}
	return nil
}

// masterNames lists the masters one node knows, sorted.
func masterNames(n *node) ([]string, error) {
	resp := &coordinatorv1.ListMastersResponse{}
	if err := ctlJSON(resp, "--addr", n.grpcAddr, "masters"); err != nil {
		return nil, err
	}
	var names []string
	for _, m := range resp.GetMasters() {
		names = append(names, m.GetName())
	}
	slices.Sort(names)
	return names, nil
}

// waitMasters waits until every given node lists exactly the given masters.
func waitMasters(t testing.TB, nodes []*node, want ...string) {
	t.Helper()
	slices.Sort(want)
	for _, n := range nodes {
		testwait.For(t, waitTimeout, n.id+" lists "+strings.Join(want, ", "), func() error {
			got, err := masterNames(n)
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("masters %v, want %v", got, want)
			}
			return nil
		})
	}
}

// leaderAmong asks the given nodes for the cluster's status and returns
// the id of the one node among them that reports itself leader.
func leaderAmong(nodes ...*node) (string, error) {
	resp := &coordinatorv1.StatusResponse{}
	if err := ctlJSON(resp, "--addr", addrs(nodes...), "status"); err != nil {
		return "", err
	}
	var leaders []string
	for _, s := range resp.GetNodes() {
		if s.GetState() == "leader" && slices.ContainsFunc(nodes, func(n *node) bool { return n.id == s.GetId() }) {
			leaders = append(leaders, s.GetId())
		}
	}
	if len(leaders) != 1 {
		return "", fmt.Errorf("want one leader among %s, status says %v", addrs(nodes...), leaders)
	}
	return leaders[0], nil
}

// waitAgreedLeader waits until every given node names the same leader, one
// of them, which reports itself leader.
func waitAgreedLeader(t testing.TB, nodes ...*node) string {
	t.Helper()
	var leader string
	testwait.For(t, waitTimeout, "a leader all of "+addrs(nodes...)+" agree on", func() error {
		resp := &coordinatorv1.StatusResponse{}
		if err := ctlJSON(resp, "--addr", addrs(nodes...), "status"); err != nil {
			return err
		}
		byID := map[string]*coordinatorv1.NodeStatus{}
		for _, s := range resp.GetNodes() {
			byID[s.GetId()] = s
		}
		leader = ""
		for _, n := range nodes {
			s := byID[n.id]
			if s == nil || s.GetLeaderId() == "" {
				return fmt.Errorf("%s knows no leader: %v", n.id, s)
			}
			if leader != "" && s.GetLeaderId() != leader {
				return fmt.Errorf("%s says the leader is %s, another node says %s", n.id, s.GetLeaderId(), leader)
			}
			leader = s.GetLeaderId()
		}
		if byID[leader].GetState() != "leader" {
			return fmt.Errorf("%s is named leader but reports %q", leader, byID[leader].GetState())
		}
		return nil
	})
	return leader
}
