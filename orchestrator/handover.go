package orchestrator

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

const (
	// handoverGrace is how long past the catch-up timeout the leader lets
	// Redis end its own FAILOVER before it sends FAILOVER ABORT.
	handoverGrace = 2 * time.Second
	// candidateCheck bounds the INFO that asks whether the candidate has
	// taken over: a frozen candidate must not stall the leader's loop long
	// enough to look like a pause of this node (TILT).
	candidateCheck = time.Second
	// pauseMargin is how long a CLIENT PAUSE outlasts the catch-up time,
	// so that it still holds while the candidate is promoted and the old
	// master re-pointed.
	pauseMargin = 3 * actionTimeout
)

// handover drives a coordinated failover (FAILOVER_PHASE_HANDOVER). The
// fast path pauses writes on the old master (CLIENT PAUSE WRITE), commits
// the pause with the offset the candidate must reach, polls the
// candidate's INFO every few milliseconds until it has that offset,
// promotes it, commits the promotion (which tells every client:
// +switch-master, WatchMaster), re-points the old master and releases the
// pause, all in one pass, so that writes wait only as long as the
// candidate needs to prove it has every one. Where the old master refuses
// the pause (no CLIENT PAUSE WRITE: renamed, an ACL, an older server), the
// leader falls back to Redis's FAILOVER TO, which waits for the replica's
// once-a-second acknowledgement.
//
// It reads where the handover is from INFO and the journal, so a new
// leader resumes it safely: the candidate reports master -> commit
// Promoted; the old master's master_failover_state shows FAILOVER running
// -> wait; a committed write pause -> promote once caught up, else
// unpause and abort; no FAILOVER running and the old master still master
// -> pause (or send FAILOVER TO) again while catch-up time is left, else
// abort, the old master keeping its role.
//
// The candidate is asked only once the old master has stepped down (or
// does not answer): a frozen candidate must not hold up the checks that end
// the attempt in time.
func (p *pass) handover(f *fsmv1.Failover) error {
	cand, old := f.GetCandidate(), f.GetOldMaster()
	oldConn, err := p.instance(old)
	if err != nil {
		return err
	}
	candConn, err := p.instance(cand)
	if err != nil {
		return err
	}
	info, oldErr := p.ask(oldConn, actionTimeout)
	if oldErr != nil || info.Role != probe.RoleMaster {
		if ci, err := p.ask(candConn, candidateCheck); err == nil && ci.Role == probe.RoleMaster {
			return p.commitPromoted(cand)
		}
	}
	started := time.Unix(0, f.GetStartedAtUnixNanos())
	if failover.StepTimedOut(started, p.failoverTimeout(), p.now) {
		return p.abort("-failover-abort-slave-timeout", fmt.Sprintf("%s did not report role master within failover-timeout", cand))
	}
	if oldErr != nil {
		return fmt.Errorf("handover of %q: %w", p.m.GetName(), oldErr)
	}
	catchUp := time.Duration(f.GetHandoverTimeoutMs()) * time.Millisecond
	deadline := started.Add(catchUp)
	switch {
	case info.MasterFailoverState != "" && info.MasterFailoverState != "no-failover":
		// Redis runs it, and ends it itself at its TIMEOUT. One stuck in
		// failover-in-progress (the candidate does not answer the PSYNC)
		// is stopped, so that the old master serves again.
		if p.now.After(deadline.Add(handoverGrace)) && p.l.due("handover-abort", old, p.now) {
			p.l.cfg.Log.Warn("FAILOVER outlived its timeout; aborting it", "master", p.m.GetName(), "state", info.MasterFailoverState)
			return p.act(actionTimeout, oldConn.FailoverAbort)
		}
		return nil
	case info.Role != probe.RoleMaster:
		// The old master has stepped down and the candidate is being
		// switched over (PSYNC FAILOVER): wait for the candidate's role.
		return nil
	}
	remaining := deadline.Sub(p.now).Truncate(time.Millisecond)
	if f.GetPause() != nil {
		return p.pausedHandover(oldConn, candConn, f, remaining)
	}
	if remaining < time.Millisecond {
		return p.abort(fsm.EventHandoverTimeout, fmt.Sprintf(
			"%s did not take over from %s within %v (the replica did not catch up, or did not answer the switch); %s keeps serving",
			cand, old, catchUp, old))
	}
	if !p.l.due("handover", old, p.now) {
		return nil
	}
	// CLIENT UNPAUSE came with CLIENT PAUSE ... WRITE (Redis 6.2): a
	// server that runs it can pause writes. Asked before the pause is
	// committed, so that a server without it is handed over by FAILOVER TO
	// with nothing to undo in the journal.
	err = p.act(actionTimeout, oldConn.Unpause)
	if err != nil && !isRefused(err) {
		return err
	}
	if err == nil {
		pause, err := p.pauseForHandover(oldConn, remaining)
		if err != nil {
			return err
		}
		paused := proto.CloneOf(f)
		paused.Pause = pause
		return p.pausedHandover(oldConn, candConn, paused, remaining)
	}
	// The fallback: Redis's own handover.
	p.l.cfg.Log.Warn("the old master refused CLIENT UNPAUSE, so it cannot pause writes; handing over with FAILOVER TO instead",
		"master", p.m.GetName(), "old", old, "err", err)
	host, port, err := splitHostPort(cand)
	if err != nil {
		return err
	}
	err = p.act(actionTimeout, func(ctx context.Context) error {
		// FAILOVER TO makes the old master a replica of the candidate.
		p.setMasterAuth(ctx, oldConn)
		return oldConn.FailoverTo(ctx, host, port, remaining)
	})
	if err != nil {
		return err
	}
	p.l.cfg.Log.Info("sent FAILOVER TO", "master", p.m.GetName(), "old", old, "candidate", cand, "timeout", remaining)
	return nil
}

