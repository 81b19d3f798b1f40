package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// fakeNode answers like a node with one master, "mymaster", and records
// the last write it received.
type fakeNode struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	mu       sync.Mutex
	lastReq  proto.Message
	lastRead proto.Message
	writeErr error         // returned by every write when set
	block    chan struct{} // when set, reads wait on it (or the deadline)
	// lastDeadline is the time a Failover call had left when it arrived.
	lastDeadline time.Duration
}

func (f *fakeNode) record(req proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastReq = proto.Clone(req)
	return f.writeErr
}

func (f *fakeNode) last() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastReq
}

func (f *fakeNode) Monitor(_ context.Context, req *coordinatorv1.MonitorRequest) (*coordinatorv1.MonitorResponse, error) {
	return &coordinatorv1.MonitorResponse{Index: 12}, f.record(req)
}

func (f *fakeNode) Set(_ context.Context, req *coordinatorv1.SetRequest) (*coordinatorv1.SetResponse, error) {
	return &coordinatorv1.SetResponse{Index: 13}, f.record(req)
}

func (f *fakeNode) Remove(_ context.Context, req *coordinatorv1.RemoveRequest) (*coordinatorv1.RemoveResponse, error) {
	return &coordinatorv1.RemoveResponse{Index: 14}, f.record(req)
}

func (f *fakeNode) RemoveNode(_ context.Context, req *coordinatorv1.RemoveNodeRequest) (*coordinatorv1.RemoveNodeResponse, error) {
	return &coordinatorv1.RemoveNodeResponse{Index: 15}, f.record(req)
}

func (f *fakeNode) ListMasters(ctx context.Context, req *coordinatorv1.ListMastersRequest) (*coordinatorv1.ListMastersResponse, error) {
	f.mu.Lock()
	f.lastRead = proto.Clone(req)
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &coordinatorv1.ListMastersResponse{Masters: []*coordinatorv1.Master{testMaster()}, Index: 12}, nil
}

func (f *fakeNode) GetMaster(_ context.Context, req *coordinatorv1.GetMasterRequest) (*coordinatorv1.GetMasterResponse, error) {
	f.mu.Lock()
	f.lastRead = proto.Clone(req)
	f.mu.Unlock()
	if req.GetName() != "mymaster" {
		return nil, status.Errorf(codes.NotFound, "unknown master %q", req.GetName())
	}
	return &coordinatorv1.GetMasterResponse{Master: testMaster(), Index: 12}, nil
}

func (f *fakeNode) GetMasterDetail(_ context.Context, req *coordinatorv1.GetMasterDetailRequest) (*coordinatorv1.GetMasterDetailResponse, error) {
	f.mu.Lock()
	f.lastRead = proto.Clone(req)
	f.mu.Unlock()
	if req.GetName() != "mymaster" {
		return nil, status.Errorf(codes.NotFound, "unknown master %q", req.GetName())
	}
	return &coordinatorv1.GetMasterDetailResponse{Detail: &coordinatorv1.MasterDetail{Master: testMaster()}, Index: 12}, nil
}

// serveFake serves f on a free 127.0.0.1 port until the test ends.
func serveFake(t *testing.T, f *fakeNode) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coordinatorv1.RegisterCoordinatorServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// closedAddr is an address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return runCLIOut(t, env, &bytes.Buffer{}, args...)
}

// runCLIOut is runCLI writing stdout to out, for a test that watches the
// output while the command runs.
func runCLIOut(t *testing.T, env map[string]string, out interface {
	io.Writer
	fmt.Stringer
}, args ...string) result {
	t.Helper()
	var errOut bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// checkFailure asserts the failure contract: the exit code and exactly one
// line on stderr, prefixed, containing want.
func checkFailure(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "coordinatorctl: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one prefixed line: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr %q does not contain %q", r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("stdout on failure: %q", r.stdout)
	}
}

