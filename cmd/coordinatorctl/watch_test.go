package main

import (
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// streamFake is a node for the streaming commands: each WatchMaster or
// WatchEvents stream plays the next script, then ends with its error.
type streamFake struct {
	fakeNode
	smu     sync.Mutex
	watches []watchScript
	events  []eventScript
	reqs    []proto.Message
}

type watchScript struct {
	updates []*coordinatorv1.WatchMasterResponse
	// release, when set, holds the end of the stream until it is closed.
	release <-chan struct{}
	end     error
}

type eventScript struct {
	afterSeq string
	events   []*coordinatorv1.Event
	end      error
}

func (f *streamFake) ListMembers(context.Context, *coordinatorv1.ListMembersRequest) (*coordinatorv1.ListMembersResponse, error) {
	return &coordinatorv1.ListMembersResponse{}, nil
}

func (f *streamFake) WatchMaster(req *coordinatorv1.WatchMasterRequest, s coordinatorv1.CoordinatorService_WatchMasterServer) error {
	f.smu.Lock()
	f.reqs = append(f.reqs, proto.Clone(req))
	if len(f.watches) == 0 {
		f.smu.Unlock()
		return status.Error(codes.Unavailable, "no script left")
	}
	sc := f.watches[0]
	f.watches = f.watches[1:]
	f.smu.Unlock()
	for _, u := range sc.updates {
		if err := s.Send(u); err != nil {
			return err
		}
	}
	if sc.release != nil {
		select {
		case <-sc.release:
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
	return sc.end
}

// rowWriter is a command's stdout that closes seen once it holds want.
type rowWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
}

func (w *rowWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	n, err := w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return n, err
}

func (w *rowWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (f *streamFake) WatchEvents(req *coordinatorv1.WatchEventsRequest, s coordinatorv1.CoordinatorService_WatchEventsServer) error {
	f.smu.Lock()
	f.reqs = append(f.reqs, proto.Clone(req))
	if len(f.events) == 0 {
		f.smu.Unlock()
		return status.Error(codes.Unavailable, "no script left")
	}
	sc := f.events[0]
	f.events = f.events[1:]
	f.smu.Unlock()
	if err := s.SendHeader(metadata.Pairs("raftinel-after-seq", sc.afterSeq)); err != nil {
		return err
	}
	for _, e := range sc.events {
		if err := s.Send(&coordinatorv1.WatchEventsResponse{Event: e}); err != nil {
			return err
		}
	}
	return sc.end
}

func (f *streamFake) GetMasterDetail(_ context.Context, req *coordinatorv1.GetMasterDetailRequest) (*coordinatorv1.GetMasterDetailResponse, error) {
	if req.GetName() != "mymaster" {
		return nil, status.Errorf(codes.NotFound, "unknown master %q", req.GetName())
	}
	return &coordinatorv1.GetMasterDetailResponse{Detail: &coordinatorv1.MasterDetail{Master: testMaster(),
		Events: []*coordinatorv1.Event{event(3, "+monitor", "master mymaster 127.0.0.1 6379 quorum 2", ""),
			event(5, "+sdown", "master mymaster 127.0.0.1 6379", "n2")}}}, nil
}

func (f *streamFake) TransferLeadership(_ context.Context, req *coordinatorv1.TransferLeadershipRequest) (*coordinatorv1.TransferLeadershipResponse, error) {
	f.smu.Lock()
	f.reqs = append(f.reqs, proto.Clone(req))
	f.smu.Unlock()
	return &coordinatorv1.TransferLeadershipResponse{PreviousLeaderId: "n1", LeaderId: req.GetId()}, nil
}

func (f *streamFake) requests() []proto.Message {
	f.smu.Lock()
	defer f.smu.Unlock()
	return append([]proto.Message(nil), f.reqs...)
}

func serveStreamFake(t *testing.T, f *streamFake) string {
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

var eventTime = time.Date(2026, 12, 1, 18, 0, 0, 123e6, time.UTC)

func event(seq uint64, typ, payload, node string) *coordinatorv1.Event {
	return &coordinatorv1.Event{Seq: seq, At: timestamppb.New(eventTime.Add(time.Duration(seq) * time.Second)), Master: "mymaster",
		Type: typ, Payload: payload, NodeId: node, Epoch: 2}
}

func masterUpdate(addr string, epoch uint64) *coordinatorv1.WatchMasterResponse {
	return &coordinatorv1.WatchMasterResponse{Name: "mymaster", Address: addr, Epoch: epoch, Index: 10 + epoch}
}

var removed = status.Error(codes.NotFound, `master "mymaster" is no longer monitored`)

func TestWatchPrintsChangesAcrossNodes(t *testing.T) {
	// The first node ends its stream at its maximum age, once watch has
	// printed its epoch (watch shows the newest master it has: ended at
	// once, the second node's epoch 2 could come before watch looked);
	// the second repeats epoch 1 (watch must not print it twice) and then
	// the master goes.
	stdout := &rowWriter{want: "127.0.0.1:6379", seen: make(chan struct{})}
	first := &streamFake{watches: []watchScript{{updates: []*coordinatorv1.WatchMasterResponse{masterUpdate("127.0.0.1:6379", 1)},
		release: stdout.seen, end: status.Error(codes.Unavailable, "stream reached this node's maximum stream age")}}}
	second := &streamFake{watches: []watchScript{{updates: []*coordinatorv1.WatchMasterResponse{
		masterUpdate("127.0.0.1:6379", 1), masterUpdate("127.0.0.1:6380", 2)}, end: removed}}}
	addrs := serveStreamFake(t, first) + "," + serveStreamFake(t, second)

	r := runCLIOut(t, nil, stdout, "--addr", addrs, "watch", "mymaster")
	checkExit(t, r, exitNotFound, `master "mymaster" is no longer monitored`)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	row := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  (\S+) +(\d+)  (\d+)$`)
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") {
		t.Fatalf("watch printed %q", r.stdout)
	}
	for i, want := range [][]string{{"127.0.0.1:6379", "1", "11"}, {"127.0.0.1:6380", "2", "12"}} {
		m := row.FindStringSubmatch(lines[i+1])
		if m == nil || m[1] != want[0] || m[2] != want[1] || m[3] != want[2] {
			t.Errorf("row %d = %q, want %v", i+1, lines[i+1], want)
		}
	}
	// The second node was asked to resume from the epoch already printed.
	if reqs := second.requests(); len(reqs) == 0 || reqs[0].(*coordinatorv1.WatchMasterRequest).GetResumeFromEpoch() != 1 {
		t.Errorf("second node got %v", reqs)
	}
}

func TestWatchJSONLines(t *testing.T) {
	f := &streamFake{watches: []watchScript{{updates: []*coordinatorv1.WatchMasterResponse{masterUpdate("127.0.0.1:6379", 1)}, end: removed}}}
	r := runCLI(t, nil, "--addr", serveStreamFake(t, f), "watch", "mymaster", "-o", "json")
	checkExit(t, r, exitNotFound, "no longer monitored")
	var got watchLine
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("watch -o json printed %q: %v", r.stdout, err)
	}
	if got.Name != "mymaster" || got.Address != "127.0.0.1:6379" || got.Epoch != 1 || got.Index != 11 || got.Time.IsZero() {
		t.Fatalf("watch -o json = %+v", got)
	}
}

func TestWatchUnknownMaster(t *testing.T) {
	f := &streamFake{watches: []watchScript{{end: status.Error(codes.NotFound, `unknown master "nope"`)}}}
	r := runCLI(t, nil, "--addr", serveStreamFake(t, f), "watch", "nope")
	checkFailure(t, r, exitNotFound, `coordinatorctl: unknown master "nope"`)
}

func TestEventsStoredHistory(t *testing.T) {
	addr := serveStreamFake(t, &streamFake{})
	r := runCLI(t, nil, "--addr", addr, "events")
	want := "TIME                         SEQ  EPOCH  TYPE                                PAYLOAD\n" +
		"2026-12-01T18:00:03.123Z       3      2  +monitor                            master mymaster 127.0.0.1 6379 quorum 2\n" +
		"2026-12-01T18:00:05.123Z       5      2  +sdown                              master mymaster 127.0.0.1 6379 (node n2)\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("events = %+v\nwant stdout\n%s", r, want)
	}
	r = runCLI(t, nil, "--addr", addr, "events", "mymaster", "-o", "json")
	want = `{"seq":3,"time":"2026-12-01T18:00:03.123Z","type":"+monitor","payload":"master mymaster 127.0.0.1 6379 quorum 2","master":"mymaster","epoch":2}` + "\n" +
		`{"seq":5,"time":"2026-12-01T18:00:05.123Z","type":"+sdown","payload":"master mymaster 127.0.0.1 6379","master":"mymaster","epoch":2,"node_id":"n2"}` + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("events -o json = %+v\nwant\n%s", r, want)
	}
	checkFailure(t, runCLI(t, nil, "--addr", addr, "events", "nope"), exitNotFound, `unknown master "nope"`)
}

func TestEventsFollowResumesWithoutRepeats(t *testing.T) {
	sw := event(9, "+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380", "")
	first := &streamFake{events: []eventScript{{afterSeq: "7", events: []*coordinatorv1.Event{event(8, "+odown", "master mymaster 127.0.0.1 6379 #quorum 2/2", "")},
		end: status.Error(codes.Unavailable, "node is shutting down")}}}
	second := &streamFake{events: []eventScript{{afterSeq: "8", events: []*coordinatorv1.Event{sw},
		end: status.Error(codes.Aborted, "events after seq 9 are no longer held by this node")}}}
	r := runCLI(t, nil, "--addr", serveStreamFake(t, first)+","+serveStreamFake(t, second), "events", "mymaster", "--follow", "--replay")
	checkExit(t, r, exitFailure, "events after seq 9 are no longer held")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "+odown") || !strings.Contains(lines[2], "+switch-master ") ||
		!strings.HasSuffix(lines[2], "  mymaster 127.0.0.1 6379 127.0.0.1 6380") {
		t.Fatalf("events --follow printed %q", r.stdout)
	}
	// Replay is asked once; the second node resumes after seq 8.
	r1 := first.requests()[0].(*coordinatorv1.WatchEventsRequest)
	r2 := second.requests()[0].(*coordinatorv1.WatchEventsRequest)
	if !r1.GetReplay() || r1.GetMaster() != "mymaster" || r2.GetReplay() || r2.GetAfterSeq() != 8 || r2.GetMaster() != "mymaster" {
		t.Fatalf("requests %v then %v", r1, r2)
	}
}

func TestTransferLeadershipCommand(t *testing.T) {
	f := &streamFake{}
	addr := serveStreamFake(t, f)
	r := runCLI(t, nil, "--addr", addr, "transfer-leadership", "n2")
	if r.code != 0 || r.stdout != "leadership moved from n1 to n2\n" {
		t.Fatalf("transfer-leadership n2 = %+v", r)
	}
	if got := f.requests()[0].(*coordinatorv1.TransferLeadershipRequest).GetId(); got != "n2" {
		t.Fatalf("sent id %q", got)
	}
	r = runCLI(t, nil, "--addr", addr, "transfer-leadership")
	if r.code != 0 || !strings.Contains(r.stdout, "n1 handed leadership over; the new leader was not known yet") {
		t.Fatalf("transfer-leadership = %+v", r)
	}
	r = runCLI(t, nil, "--addr", addr, "transfer-leadership", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"previous_leader_id": "n1"`) {
		t.Fatalf("transfer-leadership -o json = %+v", r)
	}
}

func TestStreamingUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"watch"},
		{"watch", "a", "b"},
		{"events", "a", "b"},
		{"events", "--replay"},
		{"transfer-leadership", "a", "b"},
	} {
		checkFailure(t, runCLI(t, nil, args...), exitUsage, "")
	}
	for _, cmd := range []string{"watch", "events", "transfer-leadership"} {
		if r := runCLI(t, nil, cmd, "--help"); r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("%s --help = %+v", cmd, r)
		}
	}
}

// checkExit is checkFailure for a command that printed lines before it
// failed.
func checkExit(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "coordinatorctl: ") || !strings.Contains(r.stderr, want) {
		t.Fatalf("exit %d, stderr %q; want exit %d and one line with %q", r.code, r.stderr, code, want)
	}
}
