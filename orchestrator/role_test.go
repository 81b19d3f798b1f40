package orchestrator

import (
	"strings"
	"testing"

	"github.com/raftinel/raftinel/probe"
)

// The leader commits the role its probe's INFO shows for the master when
// it differs from the record, once, so every node publishes Sentinel's
// -role-change and, when it reports master again, +role-change.
func TestLeaderCommitsTheMastersReportedRole(t *testing.T) {
	e := newEnv(t, nil)
	e.step()
	from := e.mark()
	e.step()
	if got := e.commits(from); len(got) != 0 {
		t.Fatalf("a master reporting master needs no commit: %q", got)
	}
	e.setInfo(addrM, func(in *probe.Info) { in.Role = probe.RoleSlave; in.MasterHost, in.MasterPort = "10.9.9.9", 6379 })
	e.step()
	e.step()
	if got := e.count(from, "commit UpdateReplicas*"); got != 1 || e.master().GetMasterRole() != "slave" {
		t.Fatalf("%d updates, role %q; trace:\n%s", got, e.master().GetMasterRole(), e.dump(from))
	}
	e.setInfo(addrM, func(in *probe.Info) { in.Role = probe.RoleMaster; in.MasterHost, in.MasterPort = "", 0 })
	e.step()
	if e.master().GetMasterRole() != "master" {
		t.Fatalf("role %q after reporting master again", e.master().GetMasterRole())
	}
	var types []string
	for _, ev := range e.master().GetEvents() {
		if ev.GetType() == "+role-change" || ev.GetType() == "-role-change" {
			types = append(types, ev.GetType())
		}
	}
	if len(types) != 2 || types[0] != "-role-change" || types[1] != "+role-change" {
		t.Fatalf("role events %q", types)
	}
}

// Across an automatic failover: the promoted replica's INFO from before
// its promotion (role slave) is no -role-change of the new master, and the
// dead old master's last INFO (role master) is no -role-change of its
// replica record; when it comes back reporting master it is one, and once
// converted, +role-change.
func TestRoleChangesAcrossAFailover(t *testing.T) {
	e := newEnv(t, nil)
	e.beginAutomatic()
	e.finishFailover()
	roleEvents := func() []string {
		var out []string
		for _, ev := range e.master().GetEvents() {
			if ev.GetType() == "+role-change" || ev.GetType() == "-role-change" {
				out = append(out, ev.GetType()+" "+ev.GetPayload())
			}
		}
		return out
	}
	if got := roleEvents(); len(got) != 0 {
		t.Fatalf("role events before the old master returned: %q", got)
	}
	e.revive(addrM)
	e.tickUntil(30, "the old master converted", func() bool { return len(roleEvents()) >= 2 })
	got := roleEvents()
	if len(got) != 2 || !strings.HasPrefix(got[0], "-role-change slave "+addrM) || !strings.HasSuffix(got[0], "new reported role is master") ||
		!strings.HasPrefix(got[1], "+role-change slave "+addrM) || !strings.HasSuffix(got[1], "new reported role is slave") {
		t.Fatalf("role events %q", got)
	}
}