func TestMonitorSendsSettings(t *testing.T) {
	f := &fakeNode{}
	addr := serveFake(t, f)
	r := runCLI(t, nil, "--addr", addr, "monitor", "mymaster", "127.0.0.1:6379", "--quorum", "2",
		"--down-after", "1500ms", "--failover-timeout", "1m", "--parallel-syncs", "3",
		"--auth-user", "app", "--auth-pass", "pw", "--max-lag", "1024", "--ping-period", "100ms", "--master-reboot-down-after-period", "30s")
	if r.code != 0 || r.stdout != "monitoring mymaster at 127.0.0.1:6379 (index 12)\n" || r.stderr != "" {
		t.Fatalf("monitor = %+v", r)
	}
	req := f.last().(*coordinatorv1.MonitorRequest)
	s := req.GetSettings()
	if req.GetName() != "mymaster" || req.GetAddress() != "127.0.0.1:6379" || s.GetQuorum() != 2 ||
		s.GetDownAfter().AsDuration() != 1500*time.Millisecond || s.GetFailoverTimeout().AsDuration() != time.Minute ||
		s.GetParallelSyncs() != 3 || s.GetAuthUser() != "app" || s.GetAuthPass() != "pw" || s.GetMaxLagBytes() != 1024 ||
		s.GetPingPeriod().AsDuration() != 100*time.Millisecond || s.GetMasterRebootDownAfterPeriod().AsDuration() != 30*time.Second {
		t.Fatalf("monitor sent %v", req)
	}

	// Settings left out stay unset, so the server applies its defaults.
	if r := runCLI(t, nil, "--addr", addr, "monitor", "m2", "127.0.0.1:6380", "--quorum", "1"); r.code != 0 {
		t.Fatalf("monitor with defaults = %+v", r)
	}
	s = f.last().(*coordinatorv1.MonitorRequest).GetSettings()
	if s.GetDownAfter() != nil || s.GetFailoverTimeout() != nil || s.GetParallelSyncs() != 0 || s.GetPingPeriod() != nil ||
		s.GetMasterRebootDownAfterPeriod() != nil {
		t.Fatalf("unset flags were sent as %v", s)
	}
}

func TestMonitorUsageErrors(t *testing.T) {
	addr := serveFake(t, &fakeNode{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"monitor", "m", "127.0.0.1:6379"}, `required flag(s) "quorum" not set`},
		{[]string{"monitor", "m", "--quorum", "2"}, "want NAME HOST:PORT, got 1 argument(s)"},
		{[]string{"monitor", "m", "127.0.0.1:6379", "--quorum", "two"}, `invalid argument "two" for "--quorum"`},
		{[]string{"monitor", "m", "127.0.0.1:6379", "--quorum", "2", "--down-after", "0s"}, "not positive"},
		{[]string{"monitor", "m", "127.0.0.1:6379", "--quorum", "2", "--down-after", "1000"}, "no unit"},
		{[]string{"monitor", "m", "127.0.0.1:6379", "--quorum", "2", "--failover-timeout", "1.5ms"}, "whole number of milliseconds"},
		{[]string{"monitor", "m", "127.0.0.1:6379", "--quorum", "2", "--parallel-syncs", "0"}, "1 or more"},
	} {
		r := runCLI(t, nil, append([]string{"--addr", addr}, tc.args...)...)
		checkFailure(t, r, exitUsage, tc.want)
		if !strings.Contains(r.stderr, "see 'coordinatorctl monitor --help'") {
			t.Errorf("%v: no help hint in %q", tc.args, r.stderr)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"stauts"},
		{"status", "extra"},
		{"master"},
		{"remove"},
		{"remove-node"},
		{"set", "mymaster"},
		{"set", "mymaster", "quorum"},
		{"set"},
		{"masters", "-o", "yaml"},
		{"masters", "--timeout", "0s"},
		{"masters", "--addr", "nohostport"},
		{"masters", "--nope"},
	} {
		r := runCLI(t, nil, args...)
		checkFailure(t, r, exitUsage, "")
	}
}

