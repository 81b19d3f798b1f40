package orchestrator

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func TestHookRetry(t *testing.T) {
	p := HookPolicy{Timeout: time.Second, RetryDelay: time.Second, MaxRetryDelay: 5 * time.Second, MaxRetries: 4}
	for _, tc := range []struct {
		name    string
		res     HookResult
		attempt int
		retry   bool
		delay   time.Duration
	}{
		{"ok", HookResult{OK: true}, 1, false, 0},
		{"exit 1, first", HookResult{ExitCode: 1}, 1, true, time.Second},
		{"exit 1, second", HookResult{ExitCode: 1}, 2, true, 2 * time.Second},
		{"exit 1, third", HookResult{ExitCode: 1}, 3, true, 4 * time.Second},
		{"capped", HookResult{ExitCode: 1}, 4, true, 5 * time.Second},
		{"retries spent", HookResult{ExitCode: 1}, 5, false, 0},
		{"signal", HookResult{Signal: 9}, 1, true, time.Second},
		{"timeout", HookResult{TimedOut: true, Signal: 9}, 2, true, 2 * time.Second},
		{"exit 2 is permanent", HookResult{ExitCode: 2, Permanent: true}, 1, false, 0},
	} {
		retry, delay := HookRetry(tc.res, tc.attempt, p)
		if retry != tc.retry || delay != tc.delay {
			t.Errorf("%s: retry %v after %v, want %v after %v", tc.name, retry, delay, tc.retry, tc.delay)
		}
	}
	// Zero fields take the defaults: 10 retries.
	if retry, _ := HookRetry(HookResult{ExitCode: 1}, 10, HookPolicy{}); !retry {
		t.Error("default policy: no 10th retry")
	}
	if retry, _ := HookRetry(HookResult{ExitCode: 1}, 11, HookPolicy{}); retry {
		t.Error("default policy: an 11th retry")
	}
}

func TestHookArgs(t *testing.T) {
	for _, tc := range []struct {
		kind, typ, payload string
		want               []string
		err                bool
	}{
		{fsm.OptNotificationScript, "+sdown", "master m 10.0.0.1 6379", []string{"+sdown", "master m 10.0.0.1 6379"}, false},
		{fsm.OptClientReconfigScript, "+switch-master", "m 10.0.0.1 6379 10.0.0.2 6380",
			[]string{"m", "leader", "start", "10.0.0.1", "6379", "10.0.0.2", "6380"}, false},
		{fsm.OptClientReconfigScript, "+switch-master", "m 10.0.0.1", nil, true},
		{fsm.OptClientReconfigScript, "+sdown", "master m 10.0.0.1 6379", nil, true},
		{fsm.OptWebhookURL, "+sdown", "x", nil, false},
	} {
		got, err := HookArgs(tc.kind, &fsmv1.Event{Type: tc.typ, Payload: tc.payload})
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("%s %s: %q, %v; want %q, err=%v", tc.kind, tc.typ, got, err, tc.want, tc.err)
		}
	}
}

