package fsm

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Hook option keys, as Sentinel names its two scripts; the webhook is
// Raftinel's own. They are also the hook kinds of HookProgress and of a
// master's hook cursors.
const (
	OptNotificationScript   = "notification-script"
	OptClientReconfigScript = "client-reconfig-script"
	OptWebhookURL           = "webhook-url"
)

// HookKinds lists the hook kinds in a fixed order.
var HookKinds = []string{OptNotificationScript, OptClientReconfigScript, OptWebhookURL}

// Events about the hooks themselves. They are recorded like any other
// event but never delivered to a hook (as in Sentinel, where -script-error
// carries no instance and so runs no notification script): a failing hook
// must not feed itself.
const (
	EventScriptError   = "-script-error"
	EventScriptTimeout = "-script-timeout"
	EventWebhookError  = "-webhook-error"
	EventHookSkipped   = "-hook-skipped"
)

// IsHookEvent reports whether an event type is about the hooks themselves.
func IsHookEvent(typ string) bool {
	switch typ {
	case EventScriptError, EventScriptTimeout, EventWebhookError, EventHookSkipped:
		return true
	}
	return false
}

// warningEvents are the events Sentinel logs at WARNING level with an
// instance, the ones it runs notification-script for; Raftinel's own
// -failover-abort-handover-timeout and +empty-restart are added.
var warningEvents = map[string]bool{
	"+monitor": true, "-monitor": true, "+reset-master": true, "+sdown": true, "-sdown": true, "+odown": true, "-odown": true,
	"+try-failover": true, "+elected-leader": true, "-failover-abort-not-elected": true, "+failover-state-select-slave": true,
	EventNoGoodReplica: true, "+selected-slave": true, "-failover-abort-slave-timeout": true, "+promoted-slave": true,
	"+failover-state-reconf-slaves": true, "+failover-end-for-timeout": true, "+failover-end": true, "+switch-master": true,
	"+config-update-from": true, "+set": true, EventHandoverTimeout: true, EventEmptyRestart: true,
}

// HookWants reports whether a hook of this kind is delivered the event:
// notification-script gets Sentinel's warning-level events,
// client-reconfig-script every +switch-master, the webhook every event;
// none gets the events about hooks themselves.
func HookWants(kind string, e *fsmv1.Event) bool {
	if IsHookEvent(e.GetType()) {
		return false
	}
	switch kind {
	case OptNotificationScript:
		return warningEvents[e.GetType()]
	case OptClientReconfigScript:
		return e.GetType() == "+switch-master"
	case OptWebhookURL:
		return true
	}
	return false
}

// loseHookEvents records, for every hook of m, the newest of the dropped
// events it wanted and had not been delivered yet.
func loseHookEvents(m *fsmv1.Master, dropped []*fsmv1.Event) {
	for kind := range HookTargets(m.GetSettings()) {
		cursor := m.GetHookDeliveredSeq()[kind]
		for _, e := range dropped {
			if e.GetSeq() > cursor && e.GetSeq() > m.GetHookLostSeq()[kind] && HookWants(kind, e) {
				if m.HookLostSeq == nil {
					m.HookLostSeq = map[string]uint64{}
				}
				m.HookLostSeq[kind] = e.GetSeq()
			}
		}
	}
}

// IsScriptOption reports whether a SET option names a hook script (the
// options a node must allow with --allow-script-reconfig).
func IsScriptOption(key string) bool {
	k := strings.ToLower(key)
	return k == OptNotificationScript || k == OptClientReconfigScript
}

// IsHookOption reports whether a SET option names any hook.
func IsHookOption(key string) bool {
	return IsScriptOption(key) || strings.EqualFold(key, OptWebhookURL)
}

// HookTargets returns, by kind, the hooks a master has set.
func HookTargets(s *fsmv1.MasterSettings) map[string]string {
	out := map[string]string{}
	if v := s.GetNotificationScript(); v != "" {
		out[OptNotificationScript] = v
	}
	if v := s.GetClientReconfigScript(); v != "" {
		out[OptClientReconfigScript] = v
	}
	if v := s.GetWebhookUrl(); v != "" {
		out[OptWebhookURL] = v
	}
	return out
}

const maxHookTargetLen = 2048

func validateHooks(s *fsmv1.MasterSettings) error {
	for _, kind := range []string{OptNotificationScript, OptClientReconfigScript} {
		p := HookTargets(s)[kind]
		if p == "" {
			continue
		}
		if len(p) > maxHookTargetLen || strings.ContainsAny(p, "\x00\r\n") || !filepath.IsAbs(p) {
			return errorf(Invalid, "%s must be an absolute path to an executable file (at most %d bytes), got %q", kind, maxHookTargetLen, p)
		}
	}
	if u := s.GetWebhookUrl(); u != "" {
		parsed, err := url.Parse(u)
		if err != nil || len(u) > maxHookTargetLen || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			return errorf(Invalid, "%s must be an http:// or https:// URL (at most %d bytes), got %q", OptWebhookURL, maxHookTargetLen, u)
		}
	}
	return nil
}

