package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/raftinel/raftinel/fsm"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// HookRunner runs one delivery of one event to one hook: a script with
// Sentinel's arguments, or a webhook POST. It returns within d.Timeout
// (a script still running then is killed) or when ctx ends.
type HookRunner interface {
	Run(ctx context.Context, d HookDelivery) HookResult
}

// HookDelivery is one run of a hook.
type HookDelivery struct {
	// Kind is fsm.OptNotificationScript, fsm.OptClientReconfigScript or
	// fsm.OptWebhookURL; Target the script path or the URL.
	Kind, Target string
	Master       string
	Event        *fsmv1.Event
	// Args are a script's arguments (HookArgs); empty for a webhook.
	Args []string
	// Attempt counts the runs for this event under this leader, from 1.
	Attempt int
	Timeout time.Duration
}

// HookResult is how one run ended.
type HookResult struct {
	// OK: exit code 0, or an HTTP 2xx.
	OK bool
	// TimedOut: the run exceeded its timeout (a script was killed).
	TimedOut bool
	// Permanent: retrying cannot help (a script's exit code of 2 or more,
	// an HTTP 4xx other than 408, 425 and 429).
	Permanent bool
	// A script's end: the signal that ended it (99 when it could not be
	// started, as Sentinel reports a failed fork), its exit code, its pid.
	Signal, ExitCode, Pid int32
	// Detail says what happened, in words (the HTTP status, the error, the
	// script's last output).
	Detail string
}

// HookPolicy is how hooks are run and retried.
type HookPolicy struct {
	// Timeout bounds one run (Sentinel's script-max-runtime, 60 s).
	Timeout time.Duration
	// RetryDelay is the wait before the first retry; it doubles with each
	// retry up to MaxRetryDelay.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxRetries is how many times a failed run is retried before the hook
	// gives up on the event (Sentinel: 10).
	MaxRetries int
}

// DefaultHookPolicy: Sentinel's 60 s runtime and 10 retries; retries start
// after 1 s (Sentinel: 30 s) and double up to a minute.
var DefaultHookPolicy = HookPolicy{Timeout: 60 * time.Second, RetryDelay: time.Second, MaxRetryDelay: time.Minute, MaxRetries: 10}

func (p HookPolicy) withDefaults() HookPolicy {
	d := DefaultHookPolicy
	if p.Timeout > 0 {
		d.Timeout = p.Timeout
	}
	if p.RetryDelay > 0 {
		d.RetryDelay = p.RetryDelay
	}
	if p.MaxRetryDelay > 0 {
		d.MaxRetryDelay = p.MaxRetryDelay
	}
	if p.MaxRetries > 0 {
		d.MaxRetries = p.MaxRetries
	}
	if d.MaxRetryDelay < d.RetryDelay {
		d.MaxRetryDelay = d.RetryDelay
	}
	return d
}

// HookNext is what a hook of a master needs next: nothing, the loss of
// events dropped before delivery (SkipTo), or the delivery of Event.
type HookNext struct {
	SkipTo uint64
	Event  *fsmv1.Event
}

// NextHook decides, from the committed state alone, what the hook of this
// kind needs next: events it lost come first (they are older than any
// retained one), then the oldest retained event after its cursor that it
// wants. Deliveries are strictly in order: the next event is never looked
// at before the cursor has passed this one.
func NextHook(m *fsmv1.Master, kind string) HookNext {
	if fsm.HookTargets(m.GetSettings())[kind] == "" {
		return HookNext{}
	}
	cursor := m.GetHookDeliveredSeq()[kind]
	if lost := m.GetHookLostSeq()[kind]; lost > cursor {
		return HookNext{SkipTo: lost}
	}
	for _, e := range m.GetEvents() {
		if e.GetSeq() > cursor && fsm.HookWants(kind, e) {
			return HookNext{Event: e}
		}
	}
	return HookNext{}
}

// PendingHookEvents counts the retained events a hook still has to be
// delivered (its backlog).
func PendingHookEvents(m *fsmv1.Master, kind string) int {
	if fsm.HookTargets(m.GetSettings())[kind] == "" {
		return 0
	}
	n, cursor := 0, m.GetHookDeliveredSeq()[kind]
	for _, e := range m.GetEvents() {
		if e.GetSeq() > cursor && fsm.HookWants(kind, e) {
			n++
		}
	}
	return n
}