func TestNextHook(t *testing.T) {
	ev := func(seq uint64, typ string) *fsmv1.Event { return &fsmv1.Event{Seq: seq, Type: typ} }
	events := []*fsmv1.Event{ev(3, "+slave"), ev(5, "+sdown"), ev(6, "-script-error"), ev(8, "+switch-master")}
	settings := &fsmv1.MasterSettings{NotificationScript: "/n", ClientReconfigScript: "/r", WebhookUrl: "http://h/"}
	for _, tc := range []struct {
		name   string
		kind   string
		cursor uint64
		lost   uint64
		want   HookNext
	}{
		{"first wanted", fsm.OptNotificationScript, 0, 0, HookNext{Event: events[1]}},
		{"after the cursor", fsm.OptNotificationScript, 5, 0, HookNext{Event: events[3]}},
		{"nothing left", fsm.OptNotificationScript, 8, 0, HookNext{}},
		{"reconfig only switch-master", fsm.OptClientReconfigScript, 0, 0, HookNext{Event: events[3]}},
		{"webhook gets +slave", fsm.OptWebhookURL, 0, 0, HookNext{Event: events[0]}},
		{"webhook never gets hook events", fsm.OptWebhookURL, 5, 0, HookNext{Event: events[3]}},
		{"lost first", fsm.OptWebhookURL, 1, 2, HookNext{SkipTo: 2}},
		{"loss already passed", fsm.OptWebhookURL, 2, 2, HookNext{Event: events[0]}},
	} {
		m := &fsmv1.Master{Settings: settings, Events: events, HookDeliveredSeq: map[string]uint64{tc.kind: tc.cursor},
			HookLostSeq: map[string]uint64{tc.kind: tc.lost}}
		if got := NextHook(m, tc.kind); got.SkipTo != tc.want.SkipTo || got.Event != tc.want.Event {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if got := NextHook(&fsmv1.Master{Events: events}, fsm.OptWebhookURL); got.Event != nil || got.SkipTo != 0 {
		t.Errorf("no hook set: %+v", got)
	}
}

// fakeHooks records every run and answers with result (OK when nil). A
// run whose event matches block waits until its context ends.
type fakeHooks struct {
	mu     sync.Mutex
	runs   []HookDelivery
	result func(d HookDelivery) HookResult
	block  func(d HookDelivery) bool
}

func (f *fakeHooks) Run(ctx context.Context, d HookDelivery) HookResult {
	f.mu.Lock()
	f.runs = append(f.runs, d)
	result, block := f.result, f.block
	f.mu.Unlock()
	if block != nil && block(d) {
		<-ctx.Done()
		return HookResult{TimedOut: true, Detail: ctx.Err().Error()}
	}
	if result == nil {
		return HookResult{OK: true}
	}
	return result(d)
}

func (f *fakeHooks) seqs(kind string) []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint64
	for _, r := range f.runs {
		if r.Kind == kind {
			out = append(out, r.Event.GetSeq())
		}
	}
	return out
}

func setOpts(kv ...string) *fsmv1.Command {
	c := &fsmv1.SetMasterOptions{Name: masterName}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Options = append(c.Options, &fsmv1.Option{Key: kv[i], Value: kv[i+1]})
	}
	return &fsmv1.Command{Kind: &fsmv1.Command_SetMasterOptions{SetMasterOptions: c}}
}

func newHookEnv(t *testing.T, h *fakeHooks, p HookPolicy) *env {
	e := newEnv(t, nil)
	e.hooks, e.hookPolicy = h, p
	e.start()
	return e
}

// hookStep runs one pass and waits for the hook runs it started.
func (e *env) hookStep() {
	e.step()
	e.leader.Wait()
}

func wanted(m *fsmv1.Master, kind string, after uint64) []uint64 {
	var out []uint64
	for _, ev := range m.GetEvents() {
		if ev.GetSeq() > after && fsm.HookWants(kind, ev) {
			out = append(out, ev.GetSeq())
		}
	}
	return out
}

// Every hook gets, in order and once, every event it wants from the one
// that set it on; the cursor ends at the last.
func TestHooksDeliverInOrder(t *testing.T) {
	h := &fakeHooks{}
	e := newHookEnv(t, h, HookPolicy{})
	start := e.fsm.LastEventSeq()
	e.mustCommit(setOpts(fsm.OptNotificationScript, "/n.sh", fsm.OptWebhookURL, "http://h/", fsm.OptClientReconfigScript, "/r.sh"))
	for i := range 3 {
		e.vote("n1", i%2 == 0)
	}
	for range 20 {
		e.hookStep()
	}
	m := e.master()
	for _, kind := range fsm.HookKinds {
		want := wanted(m, kind, start)
		if got := h.seqs(kind); !slices.Equal(got, want) {
			t.Errorf("%s: delivered %v, want %v", kind, got, want)
		}
		if len(want) > 0 && m.GetHookDeliveredSeq()[kind] != want[len(want)-1] {
			t.Errorf("%s: cursor %d, want %d", kind, m.GetHookDeliveredSeq()[kind], want[len(want)-1])
		}
	}
	if len(h.seqs(fsm.OptNotificationScript)) < 3 {
		t.Fatalf("notification-script got %v: want the +set and the votes' events", h.seqs(fsm.OptNotificationScript))
	}
	if n := e.hookRuns[fsm.OptWebhookURL+" ok"]; n != len(h.seqs(fsm.OptWebhookURL)) {
		t.Errorf("ok runs counted %d, webhook runs %d", n, len(h.seqs(fsm.OptWebhookURL)))
	}
}

