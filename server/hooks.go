package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/raftinel/raftinel/security"
	"google.golang.org/grpc/codes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	clusterv1 "github.com/raftinel/raftinel/proto/gen/coordinator/cluster/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Environment variables a hook script gets besides the node's own.
const (
	// EnvEventSeq is the event's sequence number: the same in every run of
	// one event, so a script can tell a repeat (delivery is at least once).
	EnvEventSeq    = "RAFTINEL_EVENT_SEQ"
	EnvEventType   = "RAFTINEL_EVENT_TYPE"
	EnvMaster      = "RAFTINEL_MASTER"
	EnvEventEpoch  = "RAFTINEL_EVENT_EPOCH"
	EnvHookAttempt = "RAFTINEL_HOOK_ATTEMPT"
	EnvNodeID      = "RAFTINEL_NODE_ID"
)

// HeaderIdempotencyKey carries the event's sequence number on every webhook
// POST of that event.
const HeaderIdempotencyKey = "Idempotency-Key"

// hookCheckTimeout bounds the question to each node at SET time.
const hookCheckTimeout = 5 * time.Second

// hookOutputLimit bounds the script output kept for the log and events.
const hookOutputLimit = 512

// WebhookBody is the JSON a webhook receives, one event per POST.
type WebhookBody struct {
	// Seq is the event's sequence number, also in the Idempotency-Key
	// header: a repeat of a delivery carries the same one.
	Seq     uint64 `json:"seq"`
	Type    string `json:"type"`
	Payload string `json:"payload"`
	Master  string `json:"master"`
	Epoch   uint64 `json:"epoch"`
	// NodeID is the node whose opinion the event reports (+sdown, -sdown);
	// empty for cluster-wide events.
	NodeID string `json:"node_id,omitempty"`
	// Time is when the event was committed, RFC 3339 with nanoseconds.
	Time string `json:"time"`
	// Attempt counts this leader's runs for the event, from 1; Leader is
	// the node sending it.
	Attempt int    `json:"attempt"`
	Leader  string `json:"leader"`
}

// hookRunner runs scripts and webhook POSTs for the orchestrator.
type hookRunner struct {
	nodeID string
	client *http.Client
}

var _ orchestrator.HookRunner = (*hookRunner)(nil)

func newHookRunner(nodeID string) *hookRunner {
	return &hookRunner{nodeID: nodeID, client: &http.Client{
		// A redirect is followed by POST only for 307/308; others end the
		// delivery with the 3xx status, a failure to retry.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("more than 3 redirects")
			}
			return nil
		},
	}}
}

func (h *hookRunner) Run(ctx context.Context, d orchestrator.HookDelivery) orchestrator.HookResult {
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	if d.Kind == fsm.OptWebhookURL {
		return h.post(ctx, d)
	}
	return h.script(ctx, d)
}

// script runs d.Target with Sentinel's arguments. The script gets its own
// process group, killed as a whole at the timeout, and dies with the node
// (a new leader runs it again).
func (h *hookRunner) script(ctx context.Context, d orchestrator.HookDelivery) orchestrator.HookResult {
	e := d.Event
	cmd := exec.Command(d.Target, d.Args...)
	cmd.Env = append(os.Environ(),
		EnvEventSeq+"="+strconv.FormatUint(e.GetSeq(), 10),
		EnvEventType+"="+e.GetType(),
		EnvMaster+"="+d.Master,
		EnvEventEpoch+"="+strconv.FormatUint(e.GetEpoch(), 10),
		EnvHookAttempt+"="+strconv.Itoa(d.Attempt),
		EnvNodeID+"="+h.nodeID,
	)
	out := &tailBuffer{limit: hookOutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		// Sentinel reports a script it could not start with signal 99.
		return orchestrator.HookResult{Signal: 99, Detail: err.Error()}
	}
	pid := int32(cmd.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	timedOut := false
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
		timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	}
	res := orchestrator.HookResult{Pid: pid, TimedOut: timedOut, Detail: strings.TrimSpace(out.String())}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case err == nil && !timedOut:
		res.OK = true
	case ok && ws.Signaled():
		res.Signal = int32(ws.Signal())
	case ok:
		res.ExitCode = int32(ws.ExitStatus())
		// Sentinel: exit code 1 is retried, 2 or more is not.
		res.Permanent = res.ExitCode >= 2 && !timedOut
	}
	if res.Detail == "" && err != nil {
		res.Detail = err.Error()
	}
	return res
}

