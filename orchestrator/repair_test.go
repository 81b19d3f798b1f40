package orchestrator

import (
	"testing"
	"time"

	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// failedOver runs an automatic failover to r2 to its end and returns when
// this leader first saw the old master's record down: the first pass after
// the promotion, where the old master became a replica record.
func (e *env) failedOver() (lastDown time.Time) {
	e.t.Helper()
	e.beginAutomatic()
	e.tick(time.Second)
	if e.phase() != fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS {
		e.t.Fatalf("not promoted:\n%s", e.dump(0))
	}
	lastDown = e.clock.Now().Add(time.Second)
	e.finishFailover()
	return lastDown
}

// An old master that comes back at its address still reporting role master
// is turned into a replica of the new one (+convert-to-slave), the repair
// committed before its REPLICAOF, at the first pass that sees it back: it
// is the failover's old master, so Sentinel's ConvertWait does not apply.
func TestConvertToSlave(t *testing.T) {
	cases := []struct {
		name string
		// back brings the old master back and returns when the wait began.
		back func(e *env, lastDown time.Time) time.Time
	}{
		{
			name: "role master seen for 8s by a fresh probe",
			back: func(e *env, lastDown time.Time) time.Time {
				e.clock.Advance(time.Minute)
				e.forget(addrM) // this node's probe (re)starts watching it
				e.revive(addrM)
				return e.clock.Now()
			},
		},
		{
			name: "8s after this leader saw it enter SDOWN",
			back: func(e *env, lastDown time.Time) time.Time {
				e.revive(addrM)
				return lastDown
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// down-after 15 s: the old master's last INFO is too old for
			// any repair by the time the failover is over (see
			// TestNoRepairOfAnInstanceThatIsDown).
			e := newEnv(t, func(s *fsmv1.MasterSettings) { s.DownAfterMs = 15000 })
			lastDown := e.failedOver()
			from := e.mark()
			tc.back(e, lastDown)
			waitFrom := e.clock.Now()
			if got := e.info(addrM); got.Role != probe.RoleMaster {
				t.Fatalf("the old master came back as %s", got.Role)
			}
			e.step()
			e.tickUntil(30, "converted", func() bool { return e.index(from, "commit RecordRepair *") >= 0 })
			i := e.index(from, "commit RecordRepair "+addrM+" +convert-to-slave")
			if i < 0 {
				t.Fatalf("no +convert-to-slave of the old master:\n%s", e.dump(from))
			}
			if at := e.trace.snapshot()[i].at; !at.Equal(waitFrom) {
				t.Fatalf("converted %v after it came back, want at the first pass", at.Sub(waitFrom))
			}
			if j := e.index(from, replicaOf(addrM, addrR2)); j < i {
				t.Fatalf("REPLICAOF at %d, repair committed at %d:\n%s", j, i, e.dump(from))
			}
			if got := e.writes(from); len(got) != 1 || got[0] != replicaOf(addrM, addrR2) {
				t.Fatalf("writes %q", got)
			}
			// Converted: nothing more to repair.
			for range 5 {
				e.tick(time.Second)
			}
			if n := e.count(from, "commit RecordRepair *"); n != 1 {
				t.Fatalf("%d repairs:\n%s", n, e.dump(from))
			}
			if in := e.info(addrM); in.Role != probe.RoleSlave || in.MasterHost != "10.0.0.3" || in.MasterPort != 6379 {
				t.Fatalf("old master: %s of %s:%d", in.Role, in.MasterHost, in.MasterPort)
			}
			e.noRejections()
		})
	}
}

// Another instance reporting role master (a replica promoted by hand) is
// converted only after Sentinel's ConvertWait.
func TestConvertOtherMasterAfterWait(t *testing.T) {
	e := newEnv(t, func(s *fsmv1.MasterSettings) { s.DownAfterMs = 15000 })
	e.failedOver()
	from := e.mark()
	e.setInfo(addrR3, func(in *probe.Info) { in.Role, in.MasterHost, in.MasterPort = probe.RoleMaster, "", 0 })
	began := e.clock.Now()
	e.step()
	e.tickUntil(30, "converted", func() bool { return e.index(from, "commit RecordRepair "+addrR3+" +convert-to-slave") >= 0 })
	if d := e.clock.Now().Sub(began); d <= 8*time.Second {
		t.Fatalf("converted %v after it reported master, want after 8s", d)
	}
}

// An old master that stays down is not repaired: its last INFO (kept by the
// probe while it does not answer) still says role master, but it is not
// its current view, and REPLICAOF cannot reach it. With down-after 5 s that
// INFO is younger than 20 s when the 8 s wait after SDOWN ends.
func TestNoRepairOfAnInstanceThatIsDown(t *testing.T) {
	e := newEnv(t, nil)
	e.failedOver()
	from := e.mark()
	for range 60 {
		e.tick(time.Second)
	}
	if got := e.since(from, "commit RecordRepair ", redisCmd(addrM, "")); len(got) != 0 {
		t.Fatalf("repairs of the old master while it is down: %q\n%s", got, e.dump(from))
	}
}
