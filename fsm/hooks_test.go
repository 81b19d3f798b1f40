package fsm

import (
	"strings"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func hookProgressCmd(kind, target string, seq uint64, outcome fsmv1.HookOutcome) *fsmv1.Command {
	return cmdOf(&fsmv1.HookProgress{Master: "mymaster", Kind: kind, Target: target, Seq: seq, Outcome: outcome,
		Signal: 0, ExitCode: 2, Pid: 42, Attempts: 3, Detail: "HTTP 500"})
}

func TestHookSettings(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		ok         bool
	}{
		{OptNotificationScript, "/usr/local/bin/notify.sh", true},
		{OptNotificationScript, "notify.sh", false},
		{OptNotificationScript, "/bin/a\nb", false},
		{OptNotificationScript, "", true},
		{OptClientReconfigScript, "/etc/redis/reconfig.sh", true},
		{OptClientReconfigScript, "./reconfig.sh", false},
		{OptWebhookURL, "https://hooks.example.com/raftinel", true},
		{OptWebhookURL, "http://127.0.0.1:8080/", true},
		{OptWebhookURL, "ftp://example.com/", false},
		{OptWebhookURL, "hooks.example.com", false},
		{OptWebhookURL, "", true},
	} {
		a := seeded(t)
		err := a.apply(t, set("mymaster", tc.key, tc.value))
		if (err == nil) != tc.ok {
			t.Errorf("set %s %q: err %v, want ok=%v", tc.key, tc.value, err, tc.ok)
		}
		if err != nil && kindOf(err) != Invalid {
			t.Errorf("set %s %q: kind %v, want invalid", tc.key, tc.value, kindOf(err))
		}
	}
	a := newApplier()
	c := monitor("m", "127.0.0.1:6379", 1)
	c.GetMonitorMaster().Settings.NotificationScript = "/bin/true"
	if err := a.apply(t, c); kindOf(err) != Invalid {
		t.Fatalf("monitor with a script: %v, want invalid", err)
	}
}

// A hook set starts after the events before it and is delivered its own
// +set; progress moves its cursor forward only, and only for the target it
// ran.
func TestHookCursor(t *testing.T) {
	a := seeded(t)
	before := a.f.LastEventSeq()
	must(t, a, set("mymaster", OptNotificationScript, "/bin/n.sh", OptWebhookURL, "http://h/x"))
	m, _, _ := a.f.Master("mymaster")
	if got := m.GetHookDeliveredSeq(); got[OptNotificationScript] != before || got[OptWebhookURL] != before || len(got) != 2 {
		t.Fatalf("cursors %v, want both at %d", got, before)
	}
	plus := m.Events[len(m.Events)-1].GetSeq()

	if err := a.apply(t, hookProgressCmd(OptNotificationScript, "/bin/other.sh", plus, fsmv1.HookOutcome_HOOK_OUTCOME_DELIVERED)); kindOf(err) != FailedPrecondition {
		t.Fatalf("progress for another target: %v", err)
	}
	if err := a.apply(t, hookProgressCmd(OptClientReconfigScript, "/bin/n.sh", plus, fsmv1.HookOutcome_HOOK_OUTCOME_DELIVERED)); kindOf(err) != FailedPrecondition {
		t.Fatalf("progress for an unset hook: %v", err)
	}
	must(t, a, hookProgressCmd(OptNotificationScript, "/bin/n.sh", plus, fsmv1.HookOutcome_HOOK_OUTCOME_DELIVERED))
	if err := a.apply(t, hookProgressCmd(OptNotificationScript, "/bin/n.sh", plus, fsmv1.HookOutcome_HOOK_OUTCOME_DELIVERED)); kindOf(err) != FailedPrecondition {
		t.Fatalf("repeated progress: %v", err)
	}
	if err := a.apply(t, hookProgressCmd(OptNotificationScript, "/bin/n.sh", plus+100, fsmv1.HookOutcome_HOOK_OUTCOME_DELIVERED)); kindOf(err) != Invalid {
		t.Fatalf("progress past the last event: %v", err)
	}

	// A timeout records -script-timeout and keeps the cursor; giving up
	// records -script-error with Sentinel's payload and moves it.
	must(t, a, set("mymaster", OptQuorum, "1"))
	m, _, _ = a.f.Master("mymaster")
	next := m.Events[len(m.Events)-1].GetSeq()
	must(t, a, hookProgressCmd(OptNotificationScript, "/bin/n.sh", next, fsmv1.HookOutcome_HOOK_OUTCOME_TIMED_OUT))
	must(t, a, hookProgressCmd(OptNotificationScript, "/bin/n.sh", next, fsmv1.HookOutcome_HOOK_OUTCOME_GAVE_UP))
	must(t, a, hookProgressCmd(OptWebhookURL, "http://h/x", next, fsmv1.HookOutcome_HOOK_OUTCOME_GAVE_UP))
	m, _, _ = a.f.Master("mymaster")
	lines := strings.Join(eventLines(m), "\n")
	for _, want := range []string{"-script-timeout /bin/n.sh 42", "-script-error /bin/n.sh 0 2", "-webhook-error http://h/x #seq"} {
		if !strings.Contains(lines, want) {
			t.Errorf("events lack %q:\n%s", want, lines)
		}
	}
	if got := m.GetHookDeliveredSeq()[OptNotificationScript]; got != next {
		t.Fatalf("cursor %d, want %d", got, next)
	}
	if err := a.apply(t, hookProgressCmd(OptWebhookURL, "http://h/x", a.f.LastEventSeq(), fsmv1.HookOutcome_HOOK_OUTCOME_TIMED_OUT)); kindOf(err) != Invalid {
		t.Fatalf("webhook timeout outcome: %v", err)
	}

	// Clearing a hook forgets its cursor.
	must(t, a, set("mymaster", OptNotificationScript, ""))
	m, _, _ = a.f.Master("mymaster")
	if _, ok := m.GetHookDeliveredSeq()[OptNotificationScript]; ok {
		t.Fatalf("cursor kept after clearing: %v", m.GetHookDeliveredSeq())
	}
}