// A script that exits 1 is retried after 1 s, 2 s, then gives up with
// -script-error <path> <signal> <exitcode>, and the next event follows.
func TestHookFailureIsRetriedThenGivenUp(t *testing.T) {
	h := &fakeHooks{result: func(d HookDelivery) HookResult { return HookResult{ExitCode: 1, Detail: "exit status 1"} }}
	e := newHookEnv(t, h, HookPolicy{RetryDelay: time.Second, MaxRetryDelay: time.Minute, MaxRetries: 2})
	e.mustCommit(setOpts(fsm.OptNotificationScript, "/n.sh"))
	first := e.fsm.LastEventSeq()
	e.hookStep()
	e.hookStep()
	if got := h.seqs(fsm.OptNotificationScript); !slices.Equal(got, []uint64{first}) {
		t.Fatalf("runs %v before the retry delay, want one of %d", got, first)
	}
	e.clock.Advance(time.Second)
	e.hookStep()
	e.clock.Advance(time.Second)
	e.hookStep()
	if got := len(h.seqs(fsm.OptNotificationScript)); got != 2 {
		t.Fatalf("%d runs 1 s into a 2 s wait, want 2", got)
	}
	e.clock.Advance(time.Second)
	e.hookStep()
	m := e.master()
	if got := len(h.seqs(fsm.OptNotificationScript)); got != 3 {
		t.Fatalf("%d runs, want 3", got)
	}
	if m.GetHookDeliveredSeq()[fsm.OptNotificationScript] != first {
		t.Fatalf("cursor %d, want %d after giving up", m.GetHookDeliveredSeq()[fsm.OptNotificationScript], first)
	}
	last := m.GetEvents()[len(m.GetEvents())-1]
	if last.GetType() != fsm.EventScriptError || last.GetPayload() != "/n.sh 0 1" {
		t.Fatalf("last event %s %q, want -script-error /n.sh 0 1", last.GetType(), last.GetPayload())
	}
	if e.hookRuns[fsm.OptNotificationScript+" failed"] != 3 {
		t.Fatalf("runs counted %v", e.hookRuns)
	}
	// The -script-error itself is never delivered: nothing more runs.
	e.clock.Advance(time.Minute)
	e.hookStep()
	if got := len(h.seqs(fsm.OptNotificationScript)); got != 3 {
		t.Fatalf("%d runs after giving up, want 3", got)
	}
}

// Exit code 2 or more is not retried; a timed-out run records
// -script-timeout and is retried.
func TestHookPermanentFailureAndTimeout(t *testing.T) {
	calls := 0
	h := &fakeHooks{result: func(d HookDelivery) HookResult {
		calls++
		if calls == 1 {
			return HookResult{TimedOut: true, Signal: 9, Pid: 4242}
		}
		return HookResult{ExitCode: 3, Permanent: true}
	}}
	e := newHookEnv(t, h, HookPolicy{RetryDelay: time.Second})
	e.mustCommit(setOpts(fsm.OptNotificationScript, "/n.sh"))
	e.hookStep()
	e.clock.Advance(time.Second)
	e.hookStep()
	var types []string
	for _, ev := range e.master().GetEvents() {
		types = append(types, ev.GetType()+" "+ev.GetPayload())
	}
	all := strings.Join(types, "\n")
	if !strings.Contains(all, "-script-timeout /n.sh 4242") || !strings.Contains(all, "-script-error /n.sh 0 3") {
		t.Fatalf("events:\n%s", all)
	}
	if got := len(h.seqs(fsm.OptNotificationScript)); got != 2 {
		t.Fatalf("%d runs, want 2", got)
	}
}

