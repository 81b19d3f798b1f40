package orchestrator

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/failover"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// What Explain says the leader does is what its next pass does.
func TestExplainAgreesWithTheLeader(t *testing.T) {
	e := newEnv(t, nil)
	e.step()
	ex := e.leader.Explain(e.master(), nil)
	if ex.Action != failover.ActionNone || ex.Candidate != addrR2 {
		t.Fatalf("healthy: %+v", ex)
	}
	var ranked []string
	for _, r := range ex.Replicas {
		ranked = append(ranked, r.Addr+" "+r.Reason)
	}
	// r2 beats r3 on offset and r1 on priority; r4 has priority 0.
	if want := []string{addrR2 + " ", addrR3 + " ", addrR1 + " ", addrR4 + " priority 0"}; !slices.Equal(ranked, want) {
		t.Fatalf("ranking %q, want %q", ranked, want)
	}

	e.mustCommit(setOptions("maintenance", "yes"))
	e.masterFails()
	e.step()
	e.tick(time.Second)
	e.vote("n1", true)
	e.vote("n2", true)
	ex = e.leader.Explain(e.master(), nil)
	if ex.Action != failover.ActionBlocked || ex.Blocking[0].Code != failover.BlockMaintenance || ex.DownVotes != 2 || !ex.ODown {
		t.Fatalf("in maintenance: %+v", ex)
	}
	plan := e.leader.Explain(e.master(), &failover.ManualRequest{Handover: handoverTimeout})
	if plan.Action != failover.ActionBlocked || plan.Blocking[0].Code != failover.BlockMaintenance {
		t.Fatalf("coordinated plan in maintenance: %+v", plan)
	}

	e.mustCommit(setOptions("maintenance", "no"))
	e.vote("n1", true)
	e.vote("n2", true)
	ex = e.leader.Explain(e.master(), nil)
	if ex.Action != failover.ActionFailover || ex.Candidate != addrR2 {
		t.Fatalf("after maintenance: %+v", ex)
	}
	from := e.mark()
	e.step()
	e.inOrder(from, "commit BeginFailover odown "+addrR2)
	ex = e.leader.Explain(e.master(), nil)
	if ex.Action != failover.ActionContinue {
		t.Fatalf("in progress: %+v", ex)
	}
}

// The write pause of a coordinated handover (the one fencing Raftinel
// does) is shown as a note while the journal holds it.
func TestExplainShowsTheHandoverPause(t *testing.T) {
	e := newEnv(t, nil)
	e.step()
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: &fsmv1.BeginFailover{
		Master: masterName, Reason: "manual", Candidate: addrR2, Coordinated: true, HandoverTimeoutMs: 5000}}})
	e.mustCommit(&fsmv1.Command{Kind: &fsmv1.Command_HandoverPaused{HandoverPaused: &fsmv1.HandoverPaused{
		Master: masterName, Offset: 1234, UntilUnixNanos: e.clock.Now().Add(time.Minute).UnixNano()}}})
	ex := e.leader.Explain(e.master(), nil)
	if ex.Action != failover.ActionContinue || len(ex.Notes) != 1 || !strings.Contains(ex.Notes[0], "writes are paused on the old master "+addrM) ||
		!strings.Contains(ex.Notes[0], "offset 1234") {
		t.Fatalf("explanation %+v", ex)
	}
}