// post sends the event as JSON. 2xx is delivered; 408, 425, 429, 5xx and
// transport errors are retried; any other status is a permanent failure.
func (h *hookRunner) post(ctx context.Context, d orchestrator.HookDelivery) orchestrator.HookResult {
	e := d.Event
	body, err := json.Marshal(WebhookBody{Seq: e.GetSeq(), Type: e.GetType(), Payload: e.GetPayload(), Master: d.Master,
		Epoch: e.GetEpoch(), NodeID: e.GetNodeId(), Time: time.Unix(0, e.GetAtUnixNanos()).UTC().Format(time.RFC3339Nano),
		Attempt: d.Attempt, Leader: h.nodeID})
	if err != nil {
		return orchestrator.HookResult{Permanent: true, Detail: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Target, bytes.NewReader(body))
	if err != nil {
		return orchestrator.HookResult{Permanent: true, Detail: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "raftinel")
	req.Header.Set(HeaderIdempotencyKey, strconv.FormatUint(e.GetSeq(), 10))
	req.Header.Set("X-Raftinel-Event", e.GetType())
	resp, err := h.client.Do(req)
	if err != nil {
		return orchestrator.HookResult{TimedOut: errors.Is(ctx.Err(), context.DeadlineExceeded), Detail: err.Error()}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	res := orchestrator.HookResult{Detail: "HTTP " + resp.Status}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		res.OK = true
	case c == http.StatusRequestTimeout, c == http.StatusTooEarly, c == http.StatusTooManyRequests, c >= 500:
	default:
		res.Permanent = true
	}
	return res
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	limit int
	buf   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append([]byte(nil), t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// authorizeHookChange refuses a SET that changes a hook
// (notification-script, client-reconfig-script, webhook-url) to an API
// token without the admin role: setting a script and then forcing a
// failover runs any program on the leader, and a webhook sends every event
// out. It runs on the leader, before the checks on every node; ctx carries
// the caller's identity (forwarded by a follower). A Sentinel-protocol
// user is held, as Sentinel holds it, by --allow-script-reconfig alone.
func (s *Server) authorizeHookChange(ctx context.Context, keys []string) error {
	id, _ := security.IdentityFrom(ctx)
	return authorizeHookKeys(s.authMode(), id, keys)
}

// authorizeHookKeys is authorizeHookChange's decision.
func authorizeHookKeys(mode authMode, id security.Identity, keys []string) error {
	if !mode.tokens || id.Kind != security.KindToken || id.Role >= security.RoleAdmin {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "setting %s needs the admin role (a hook runs a program on the leader or sends every event out); %s has the %s role",
		strings.Join(keys, ", "), id.Who(), id.Role)
}

// checkHookOptions runs, on the leader, before a SET is committed: a hook
// change must be authorized, and a script setting must be allowed by every
// node of the Raft configuration (--allow-script-reconfig) and name a file
// that exists and is executable on every one of them, because any of them
// may lead and run it. The first node that refuses, lacks the file or does
// not answer is named in the error.
func (s *Server) checkHookOptions(ctx context.Context, opts []*coordinatorv1.Option) error {
	var keys []string
	var scripts []*coordinatorv1.Option
	for _, o := range opts {
		if fsm.IsHookOption(o.GetKey()) {
			keys = append(keys, strings.ToLower(o.GetKey()))
		}
		if fsm.IsScriptOption(o.GetKey()) {
			scripts = append(scripts, o)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := s.authorizeHookChange(ctx, keys); err != nil {
		return err
	}
	if len(scripts) == 0 {
		return nil
	}
	members, err := (&api{s: s}).members()
	if err != nil {
		return err
	}
	for _, o := range scripts {
		for _, m := range members {
			resp, err := s.askHookCheck(ctx, m.GetId(), m.GetGrpcAddress(), o.GetValue())
			if err != nil {
				// Not Unavailable: this node answers; another one does not,
				// and a client trying the next node would get the same.
				return &fsm.Error{Kind: fsm.FailedPrecondition, Msg: fmt.Sprintf(
					"node %s could not be asked whether it can run %s %q: %v (every node must answer before a script is set)",
					m.GetId(), strings.ToLower(o.GetKey()), o.GetValue(), err)}
			}
			if !resp.GetAllowed() {
				return &fsm.Error{Kind: fsm.FailedPrecondition, Msg: fmt.Sprintf(
					"Reconfiguration of scripts path is denied for security reasons: node %s was not started with --allow-script-reconfig (%s=true)",
					m.GetId(), envAllowScriptReconfig)}
			}
			if resp.GetProblem() != "" {
				return &fsm.Error{Kind: fsm.Invalid, Msg: fmt.Sprintf("%s %q cannot run on node %s: %s",
					strings.ToLower(o.GetKey()), o.GetValue(), m.GetId(), resp.GetProblem())}
			}
		}
	}
	return nil
}

// envAllowScriptReconfig is the variable of --allow-script-reconfig.
const envAllowScriptReconfig = "COORDINATOR_ALLOW_SCRIPT_RECONFIG"

func (s *Server) askHookCheck(ctx context.Context, id, grpcAddr, path string) (*clusterv1.HookCheckScriptResponse, error) {
	if id == s.cfg.ID {
		return s.hookCheckLocal(path), nil
	}
	if grpcAddr == "" {
		return nil, errors.New("its gRPC address is not registered yet")
	}
	conn, err := s.conn(grpcAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, hookCheckTimeout)
	defer cancel()
	// WaitForReady: a node that just restarted is reconnected to within
	// the timeout instead of failing at once on the old connection's
	// backoff.
	resp, err := clusterv1.NewClusterServiceClient(conn).HookCheckScript(ctx, &clusterv1.HookCheckScriptRequest{Path: path},
		grpc.WaitForReady(true))
	if err != nil {
		return nil, errors.New(status.Convert(err).Message())
	}
	return resp, nil
}

// hookCheckLocal answers whether this node allows scripts to be set and
// can run the one at path (empty: clearing, nothing to run).
func (s *Server) hookCheckLocal(path string) *clusterv1.HookCheckScriptResponse {
	resp := &clusterv1.HookCheckScriptResponse{NodeId: s.cfg.ID, Allowed: s.cfg.AllowScriptReconfig}
	if path == "" {
		return resp
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		resp.Problem = err.Error()
	case st.IsDir():
		resp.Problem = "it is a directory"
	case syscall.Access(path, 0x1 /* X_OK */) != nil || st.Mode()&0o111 == 0:
		resp.Problem = "it is not executable by this node's user"
	}
	return resp
}

// HookCheckScript is served by every node, never forwarded: the leader asks
// each node about itself.
func (c *clusterAPI) HookCheckScript(_ context.Context, req *clusterv1.HookCheckScriptRequest) (*clusterv1.HookCheckScriptResponse, error) {
	return c.s.hookCheckLocal(req.GetPath()), nil
}