// A leader that stops in the middle of a run commits nothing for it; the
// next leader delivers the same event again, same sequence number, and
// goes on from there.
func TestHookResumedByNextLeader(t *testing.T) {
	h := &fakeHooks{}
	e := newHookEnv(t, h, HookPolicy{})
	e.mustCommit(setOpts(fsm.OptWebhookURL, "http://h/"))
	e.vote("n1", true)
	first := e.fsm.LastEventSeq() - 1
	h.block = func(d HookDelivery) bool { return d.Event.GetSeq() > first }
	var before []uint64
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		e.step()
		before = h.seqs(fsm.OptWebhookURL)
		if len(before) > 0 && before[len(before)-1] > first {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if len(before) == 0 || before[len(before)-1] <= first {
		t.Fatalf("runs %v: the blocked one never started", before)
	}
	blocked := before[len(before)-1]
	e.leader.Stop()
	e.leader.Wait()
	if got := e.master().GetHookDeliveredSeq()[fsm.OptWebhookURL]; got >= blocked {
		t.Fatalf("cursor %d moved past the interrupted run of %d", got, blocked)
	}
	h.mu.Lock()
	h.block = nil
	h.mu.Unlock()
	e.start()
	for range 10 {
		e.hookStep()
	}
	after := h.seqs(fsm.OptWebhookURL)[len(before):]
	if len(after) == 0 || after[0] != blocked {
		t.Fatalf("new leader delivered %v, want %d first again", after, blocked)
	}
	if got := e.master().GetHookDeliveredSeq()[fsm.OptWebhookURL]; got != e.fsm.LastEventSeq() && got < blocked {
		t.Fatalf("cursor %d after resuming", got)
	}
}

// Events a hook wanted that left the bounded history before their turn are
// skipped with -hook-skipped, then delivery goes on with the retained ones.
func TestHookSkipsLostEvents(t *testing.T) {
	h := &fakeHooks{}
	e := newHookEnv(t, h, HookPolicy{})
	e.mustCommit(setOpts(fsm.OptWebhookURL, "http://h/"))
	for i := range fsm.MaxEvents + 10 {
		e.vote("n1", i%2 == 0)
	}
	lost := e.master().GetHookLostSeq()[fsm.OptWebhookURL]
	if lost == 0 {
		t.Fatal("nothing lost")
	}
	e.hookStep()
	m := e.master()
	found := false
	for _, ev := range m.GetEvents() {
		found = found || ev.GetType() == fsm.EventHookSkipped
	}
	if !found || m.GetHookDeliveredSeq()[fsm.OptWebhookURL] < lost {
		t.Fatalf("no -hook-skipped, or cursor %d below the loss %d", m.GetHookDeliveredSeq()[fsm.OptWebhookURL], lost)
	}
	for range 3 {
		e.hookStep()
	}
	if got := h.seqs(fsm.OptWebhookURL); len(got) == 0 || got[0] <= lost {
		m := e.master()
		t.Fatalf("delivered %v, want only events after %d; cursor %v lost %v first %d last %d; trace:\n%s", got, lost,
			m.GetHookDeliveredSeq(), m.GetHookLostSeq(), m.GetEvents()[0].GetSeq(), e.fsm.LastEventSeq(), e.dump(0))
	}
}

// The leader's loop passes the same view until the next commit, and a
// view on which no hook has anything to deliver is not walked again: a
// failed run, which commits nothing, is still retried on that view, and
// an event committed later is delivered.
func TestHookRetriedOnAnUnchangedView(t *testing.T) {
	fail := true
	h := &fakeHooks{result: func(d HookDelivery) HookResult {
		if fail {
			return HookResult{ExitCode: 1, Detail: "exit status 1"}
		}
		return HookResult{OK: true}
	}}
	e := newHookEnv(t, h, HookPolicy{RetryDelay: time.Second, MaxRetryDelay: time.Minute, MaxRetries: 5})
	viewStep := func() {
		e.leader.Step(e.fsm.View())
		e.leader.Wait()
	}
	e.mustCommit(setOpts(fsm.OptNotificationScript, "/n.sh"))
	first := e.fsm.LastEventSeq()
	viewStep()
	fail = false
	e.clock.Advance(time.Second)
	viewStep() // the retry, on the view the failure left unchanged
	if got := h.seqs(fsm.OptNotificationScript); !slices.Equal(got, []uint64{first, first}) {
		t.Fatalf("runs %v, want %d twice", got, first)
	}
	for range 3 {
		viewStep() // nothing left: the view is idle
	}
	e.vote("n1", true)
	viewStep()
	if got := h.seqs(fsm.OptNotificationScript); len(got) != 3 || got[2] <= first {
		t.Fatalf("runs %v: the event committed after an idle view was not delivered", got)
	}
}
