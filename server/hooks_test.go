package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func delivery(kind, target string, timeout time.Duration) orchestrator.HookDelivery {
	return orchestrator.HookDelivery{Kind: kind, Target: target, Master: "mymaster", Attempt: 2, Timeout: timeout,
		Event: &fsmv1.Event{Seq: 42, Type: "+sdown", Payload: "master mymaster 127.0.0.1 6379", Epoch: 3, NodeId: "n2", AtUnixNanos: 1},
		Args:  []string{"+sdown", "master mymaster 127.0.0.1 6379"}}
}

// Exit codes as Sentinel reads them, the environment, a timeout that kills
// the whole process group, and a script that cannot start.
func TestHookRunnerScripts(t *testing.T) {
	h := newHookRunner("n1")
	out := filepath.Join(t.TempDir(), "out")
	ok := script(t, `echo "$RAFTINEL_EVENT_SEQ $RAFTINEL_EVENT_TYPE $RAFTINEL_MASTER $RAFTINEL_EVENT_EPOCH $RAFTINEL_HOOK_ATTEMPT $RAFTINEL_NODE_ID|$1|$2" > `+out+"\n")
	res := h.Run(context.Background(), delivery(fsm.OptNotificationScript, ok, 10*time.Second))
	if !res.OK {
		t.Fatalf("ok script: %+v", res)
	}
	got, _ := os.ReadFile(out)
	if want := "42 +sdown mymaster 3 2 n1|+sdown|master mymaster 127.0.0.1 6379\n"; string(got) != want {
		t.Fatalf("script saw %q, want %q", got, want)
	}
	for _, tc := range []struct {
		name, body string
		check      func(orchestrator.HookResult) bool
	}{
		{"exit 1 retried", "echo failing; exit 1\n", func(r orchestrator.HookResult) bool {
			return !r.OK && !r.Permanent && r.ExitCode == 1 && r.Detail == "failing"
		}},
		{"exit 2 permanent", "exit 2\n", func(r orchestrator.HookResult) bool { return r.Permanent && r.ExitCode == 2 }},
		{"signal", "kill -TERM $$\n", func(r orchestrator.HookResult) bool { return !r.Permanent && r.Signal == 15 }},
		{"timeout kills the group", "sleep 30 & sleep 30\n", func(r orchestrator.HookResult) bool {
			return r.TimedOut && !r.Permanent && r.Pid > 0
		}},
	} {
		res := h.Run(context.Background(), delivery(fsm.OptNotificationScript, script(t, tc.body), 300*time.Millisecond))
		if !tc.check(res) {
			t.Errorf("%s: %+v", tc.name, res)
		}
	}
	res = h.Run(context.Background(), delivery(fsm.OptNotificationScript, "/nonexistent/hook.sh", time.Second))
	if res.Signal != 99 || res.Permanent || res.OK {
		t.Errorf("missing script: %+v, want signal 99, retried", res)
	}
}

// The webhook's body, headers, and which statuses are retried.
func TestHookRunnerWebhook(t *testing.T) {
	status := http.StatusOK
	var body WebhookBody
	var header http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		header = r.Header.Clone()
		w.WriteHeader(status)
	}))
	defer srv.Close()
	h := newHookRunner("n1")
	d := delivery(fsm.OptWebhookURL, srv.URL, 5*time.Second)
	if res := h.Run(context.Background(), d); !res.OK {
		t.Fatalf("200: %+v", res)
	}
	if header.Get(HeaderIdempotencyKey) != "42" || header.Get("Content-Type") != "application/json" || header.Get("X-Raftinel-Event") != "+sdown" {
		t.Fatalf("headers %v", header)
	}
	want := WebhookBody{Seq: 42, Type: "+sdown", Payload: "master mymaster 127.0.0.1 6379", Master: "mymaster", Epoch: 3, NodeID: "n2",
		Time: "1970-01-01T00:00:00.000000001Z", Attempt: 2, Leader: "n1"}
	if body != want {
		t.Fatalf("body %+v, want %+v", body, want)
	}
	for _, tc := range []struct {
		status   int
		ok, perm bool
	}{
		{204, true, false}, {500, false, false}, {503, false, false}, {429, false, false},
		{408, false, false}, {404, false, true}, {400, false, true},
	} {
		status = tc.status
		res := h.Run(context.Background(), d)
		if res.OK != tc.ok || res.Permanent != tc.perm || !strings.Contains(res.Detail, "HTTP") {
			t.Errorf("status %d: %+v", tc.status, res)
		}
	}
	srv.Close()
	if res := h.Run(context.Background(), d); res.OK || res.Permanent {
		t.Errorf("server gone: %+v, want a retry", res)
	}
}