// isRefused tells a command the server refused (unknown, renamed, not
// allowed by an ACL, or without the WRITE option) from one that could not
// be sent.
func isRefused(err error) bool {
	if err == nil {
		return false
	}
	text := err.Error()
	for _, s := range []string{"unknown command", "nknown subcommand", "syntax error", "NOPERM"} {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

// pauseForHandover starts the coordinated handover: it commits the write
// pause, then pauses writes on the old master and reads the offset the
// candidate must reach, and returns the pause with that offset. The pause
// outlasts the catch-up time and the promotion, so no write lands on the
// old master before it follows the new one; the leader releases it as
// soon as it has re-pointed the old master.
//
// The pause is committed first, with its offset pending (the offset exists
// only once writes have stopped), so that the commit is not part of the
// time writes wait. A leader that dies in between leaves the pause on
// record: the next one pauses again and reads the offset itself.
func (p *pass) pauseForHandover(oldConn Instance, remaining time.Duration) (*fsmv1.HandoverPause, error) {
	until := p.now.Add(remaining + pauseMargin)
	c := &fsmv1.HandoverPaused{Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch(), Offset: math.MaxInt64, OffsetPending: true,
		UntilUnixNanos: until.UnixNano()}
	if err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_HandoverPaused{HandoverPaused: c}}); err != nil {
		return nil, err
	}
	pause := &fsmv1.HandoverPause{Offset: c.GetOffset(), UntilUnixNanos: c.GetUntilUnixNanos(), OffsetPending: true}
	offset, err := p.pauseAndRead(oldConn, until)
	if err != nil {
		return nil, err
	}
	p.l.cfg.Log.Info("paused writes for the handover", "master", p.m.GetName(), "old", oldConn.Addr(), "offset", offset, "timeout", remaining)
	pause.Offset, pause.OffsetPending = offset, false
	return pause, nil
}

// pauseAndRead pauses writes on the old master until until (at least for
// actionTimeout: a leader that pauses late releases the pause itself in
// the same pass) and reads its replication offset, which stays put while
// writes are paused. The offset is remembered for the failover, so later
// passes of this leader need not pause again.
func (p *pass) pauseAndRead(oldConn Instance, until time.Time) (int64, error) {
	d := max(until.Sub(p.l.cfg.Now()), actionTimeout).Truncate(time.Millisecond)
	if err := p.act(actionTimeout, func(ctx context.Context) error { return oldConn.PauseWrites(ctx, d) }); err != nil {
		return 0, err
	}
	info, err := p.ask(oldConn, actionTimeout)
	if err != nil {
		return 0, err
	}
	if info.Role != probe.RoleMaster {
		return 0, fmt.Errorf("handover of %q: %s reports role %q while paused", p.m.GetName(), oldConn.Addr(), info.Role)
	}
	p.l.mu.Lock()
	p.l.pausedOffset[p.m.GetName()] = pausedOffset{started: p.m.GetFailover().GetStartedAtUnixNanos(), offset: info.MasterReplOffset}
	p.l.mu.Unlock()
	return info.MasterReplOffset, nil
}

// pausedOffset is the old master's offset under a pause, as read by this
// leader for the failover that started at started.
type pausedOffset struct{ started, offset int64 }

// offsetOf returns the offset a committed pause makes the candidate reach:
// the one on record, or when it is pending the one this leader read, or
// else one read now under a fresh pause.
func (p *pass) offsetOf(oldConn Instance, f *fsmv1.Failover) (int64, error) {
	pause := f.GetPause()
	if !pause.GetOffsetPending() {
		return pause.GetOffset(), nil
	}
	p.l.mu.Lock()
	known, ok := p.l.pausedOffset[p.m.GetName()]
	p.l.mu.Unlock()
	if ok && known.started == f.GetStartedAtUnixNanos() {
		return known.offset, nil
	}
	return p.pauseAndRead(oldConn, time.Unix(0, pause.GetUntilUnixNanos()))
}

