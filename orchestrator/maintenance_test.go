package orchestrator

import (
	"testing"
	"time"

	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func setOptions(kv ...string) *fsmv1.Command {
	c := &fsmv1.SetMasterOptions{Name: masterName}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Options = append(c.Options, &fsmv1.Option{Key: kv[i], Value: kv[i+1]})
	}
	return &fsmv1.Command{Kind: &fsmv1.Command_SetMasterOptions{SetMasterOptions: c}}
}

// In maintenance the leader still judges ODOWN from the votes, but begins
// no failover; once maintenance ends, the failover begins at the next pass.
func TestMaintenanceSuspendsAutomaticFailover(t *testing.T) {
	e := newEnv(t, nil)
	e.mustCommit(setOptions("maintenance", "yes"))
	from := e.mark()
	e.masterFails()
	for range 5 {
		e.tick(time.Second)
		e.vote("n1", true)
		e.vote("n2", true)
	}
	if !e.master().GetOdown() {
		t.Fatalf("no ODOWN in maintenance; trace:\n%s", e.dump(from))
	}
	if e.inFailover() || e.count(from, "commit BeginFailover *") != 0 || len(e.writes(from)) != 0 {
		t.Fatalf("acted in maintenance; trace:\n%s", e.dump(from))
	}
	e.mustCommit(setOptions("maintenance", "no"))
	e.vote("n1", true)
	e.vote("n2", true)
	from = e.mark()
	e.step()
	e.inOrder(from, "commit BeginFailover odown "+addrR2)
}

// Maintenance also holds back the repairs outside a failover: a replica
// following the wrong master is left alone until it ends.
func TestMaintenanceSuspendsRepairs(t *testing.T) {
	e := newEnv(t, nil)
	e.mustCommit(setOptions("maintenance", "yes"))
	e.step()
	e.setInfo(addrR1, func(in *probe.Info) { in.MasterHost, in.MasterPort = "10.9.9.9", 6379 })
	from := e.mark()
	for range 70 {
		e.tick(time.Second)
	}
	if got := e.writes(from); len(got) != 0 {
		t.Fatalf("repairs sent in maintenance: %q", got)
	}
	e.mustCommit(setOptions("maintenance", "no"))
	from = e.mark()
	e.tickUntil(5, "re-pointed", func() bool { return e.count(from, "commit RecordRepair *") > 0 })
}
