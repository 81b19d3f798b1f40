package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"github.com/raftinel/raftinel/server"
)

// hookRun is one line a recording script wrote: the event's sequence
// number from RAFTINEL_EVENT_SEQ, the run's attempt and node, and its
// arguments.
type hookRun struct {
	seq     uint64
	attempt string
	node    string
	args    string
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// recordingScript logs every run, one line per run, to log; while the file
// hold exists it then waits, so a test can catch a run in the middle.
func recordingScript(t *testing.T, dir, name, log, hold, tail string) string {
	path := filepath.Join(dir, name)
	writeScript(t, path, fmt.Sprintf(`printf '%%s|%%s|%%s|%%s\n' "$RAFTINEL_EVENT_SEQ" "$RAFTINEL_HOOK_ATTEMPT" "$RAFTINEL_NODE_ID" "$*" >> %q
while [ -e %q ]; do sleep 0.05; done
%s
`, log, hold, tail))
	return path
}

func readRuns(t *testing.T, log string) []hookRun {
	t.Helper()
	f, err := os.Open(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []hookRun
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.SplitN(sc.Text(), "|", 4)
		if len(p) != 4 {
			t.Fatalf("bad log line %q", sc.Text())
		}
		seq, err := strconv.ParseUint(p[0], 10, 64)
		if err != nil {
			t.Fatalf("bad sequence number in %q", sc.Text())
		}
		out = append(out, hookRun{seq: seq, attempt: p[1], node: p[2], args: p[3]})
	}
	return out
}

// wantedSeqs lists, from one node's history of the master, the events a
// hook of this kind must be delivered from seq from on, with the arguments
// Sentinel's layout gives them.
func wantedSeqs(t *testing.T, n *node, master, kind string, from uint64) map[uint64]string {
	t.Helper()
	d, err := detail(n, master)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]string{}
	for _, e := range d.GetEvents() {
		if e.GetSeq() < from || !fsm.HookWants(kind, &fsmv1.Event{Type: e.GetType()}) {
			continue
		}
		switch kind {
		case fsm.OptNotificationScript:
			out[e.GetSeq()] = e.GetType() + " " + e.GetPayload()
		case fsm.OptClientReconfigScript:
			f := strings.Fields(e.GetPayload())
			out[e.GetSeq()] = strings.Join([]string{f[0], "leader", "start", f[1], f[2], f[3], f[4]}, " ")
		}
	}
	return out
}

// A notification script and a client-reconfig script that record their
// runs see every event they are due at least once, in order, across a
// SIGKILL of the leader in the middle of a run; the run that was cut off is
// made again by the next leader with the same RAFTINEL_EVENT_SEQ and the
// same arguments.
func TestHookScriptsSurviveLeaderKill(t *testing.T) {
	redistest.Require(t)
	dir := t.TempDir()
	log, hold := filepath.Join(dir, "runs.log"), filepath.Join(dir, "hold")
	notify := recordingScript(t, dir, "notify.sh", log, hold, "")
	rlog := filepath.Join(dir, "reconfig.log")
	reconfig := recordingScript(t, dir, "reconfig.sh", rlog, filepath.Join(dir, "no-hold"), "")
	c := startClusterWith(t, 3, "--allow-script-reconfig", "--hook-retry-delay", "100ms")
	g := startGroup(t, "hooked", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)

	if err := os.WriteFile(hold, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCtl(t, "--addr", addrs(c.nodes...), "set", g.name, "notification-script", notify, "client-reconfig-script", reconfig)
	// The first run (the +set) waits on the hold file: kill the leader in it.
	testwait.For(t, waitTimeout, "the first notification run", func() error {
		if len(readRuns(t, log)) == 0 {
			return fmt.Errorf("no run yet")
		}
		return nil
	})
	first := readRuns(t, log)[0]
	old := g.master.Addr()
	g.master.Kill()
	checkFailedOver(t, c, g, old)

	leader := waitAgreedLeader(t, c.nodes...)
	if first.node != leader {
		t.Fatalf("the run was made by %s, the leader is %s", first.node, leader)
	}
	c.node(leader).kill()
	survivors := without(c.nodes, c.node(leader))
	next := waitAgreedLeader(t, survivors...)
	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}

	want := wantedSeqs(t, survivors[0], g.name, fsm.OptNotificationScript, first.seq)
	testwait.For(t, waitTimeout, "every event delivered to the notification script", func() error {
		want = wantedSeqs(t, survivors[0], g.name, fsm.OptNotificationScript, first.seq)
		seen := map[uint64]bool{}
		for _, r := range readRuns(t, log) {
			seen[r.seq] = true
		}
		for seq := range want {
			if !seen[seq] {
				return fmt.Errorf("event %d (%s) not delivered yet", seq, want[seq])
			}
		}
		return nil
	})
	runs := readRuns(t, log)
	// The interrupted run is made again by the next leader, same seq.
	again := slices.IndexFunc(runs[1:], func(r hookRun) bool { return r.seq == first.seq && r.node == next })
	if again < 0 {
		t.Fatalf("the run of event %d cut off by the kill was not made again by %s: %v", first.seq, next, runs)
	}
	checkRuns(t, runs, want)
	if !strings.HasPrefix(want[first.seq], "+set ") {
		t.Fatalf("first delivered event %d is %q, want the +set", first.seq, want[first.seq])
	}
	for _, typ := range []string{"+sdown", "+odown", "+try-failover", "+promoted-slave", "+switch-master", "+failover-end"} {
		if !slices.ContainsFunc(runs, func(r hookRun) bool { return strings.HasPrefix(r.args, typ+" ") }) {
			t.Errorf("no %s delivered: %v", typ, runs)
		}
	}

	// client-reconfig-script: the one promotion, Sentinel's seven arguments.
	rwant := wantedSeqs(t, survivors[0], g.name, fsm.OptClientReconfigScript, 0)
	if len(rwant) != 1 {
		t.Fatalf("want one +switch-master, got %v", rwant)
	}
	testwait.For(t, waitTimeout, "the reconfig script run", func() error {
		if len(readRuns(t, rlog)) == 0 {
			return fmt.Errorf("no run")
		}
		return nil
	})
	checkRuns(t, readRuns(t, rlog), rwant)
}