func TestSetSendsOptionsAndHidesPassword(t *testing.T) {
	f := &fakeNode{}
	addr := serveFake(t, f)
	r := runCLI(t, nil, "--addr", addr, "set", "mymaster", "quorum", "3", "auth-pass", "s3cret", "down-after-milliseconds", "1s")
	if r.code != 0 || strings.Contains(r.stdout, "s3cret") || r.stdout != "mymaster: set quorum 3, auth-pass (hidden), down-after-milliseconds 1s (index 13)\n" {
		t.Fatalf("set = %+v", r)
	}
	req := f.last().(*coordinatorv1.SetRequest)
	if len(req.GetOptions()) != 3 || req.GetOptions()[1].GetKey() != "auth-pass" || req.GetOptions()[1].GetValue() != "s3cret" {
		t.Fatalf("set sent %v", req)
	}
}

func TestWritesConfirm(t *testing.T) {
	addr := serveFake(t, &fakeNode{})
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"remove", "mymaster"}, "removed mymaster (index 14)\n"},
		{[]string{"remove-node", "n4"}, "removed node n4 from the cluster (index 15)\n"},
		{[]string{"-o", "json", "remove", "mymaster"}, "{\n  \"index\": \"14\"\n}\n"},
	} {
		r := runCLI(t, nil, append([]string{"--addr", addr}, tc.args...)...)
		if r.code != 0 || r.stdout != tc.want || r.stderr != "" {
			t.Errorf("%v = %+v, want stdout %q", tc.args, r, tc.want)
		}
	}
}

func TestServerErrorsMapToExitCodes(t *testing.T) {
	addr := serveFake(t, &fakeNode{})
	checkFailure(t, runCLI(t, nil, "--addr", addr, "master", "nosuch"), exitNotFound, "coordinatorctl: unknown master \"nosuch\"\n")

	for code, exit := range map[codes.Code]int{
		codes.InvalidArgument:    exitInvalid,
		codes.AlreadyExists:      exitInvalid,
		codes.NotFound:           exitNotFound,
		codes.FailedPrecondition: exitFailure,
		codes.Internal:           exitFailure,
	} {
		f := &fakeNode{writeErr: status.Error(code, "the reason\non two lines")}
		a := serveFake(t, f)
		checkFailure(t, runCLI(t, nil, "--addr", a, "remove", "mymaster"), exit, "coordinatorctl: the reason on two lines\n")
	}
}

func TestTriesAddressesInOrder(t *testing.T) {
	f := &fakeNode{}
	good := serveFake(t, f)
	down := closedAddr(t)
	noLeader := serveFake(t, &fakeNode{writeErr: status.Error(codes.Unavailable, "not leader, and no leader is known")})

	// A refused connection and a node without a leader both move on.
	r := runCLI(t, nil, "--addr", down+","+noLeader+","+good, "remove", "mymaster")
	if r.code != 0 || r.stdout != "removed mymaster (index 14)\n" {
		t.Fatalf("remove through the third address = %+v", r)
	}
	// When all fail, the message tells a node that is down from a node
	// that answered it cannot serve.
	r = runCLI(t, nil, "--addr", down+","+noLeader, "remove", "mymaster")
	checkFailure(t, r, exitFailure, "no node could serve the request: "+down+": dial tcp "+down+": connect: connection refused; "+
		noLeader+" answered: not leader, and no leader is known")

	// A definite answer does not: asking another node would give the same.
	r = runCLI(t, nil, "--addr", good+","+down, "master", "nosuch")
	checkFailure(t, r, exitNotFound, "nosuch")

	// The environment gives the default list.
	r = runCLI(t, map[string]string{envAddr: down + "," + good}, "masters")
	if r.code != 0 || !strings.Contains(r.stdout, "mymaster") {
		t.Fatalf("masters with %s = %+v", envAddr, r)
	}
	// And --addr overrides it.
	r = runCLI(t, map[string]string{envAddr: good}, "--addr", down, "masters")
	checkFailure(t, r, exitFailure, down)
}