// HookArgs are a script's arguments, Sentinel's: notification-script gets
// <event-type> <event-description>; client-reconfig-script gets
// <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>,
// with role "leader" (the Raft leader runs it, once per promotion, where
// Sentinel runs it on the failover leader and on every observer) and state
// "start". A webhook has none.
func HookArgs(kind string, e *fsmv1.Event) ([]string, error) {
	switch kind {
	case fsm.OptNotificationScript:
		return []string{e.GetType(), e.GetPayload()}, nil
	case fsm.OptClientReconfigScript:
		f := strings.Fields(e.GetPayload())
		if e.GetType() != "+switch-master" || len(f) != 5 {
			return nil, fmt.Errorf("client-reconfig-script needs a +switch-master event, got %s %q", e.GetType(), e.GetPayload())
		}
		return []string{f[0], "leader", "start", f[1], f[2], f[3], f[4]}, nil
	}
	return nil, nil
}

// HookRetry decides what follows a failed run: retry after the returned
// delay, or give up. attempt is the number of runs made so far (1 after
// the first). Permanent failures are never retried; the others are, up to
// MaxRetries times, waiting RetryDelay, doubling, at most MaxRetryDelay.
func HookRetry(res HookResult, attempt int, p HookPolicy) (retry bool, delay time.Duration) {
	p = p.withDefaults()
	if res.OK || res.Permanent || attempt > p.MaxRetries {
		return false, 0
	}
	delay = p.RetryDelay
	for i := 1; i < attempt && delay < p.MaxRetryDelay; i++ {
		delay *= 2
	}
	return true, min(delay, p.MaxRetryDelay)
}

// Hook run results, as metrics label them.
const (
	HookResultOK      = "ok"
	HookResultFailed  = "failed"
	HookResultTimeout = "timeout"
)

// hookState is this leader's memory of one hook of one master: the event
// in hand, the runs made for it and when the next may start. A new leader
// starts afresh from the committed cursor, so an event whose delivery was
// under way is delivered again, with the same sequence number.
type hookState struct {
	running bool
	seq     uint64
	target  string
	runs    int
	retryAt time.Time
}

// stepHooks starts, for every hook of every master, what it needs next,
// unless a run or a commit for it is still under way or its retry wait
// has not passed, and reports whether any has something to deliver.
// Runs happen off the Step goroutine.
func (l *Leader) stepHooks(st *fsmv1.State, now time.Time) (pending bool) {
	if l.cfg.Hooks == nil || l.ctx.Err() != nil {
		return false
	}
	// Only a commit gives a hook something new to deliver: a view on which
	// none had anything is not walked again (every master, ten times a
	// second).
	l.mu.Lock()
	idle := st == l.hooksIdleOf
	l.mu.Unlock()
	if idle {
		return false
	}
	names, _ := l.viewOf(st)
	for _, name := range names {
		m := st.Masters[name]
		for kind, target := range fsm.HookTargets(m.GetSettings()) {
			next := NextHook(m, kind)
			if next.SkipTo == 0 && next.Event == nil {
				continue
			}
			pending = true
			key := name + "\x00" + kind
			l.mu.Lock()
			hs := l.hooks[key]
			if hs == nil {
				hs = &hookState{}
				l.hooks[key] = hs
			}
			if hs.running {
				l.mu.Unlock()
				continue
			}
			if next.SkipTo > 0 {
				hs.running = true
				l.mu.Unlock()
				l.hookWG.Go(func() {
					l.hookCommit(hs, &fsmv1.HookProgress{Master: name, Kind: kind, Target: target, Seq: next.SkipTo,
						Outcome: fsmv1.HookOutcome_HOOK_OUTCOME_SKIPPED})
				})
				continue
			}
			if hs.seq != next.Event.GetSeq() || hs.target != target {
				*hs = hookState{seq: next.Event.GetSeq(), target: target}
			}
			if now.Before(hs.retryAt) {
				l.mu.Unlock()
				continue
			}
			hs.running = true
			hs.runs++
			d := HookDelivery{Kind: kind, Target: target, Master: name, Event: next.Event, Attempt: hs.runs,
				Timeout: l.cfg.HookPolicy.withDefaults().Timeout}
			l.mu.Unlock()
			l.hookWG.Go(func() { l.deliver(hs, d) })
		}
	}
	if !pending {
		l.mu.Lock()
		l.hooksIdleOf = st
		l.mu.Unlock()
	}
	return pending
}