// checkRuns checks recorded runs against the wanted events: no run of an
// event not due, every repeat with the same arguments, and first runs in
// increasing sequence order.
func checkRuns(t *testing.T, runs []hookRun, want map[uint64]string) {
	t.Helper()
	var order []uint64
	args := map[uint64]string{}
	for _, r := range runs {
		w, ok := want[r.seq]
		if !ok {
			t.Errorf("run of event %d, not one the hook is due: %+v", r.seq, r)
			continue
		}
		if r.args != w {
			t.Errorf("event %d run with %q, want %q", r.seq, r.args, w)
		}
		if prev, ok := args[r.seq]; ok {
			if prev != r.args {
				t.Errorf("event %d repeated with other arguments: %q then %q", r.seq, prev, r.args)
			}
			continue
		}
		args[r.seq] = r.args
		order = append(order, r.seq)
	}
	if !slices.IsSorted(order) {
		t.Errorf("first runs out of order: %v", order)
	}
	for seq := range want {
		if _, ok := args[seq]; !ok {
			t.Errorf("event %d (%s) never delivered", seq, want[seq])
		}
	}
}

// A script that exits 1 is retried (--hook-max-retries 2: three runs, same
// RAFTINEL_EVENT_SEQ, attempts 1 to 3), then given up with Sentinel's
// -script-error <path> <signal> <exitcode>, and the leader's metrics count
// the failed runs and the give-up.
func TestHookFailingScriptIsRetriedAndReported(t *testing.T) {
	redistest.Require(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "runs.log")
	fail := recordingScript(t, dir, "fail.sh", log, filepath.Join(dir, "no-hold"), "exit 1")
	mc := startMetricsCluster(t, 3, "--allow-script-reconfig", "--hook-retry-delay", "100ms", "--hook-max-retries", "2")
	g := startGroup(t, "failing", nil, nil)
	g.monitor(t, mc.cluster, 2, 3*time.Second)
	mustCtl(t, "--addr", addrs(mc.nodes...), "set", g.name, "notification-script", fail)

	testwait.For(t, waitTimeout, "-script-error recorded", func() error {
		d, err := detail(mc.nodes[0], g.name)
		if err != nil {
			return err
		}
		e := findEvent(d, fsm.EventScriptError)
		if e == nil {
			return fmt.Errorf("events %v", eventTypes(d))
		}
		if want := fail + " 0 1"; e.GetPayload() != want {
			t.Fatalf("-script-error %q, want %q", e.GetPayload(), want)
		}
		return nil
	})
	runs := readRuns(t, log)
	if len(runs) != 3 {
		t.Fatalf("%d runs, want 3: %+v", len(runs), runs)
	}
	for i, r := range runs {
		if r.seq != runs[0].seq || r.attempt != strconv.Itoa(i+1) || !strings.HasPrefix(r.args, "+set master failing ") {
			t.Fatalf("run %d: %+v, want event %d attempt %d of the +set", i, r, runs[0].seq, i+1)
		}
	}
	leader := waitAgreedLeader(t, mc.nodes...)
	i := slices.IndexFunc(mc.nodes, func(n *node) bool { return n.id == leader })
	metrics := scrapeText(t, mc.metrics[i])
	for _, want := range []string{
		`raftinel_hook_runs_total{kind="notification-script",result="failed"} 3`,
		`raftinel_hook_gave_up_total{kind="notification-script"} 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("the leader's metrics lack %q", want)
		}
	}
	// The -script-error is not delivered to the failing script itself.
	if n := len(readRuns(t, log)); n != 3 {
		t.Fatalf("%d runs after giving up, want 3", n)
	}
}

func scrapeText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// SET of a script is refused, naming the node, when a node lacks the file
// or was not started with --allow-script-reconfig; a webhook URL needs
// neither.
func TestHookScriptSetChecksEveryNode(t *testing.T) {
	redistest.Require(t)
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.sh")
	writeScript(t, ok, "exit 0\n")
	plain := filepath.Join(dir, "plain.sh")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := startClusterWith(t, 3, "--allow-script-reconfig")
	g := startGroup(t, "checked", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)
	all := addrs(c.nodes...)

	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.sh"), "no such file"},
		{plain, "not executable"},
		{dir, "directory"},
	} {
		r, err := ctl("--addr", all, "set", g.name, "notification-script", tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 4 || !strings.Contains(r.stderr, "on node n1") || !strings.Contains(r.stderr, tc.want) {
			t.Fatalf("set %s: %v; want exit 4 naming node n1 and %q", tc.path, r, tc.want)
		}
	}
	mustCtl(t, "--addr", all, "set", g.name, "notification-script", ok, "webhook-url", "http://127.0.0.1:1/hook")

	// n3 restarted without --allow-script-reconfig: refused, naming it.
	n3 := c.node("n3")
	n3.stop()
	n3.extra = slices.DeleteFunc(slices.Clone(n3.extra), func(s string) bool { return s == "--allow-script-reconfig" })
	n3.start()
	c.waitFormed()
	r, err := ctl("--addr", all, "set", g.name, "client-reconfig-script", ok)
	if err != nil {
		t.Fatal(err)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "node n3 was not started with --allow-script-reconfig") {
		t.Fatalf("set on a cluster where n3 denies scripts: %v", r)
	}
	mustCtl(t, "--addr", all, "set", g.name, "webhook-url", "http://127.0.0.1:2/hook")
}

// A webhook receives every event of the master from the +set on, each as
// one JSON POST whose Idempotency-Key is the event's sequence number, in
// order (first receipts), across a real failover.
func TestHookWebhookReceivesEveryEvent(t *testing.T) {
	redistest.Require(t)
	var mu sync.Mutex
	var got []server.WebhookBody
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b server.WebhookBody
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.Header.Get(server.HeaderIdempotencyKey) != strconv.FormatUint(b.Seq, 10) {
			t.Errorf("bad POST: %v, Idempotency-Key %q, body %+v", err, r.Header.Get(server.HeaderIdempotencyKey), b)
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}))
	defer srv.Close()
	c := startCluster(t, 3)
	g := startGroup(t, "webhooked", nil, nil)
	g.monitor(t, c, 2, 3*time.Second)
	mustCtl(t, "--addr", addrs(c.nodes...), "set", g.name, "webhook-url", srv.URL+"/raftinel")
	old := g.master.Addr()
	g.master.Kill()
	checkFailedOver(t, c, g, old)

	var from uint64
	testwait.For(t, waitTimeout, "every event posted", func() error {
		d, err := detail(c.nodes[0], g.name)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		seen := map[uint64]server.WebhookBody{}
		for _, b := range got {
			seen[b.Seq] = b
		}
		for _, e := range d.GetEvents() {
			if e.GetType() == "+set" && strings.Contains(e.GetPayload(), " webhook-url ") {
				from = e.GetSeq()
			}
		}
		if from == 0 {
			return fmt.Errorf("no +set of the webhook in the history")
		}
		for _, e := range d.GetEvents() {
			if e.GetSeq() < from || fsm.IsHookEvent(e.GetType()) {
				continue
			}
			b, ok := seen[e.GetSeq()]
			if !ok {
				return fmt.Errorf("event %d %s not posted yet", e.GetSeq(), e.GetType())
			}
			if b.Type != e.GetType() || b.Payload != e.GetPayload() || b.Master != g.name || b.Epoch != e.GetEpoch() {
				t.Fatalf("event %d posted as %+v, want %s %q epoch %d", e.GetSeq(), b, e.GetType(), e.GetPayload(), e.GetEpoch())
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	var order []uint64
	firsts := map[uint64]bool{}
	for _, b := range got {
		if !firsts[b.Seq] {
			firsts[b.Seq] = true
			order = append(order, b.Seq)
		}
	}
	if !slices.IsSorted(order) || order[0] != from {
		t.Fatalf("first receipts %v, want in order from %d", order, from)
	}
	if !slices.ContainsFunc(got, func(b server.WebhookBody) bool { return b.Type == "+switch-master" }) {
		t.Fatalf("no +switch-master posted")
	}
}