// pausedHandover goes on with a committed write pause: it polls the
// candidate every HandoverPollEvery, for at most HandoverPollFor in this
// pass; once the candidate has the old master's offset, it promotes it,
// commits, re-points the old master and unpauses; past the catch-up time,
// it unpauses and commits the abort.
func (p *pass) pausedHandover(oldConn, candConn Instance, f *fsmv1.Failover, remaining time.Duration) error {
	cand := f.GetCandidate()
	offset, err := p.offsetOf(oldConn, f)
	if err != nil {
		return err
	}
	caughtUp := p.pollCaughtUp(candConn, offset, min(max(remaining, 0), p.l.cfg.HandoverPollFor))
	if !caughtUp && remaining >= time.Millisecond {
		return nil
	}
	if !caughtUp {
		// Unpaused before the abort is committed: the old master keeps its
		// role either way, and a leader that dies in between leaves the
		// pause on record for the next one to release, not to run out.
		p.unpause(oldConn)
		return p.abort(fsm.EventHandoverTimeout, fmt.Sprintf("%s did not reach the offset %d of %s within %v; %s keeps serving",
			cand, offset, oldConn.Addr(), time.Duration(f.GetHandoverTimeoutMs())*time.Millisecond, oldConn.Addr()))
	}
	ci, err := p.promoteCandidate(candConn, probe.PromoteOptions{})
	if err != nil {
		return err
	}
	if ci.Role != probe.RoleMaster {
		return fmt.Errorf("promotion of %s not confirmed: it reports role %q", cand, ci.Role)
	}
	if err := p.commitPromoted(cand); err != nil {
		return err
	}
	if p.ctx.Err() != nil {
		return nil // stopped right after the promotion: the next leader releases the pause
	}
	// The old master's re-pointing is a journal step like any replica's,
	// committed before its REPLICAOF. Its entry also carries the
	// promotion's commit to the followers at once, rather than at the next
	// heartbeat, so that their Sentinel endpoints name the new master
	// before the paused clients are released and ask them.
	if err := p.commit(&fsmv1.Command{Kind: &fsmv1.Command_ReplicaReconfigured{ReplicaReconfigured: &fsmv1.ReplicaReconfigured{
		Master: p.m.GetName(), ExpectedEpoch: p.m.GetEpoch() + 1, Address: oldConn.Addr(), Phase: fsmv1.ReconfPhase_RECONF_PHASE_SENT}}}); err != nil {
		return err
	}
	p.l.due("reconf", oldConn.Addr(), p.now) // sent just below
	host, port, err := splitHostPort(cand)
	if err != nil {
		return err
	}
	return p.repointAndUnpause(oldConn, f, host, port)
}

// pollCaughtUp reads the candidate's INFO until it has offset, every
// HandoverPollEvery for at most d (at least once). A candidate promoted
// already (its promotion not committed: the promotion's reply or the commit
// failed, or the leader changed) reports no slave_repl_offset; its
// master_repl_offset goes on from what it had replicated.
func (p *pass) pollCaughtUp(candConn Instance, offset int64, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		ci, err := p.ask(candConn, candidateCheck)
		if err == nil && (ci.SlaveReplOffset >= offset || (ci.Role == probe.RoleMaster && ci.MasterReplOffset >= offset)) {
			return true
		}
		wait := p.l.cfg.HandoverPollEvery
		if time.Until(end) < wait {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			return false
		}
	}
}

// releasePause ends a committed handover pause once the promotion is
// committed: the old master is re-pointed first, so that no paused writer
// lands on it, then unpaused. A new leader does it once more (both
// commands are idempotent); a pause past its end needs nothing.
func (p *pass) releasePause(f *fsmv1.Failover, newHost string, newPort int) error {
	pause := f.GetPause()
	if pause == nil || !p.now.Before(time.Unix(0, pause.GetUntilUnixNanos())) {
		return nil
	}
	p.l.mu.Lock()
	done := p.l.released[p.m.GetName()] == f.GetStartedAtUnixNanos()
	p.l.mu.Unlock()
	if done || !p.l.due("release-pause", f.GetOldMaster(), p.now) {
		return nil
	}
	oldConn, err := p.instance(f.GetOldMaster())
	if err != nil {
		return err
	}
	return p.repointAndUnpause(oldConn, f, newHost, newPort)
}

func (p *pass) repointAndUnpause(oldConn Instance, f *fsmv1.Failover, host string, port int) error {
	if err := p.act(actionTimeout, func(ctx context.Context) error { return p.repoint(ctx, oldConn, host, port) }); err != nil {
		return err
	}
	p.unpause(oldConn)
	p.l.mu.Lock()
	p.l.released[p.m.GetName()] = f.GetStartedAtUnixNanos()
	p.l.mu.Unlock()
	return nil
}

func (p *pass) unpause(oldConn Instance) {
	if err := p.act(actionTimeout, oldConn.Unpause); err != nil {
		p.l.cfg.Log.Warn("CLIENT UNPAUSE after the handover (the pause ends by itself)", "err", err)
	}
}