// deliver runs one delivery and commits what it led to.
func (l *Leader) deliver(hs *hookState, d HookDelivery) {
	progress := &fsmv1.HookProgress{Master: d.Master, Kind: d.Kind, Target: d.Target, Seq: d.Event.GetSeq(), Attempts: uint32(d.Attempt)}
	args, err := HookArgs(d.Kind, d.Event)
	var res HookResult
	if err != nil {
		res = HookResult{Permanent: true, ExitCode: 2, Detail: err.Error()}
	} else {
		d.Args = args
		ctx, cancel := context.WithTimeout(l.ctx, d.Timeout+time.Second)
		res = l.cfg.Hooks.Run(ctx, d)
		cancel()
	}
	if l.ctx.Err() != nil {
		// Leadership ended during the run: the next leader delivers the
		// event again.
		l.hookDone(hs, time.Time{})
		return
	}
	result := HookResultFailed
	switch {
	case res.OK:
		result = HookResultOK
	case res.TimedOut:
		result = HookResultTimeout
	}
	if l.cfg.OnHookRun != nil {
		l.cfg.OnHookRun(d.Kind, result)
	}
	progress.Signal, progress.ExitCode, progress.Pid, progress.Detail = res.Signal, res.ExitCode, res.Pid, res.Detail
	if res.OK {
		progress.Outcome = fsmv1.HookOutcome_HOOK_OUTCOME_DELIVERED
		l.hookCommit(hs, progress)
		return
	}
	l.cfg.Log.Warn("hook run failed", "master", d.Master, "hook", d.Kind, "target", d.Target, "seq", d.Event.GetSeq(),
		"event", d.Event.GetType(), "attempt", d.Attempt, "timed_out", res.TimedOut, "signal", res.Signal,
		"exit_code", res.ExitCode, "detail", res.Detail)
	retry, delay := HookRetry(res, d.Attempt, l.cfg.HookPolicy)
	if !retry {
		progress.Outcome = fsmv1.HookOutcome_HOOK_OUTCOME_GAVE_UP
		if l.cfg.OnHookGaveUp != nil {
			l.cfg.OnHookGaveUp(d.Kind)
		}
		l.hookCommit(hs, progress)
		return
	}
	if res.TimedOut && d.Kind != fsm.OptWebhookURL {
		timedOut := &fsmv1.HookProgress{Master: d.Master, Kind: d.Kind, Target: d.Target, Seq: d.Event.GetSeq(),
			Outcome: fsmv1.HookOutcome_HOOK_OUTCOME_TIMED_OUT, Pid: res.Pid, Attempts: uint32(d.Attempt)}
		if err := l.commitHook(timedOut); err != nil {
			l.cfg.Log.Warn("hook timeout not recorded", "master", d.Master, "hook", d.Kind, "err", err)
		}
	}
	l.hookDone(hs, l.cfg.Now().Add(delay))
}

func (l *Leader) commitHook(p *fsmv1.HookProgress) error {
	ctx, cancel := context.WithTimeout(l.ctx, commitTimeout)
	defer cancel()
	_, err := l.cfg.Commit.Commit(ctx, &fsmv1.Command{Kind: &fsmv1.Command_HookProgress{HookProgress: p}})
	return err
}

// hookCommit commits progress that moves the cursor; a refused one (the
// hook changed, or another run got there first) is dropped: the next Step
// reads the state again.
func (l *Leader) hookCommit(hs *hookState, p *fsmv1.HookProgress) {
	err := l.commitHook(p)
	var fe *fsm.Error
	switch {
	case err == nil:
	case errors.As(err, &fe):
		l.cfg.Log.Info("hook progress refused", "master", p.GetMaster(), "hook", p.GetKind(), "seq", p.GetSeq(), "err", err)
	default:
		l.cfg.Log.Warn("hook progress not committed: the event will be delivered again", "master", p.GetMaster(),
			"hook", p.GetKind(), "seq", p.GetSeq(), "err", err)
	}
	l.hookDone(hs, time.Time{})
}

func (l *Leader) hookDone(hs *hookState, retryAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	hs.running = false
	hs.retryAt = retryAt
}