// Events dropped from the bounded history before a hook reached them may
// only be skipped, with -hook-skipped; retained ones may not.
func TestHookSkipsTrimmedEvents(t *testing.T) {
	a := seeded(t)
	must(t, a, set("mymaster", OptWebhookURL, "http://h/x"))
	m, _, _ := a.f.Master("mymaster")
	first := m.Events[len(m.Events)-1].GetSeq()
	if err := a.apply(t, hookProgressCmd(OptWebhookURL, "http://h/x", first, fsmv1.HookOutcome_HOOK_OUTCOME_SKIPPED)); kindOf(err) != Invalid {
		t.Fatalf("skip of a retained event: %v", err)
	}
	for i := 0; i < MaxEvents+5; i++ {
		must(t, a, cmdOf(&fsmv1.ReportVote{Master: "mymaster", NodeId: "n1", Address: mAddr, Down: i%2 == 0}))
	}
	m, _, _ = a.f.Master("mymaster")
	lost := m.GetHookLostSeq()[OptWebhookURL]
	if lost < first || lost+1 != m.Events[0].GetSeq() {
		t.Fatalf("lost up to %d, first retained %d, hook's first %d", lost, m.Events[0].GetSeq(), first)
	}
	if err := a.apply(t, hookProgressCmd(OptWebhookURL, "http://h/x", lost+1, fsmv1.HookOutcome_HOOK_OUTCOME_SKIPPED)); kindOf(err) != Invalid {
		t.Fatalf("skip past the loss: %v", err)
	}
	must(t, a, hookProgressCmd(OptWebhookURL, "http://h/x", lost, fsmv1.HookOutcome_HOOK_OUTCOME_SKIPPED))
	m, _, _ = a.f.Master("mymaster")
	if last := m.Events[len(m.Events)-1]; last.GetType() != EventHookSkipped || !strings.Contains(last.GetPayload(), "webhook-url http://h/x #seq") {
		t.Fatalf("last event %v", last)
	}
}

// Only the events a hook wants count as lost: a reconfig script loses no
// event when +sdown votes are dropped.
func TestHookLosesOnlyWantedEvents(t *testing.T) {
	a := seeded(t)
	must(t, a, set("mymaster", OptClientReconfigScript, "/bin/r.sh"))
	for i := 0; i < MaxEvents+5; i++ {
		must(t, a, cmdOf(&fsmv1.ReportVote{Master: "mymaster", NodeId: "n1", Address: mAddr, Down: i%2 == 0}))
	}
	m, _, _ := a.f.Master("mymaster")
	if got := m.GetHookLostSeq(); len(got) != 0 {
		t.Fatalf("lost %v, want nothing", got)
	}
}

func TestHookWants(t *testing.T) {
	for _, tc := range []struct {
		kind, typ string
		want      bool
	}{
		{OptNotificationScript, "+sdown", true},
		{OptNotificationScript, "+switch-master", true},
		{OptNotificationScript, "+slave", false},
		{OptNotificationScript, "+reboot", false},
		{OptNotificationScript, EventScriptError, false},
		{OptClientReconfigScript, "+switch-master", true},
		{OptClientReconfigScript, "+failover-end", false},
		{OptWebhookURL, "+slave", true},
		{OptWebhookURL, EventWebhookError, false},
		{OptWebhookURL, EventHookSkipped, false},
		{"bogus", "+sdown", false},
	} {
		if got := HookWants(tc.kind, &fsmv1.Event{Type: tc.typ}); got != tc.want {
			t.Errorf("HookWants(%s, %s) = %v, want %v", tc.kind, tc.typ, got, tc.want)
		}
	}
}