// startHooks points the cursor of every hook whose target changes at the
// newest event recorded so far, so that it is delivered the events of the
// command that sets it (its own +set) and everything after; a hook that is
// cleared forgets its cursor.
func startHooks(r *recorder, m *fsmv1.Master, next *fsmv1.MasterSettings) {
	before, after := HookTargets(m.GetSettings()), HookTargets(next)
	for _, kind := range HookKinds {
		if before[kind] == after[kind] {
			continue
		}
		delete(m.HookLostSeq, kind)
		if after[kind] == "" {
			delete(m.HookDeliveredSeq, kind)
			continue
		}
		if m.HookDeliveredSeq == nil {
			m.HookDeliveredSeq = map[string]uint64{}
		}
		m.HookDeliveredSeq[kind] = r.st.GetLastEventSeq()
	}
}

func hookProgress(r *recorder, c *fsmv1.HookProgress) error {
	m, ok := r.st.Masters[c.GetMaster()]
	if !ok {
		return UnknownMaster(c.GetMaster())
	}
	target, known := HookTargets(m.GetSettings())[c.GetKind()], false
	for _, k := range HookKinds {
		known = known || k == c.GetKind()
	}
	if !known {
		return errorf(Invalid, "unknown hook kind %q", c.GetKind())
	}
	if target == "" || target != c.GetTarget() {
		return errorf(FailedPrecondition, "the %s of master %q is no longer %q", c.GetKind(), c.GetMaster(), c.GetTarget())
	}
	cursor := m.GetHookDeliveredSeq()[c.GetKind()]
	if c.GetSeq() <= cursor {
		return errorf(FailedPrecondition, "the %s of master %q is already past event %d (at %d)", c.GetKind(), c.GetMaster(), c.GetSeq(), cursor)
	}
	if c.GetSeq() > r.st.GetLastEventSeq() {
		return errorf(Invalid, "event %d does not exist yet (last %d)", c.GetSeq(), r.st.GetLastEventSeq())
	}
	script := c.GetKind() != OptWebhookURL
	advance, seq := true, c.GetSeq()
	switch c.GetOutcome() {
	case fsmv1.HookOutcome_HOOK_OUTCOME_DELIVERED:
	case fsmv1.HookOutcome_HOOK_OUTCOME_GAVE_UP:
		if script {
			// Sentinel's payload: <path> <signal> <exitcode>.
			r.add(m, EventScriptError, fmt.Sprintf("%s %d %d", target, c.GetSignal(), c.GetExitCode()), "")
		} else {
			r.add(m, EventWebhookError, fmt.Sprintf("%s #seq %d #attempts %d %s", target, c.GetSeq(), c.GetAttempts(), c.GetDetail()), "")
		}
	case fsmv1.HookOutcome_HOOK_OUTCOME_SKIPPED:
		if c.GetSeq() > m.GetHookLostSeq()[c.GetKind()] {
			return errorf(Invalid, "the %s of master %q lost no event up to %d: deliver it, do not skip it", c.GetKind(), c.GetMaster(), c.GetSeq())
		}
		// The -hook-skipped event itself pushes the oldest retained event
		// out of a full history: skip that one too, or the skip would
		// lose it and call for another skip.
		to := c.GetSeq()
		if len(m.GetEvents()) >= MaxEvents && m.GetEvents()[0].GetSeq() > to {
			to = m.GetEvents()[0].GetSeq()
		}
		r.add(m, EventHookSkipped, fmt.Sprintf("%s %s #seq %d-%d no longer retained", c.GetKind(), target, cursor+1, to), "")
		seq = to
	case fsmv1.HookOutcome_HOOK_OUTCOME_TIMED_OUT:
		if !script {
			return errorf(Invalid, "a webhook has no timed-out outcome (its timeout is a failed run)")
		}
		// Sentinel's payload: <path> <pid>. The run is retried.
		r.add(m, EventScriptTimeout, fmt.Sprintf("%s %d", target, c.GetPid()), "")
		advance = false
	default:
		return errorf(Invalid, "hook progress without an outcome")
	}
	if advance {
		if m.HookDeliveredSeq == nil {
			m.HookDeliveredSeq = map[string]uint64{}
		}
		m.HookDeliveredSeq[c.GetKind()] = seq
	}
	return nil
}