func TestNoReachableNode(t *testing.T) {
	a, b := closedAddr(t), closedAddr(t)
	start := time.Now()
	r := runCLI(t, nil, "--addr", a+","+b, "--timeout", "3s", "status")
	checkFailure(t, r, exitFailure, "no node could serve the request")
	if !strings.Contains(r.stderr, a) || !strings.Contains(r.stderr, b) {
		t.Errorf("stderr %q does not name both addresses", r.stderr)
	}
	if d := time.Since(start); d > 3*time.Second+time.Second {
		t.Errorf("took %v with --timeout 3s", d)
	}
}

func TestTimeoutBoundsAHangingNode(t *testing.T) {
	f := &fakeNode{block: make(chan struct{})}
	defer close(f.block)
	addr := serveFake(t, f)
	start := time.Now()
	r := runCLI(t, nil, "--addr", addr, "--timeout", "300ms", "masters")
	checkFailure(t, r, exitFailure, "no answer within 300ms")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v with --timeout 300ms", d)
	}
}

func TestReadsAsJSONAndTable(t *testing.T) {
	addr := serveFake(t, &fakeNode{})
	r := runCLI(t, nil, "--addr", addr, "masters")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "NAME") || !strings.Contains(r.stdout, "mymaster  127.0.0.1:6379") {
		t.Fatalf("masters = %+v", r)
	}
	r = runCLI(t, nil, "--addr", addr, "master", "mymaster", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"auth_pass_set": true`) || !strings.Contains(r.stdout, `"down_after": "1.500s"`) {
		t.Fatalf("master -o json = %+v", r)
	}
}

func TestHelpAndCompletion(t *testing.T) {
	r := runCLI(t, nil, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Exit codes") {
		t.Fatalf("--help = %+v", r)
	}
	for _, cmd := range []string{"status", "members", "remove-node", "monitor", "remove", "set", "masters", "master"} {
		r := runCLI(t, nil, cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%s --help has no examples: %+v", cmd, r)
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runCLI(t, map[string]string{envAddr: "garbage"}, "completion", shell)
		if r.code != 0 || len(r.stdout) < 100 {
			t.Errorf("completion %s = exit %d, %d bytes, stderr %q", shell, r.code, len(r.stdout), r.stderr)
		}
	}
}

func TestMinIndexAsksForConsistentReads(t *testing.T) {
	f := &fakeNode{}
	addr := serveFake(t, f)
	lastRead := func() proto.Message {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.lastRead
	}
	if r := runCLI(t, nil, "--addr", addr, "masters"); r.code != 0 {
		t.Fatal(r)
	}
	if c := lastRead().(*coordinatorv1.ListMastersRequest).GetConsistency(); c != nil {
		t.Errorf("masters without --min-index sent %v", c)
	}
	if r := runCLI(t, nil, "--addr", addr, "masters", "--min-index", "12"); r.code != 0 {
		t.Fatal(r)
	}
	if got := lastRead().(*coordinatorv1.ListMastersRequest).GetConsistency().GetMinIndex(); got != 12 {
		t.Errorf("masters --min-index 12 sent min_index %d", got)
	}
	if r := runCLI(t, nil, "--addr", addr, "master", "mymaster", "--min-index", "7"); r.code != 0 {
		t.Fatal(r)
	}
	if got := lastRead().(*coordinatorv1.GetMasterDetailRequest).GetConsistency().GetMinIndex(); got != 7 {
		t.Errorf("master --min-index 7 sent min_index %d", got)
	}
	checkFailure(t, runCLI(t, nil, "--addr", addr, "masters", "--min-index", "-1"), exitUsage, "--min-index")
}
