package main

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var failoverStart = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// Failover answers as a node would: aborted when the request names
// 127.0.0.1:6381, promoted otherwise. It records the request and the
// deadline it came with.
func (f *fakeNode) Failover(ctx context.Context, req *coordinatorv1.FailoverRequest) (*coordinatorv1.FailoverResponse, error) {
	if dl, ok := ctx.Deadline(); ok {
		f.mu.Lock()
		f.lastDeadline = time.Until(dl)
		f.mu.Unlock()
	}
	if err := f.record(req); err != nil {
		return nil, err
	}
	out := &coordinatorv1.FailoverOutcome{Reason: "manual", Result: "promoted", Event: "+failover-end", Epoch: 4,
		StartedAt: timestamppb.New(failoverStart), FinishedAt: timestamppb.New(failoverStart.Add(1500 * time.Millisecond)),
		OldMaster: "127.0.0.1:6379", Candidate: "127.0.0.1:6380", NewMaster: "127.0.0.1:6380", Coordinated: !req.GetForce()}
	if out.Coordinated {
		out.Handover = "write-pause"
	}
	if req.GetTo() == "127.0.0.1:6381" {
		out.Result, out.Event, out.Epoch, out.Candidate, out.NewMaster = "aborted", "-failover-abort-handover-timeout", 3, req.GetTo(), out.OldMaster
		out.Detail = "127.0.0.1:6381 did not take over from 127.0.0.1:6379 within 5s; 127.0.0.1:6379 keeps serving"
	}
	return &coordinatorv1.FailoverResponse{Outcome: out, Index: 40, Candidate: out.Candidate}, nil
}

func TestFailoverPrintsTheOutcome(t *testing.T) {
	f := &fakeNode{}
	addr := serveFake(t, f)
	r := runCLI(t, nil, "--addr", addr, "failover", "mymaster")
	want := `master      mymaster
result      promoted
mode        coordinated
handover    write-pause
old-master  127.0.0.1:6379
candidate   127.0.0.1:6380
new-master  127.0.0.1:6380
epoch       4
event       +failover-end
detail      -
started     2026-12-01T10:00:00Z
finished    2026-12-01T10:00:01.5Z
took        1.5s
index       40
`
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("failover = %+v\nwant stdout\n%s", r, want)
	}
	req := f.last().(*coordinatorv1.FailoverRequest)
	if req.GetName() != "mymaster" || req.GetTo() != "" || req.GetForce() || req.GetTimeout() != nil || req.GetNoWait() {
		t.Fatalf("sent %v", req)
	}
	// The call waits as long as the failover may take: twice the
	// master's failover-timeout (3m in the fake) and the margin.
	f.mu.Lock()
	deadline := f.lastDeadline
	f.mu.Unlock()
	if deadline < 6*time.Minute || deadline > 6*time.Minute+failoverWaitMargin {
		t.Errorf("call deadline %v", deadline)
	}

	r = runCLI(t, nil, "--addr", addr, "failover", "mymaster", "--to", "127.0.0.1:6380", "--timeout", "10s")
	req = f.last().(*coordinatorv1.FailoverRequest)
	if r.code != 0 || req.GetTo() != "127.0.0.1:6380" || req.GetTimeout().AsDuration() != 10*time.Second {
		t.Fatalf("failover --to --timeout = %+v, sent %v", r, req)
	}
	r = runCLI(t, nil, "--addr", addr, "failover", "mymaster", "--force")
	if req = f.last().(*coordinatorv1.FailoverRequest); r.code != 0 || !req.GetForce() || !strings.Contains(r.stdout, "mode        forced") {
		t.Fatalf("failover --force = %+v, sent %v", r, req)
	}
}

func TestFailoverAbortExitsNonZeroWithTheOutcome(t *testing.T) {
	addr := serveFake(t, &fakeNode{})
	r := runCLI(t, nil, "--addr", addr, "failover", "mymaster", "--to", "127.0.0.1:6381")
	if r.code != exitAborted || !strings.Contains(r.stdout, "result      aborted") || !strings.Contains(r.stdout, "new-master  127.0.0.1:6379") {
		t.Fatalf("aborted failover = %+v", r)
	}
	if r.stderr != "coordinatorctl: failover of mymaster aborted: -failover-abort-handover-timeout 127.0.0.1:6381 did not take over from 127.0.0.1:6379 within 5s; 127.0.0.1:6379 keeps serving\n" {
		t.Fatalf("stderr %q", r.stderr)
	}

	r = runCLI(t, nil, "--addr", addr, "-o", "json", "failover", "mymaster", "--to", "127.0.0.1:6381")
	for _, want := range []string{`"result": "aborted"`, `"event": "-failover-abort-handover-timeout"`, `"epoch": "3"`,
		`"started_at": "2026-12-01T10:00:00Z"`, `"coordinated": true`, `"index": "40"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("JSON lacks %s:\n%s", want, r.stdout)
		}
	}
	if r.code != exitAborted {
		t.Errorf("JSON abort exit %d", r.code)
	}
}

func TestFailoverErrors(t *testing.T) {
	addr := serveFake(t, &fakeNode{})
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"failover"}, exitUsage, "want NAME"},
		{[]string{"failover", "mymaster", "--to", "nohostport"}, exitUsage, "--to"},
		{[]string{"failover", "mymaster", "--to", "127.0.0.1:1,127.0.0.1:2"}, exitUsage, "not one host:port"},
		{[]string{"failover", "mymaster", "--timeout", "0s"}, exitUsage, "not positive"},
		{[]string{"failover", "mymaster", "--force", "--timeout", "1s"}, exitUsage, "--force does not wait"},
		{[]string{"failover", "nosuch"}, exitNotFound, `unknown master "nosuch"`},
	} {
		r := runCLI(t, nil, append([]string{"--addr", addr}, tc.args...)...)
		checkFailure(t, r, tc.code, tc.want)
	}
	busy := serveFake(t, &fakeNode{writeErr: status.Error(codes.FailedPrecondition, `Failover already in progress for "mymaster"`)})
	checkFailure(t, runCLI(t, nil, "--addr", busy, "failover", "mymaster"), exitFailure, `Failover already in progress for "mymaster"`)
}

func TestFailoverHelp(t *testing.T) {
	r := runCLI(t, nil, "failover", "--help")
	for _, want := range []string{"Examples:", "--force", "--to", "catch-up", "exits with code 5"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("failover --help lacks %q: %+v", want, r)
		}
	}
}
