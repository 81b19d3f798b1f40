package fsm

import (
	"slices"
	"strings"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Sentinel's +role-change and -role-change: published when the role an
// instance reports changes, + when it agrees with the instance's record (a
// replica record reporting slave, the master reporting master), - when it
// does not. A record's first report that agrees publishes nothing, as
// Sentinel starts the reported role at the record's own.
func TestRoleChangeEvents(t *testing.T) {
	update := func(masterRole string, replicas ...*fsmv1.Replica) *fsmv1.Command {
		return cmdOf(&fsmv1.UpdateReplicas{Master: "mymaster", MasterRole: masterRole, Replicas: replicas})
	}
	steps := []struct {
		name string
		cmd  *fsmv1.Command
		want []string
	}{
		{"first reports agree", update("master", &fsmv1.Replica{Address: r1Addr, Role: "slave"}), []string{
			"+slave slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379"}},
		{"a new replica record reporting master", update("", &fsmv1.Replica{Address: r2Addr, Role: "master"}), []string{
			"+slave slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379",
			"-role-change slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379 new reported role is master"}},
		{"it becomes a replica", update("", &fsmv1.Replica{Address: r2Addr, Role: "slave"}), []string{
			"+role-change slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379 new reported role is slave"}},
		{"no INFO (empty role) keeps the record", update("", &fsmv1.Replica{Address: r2Addr}), nil},
		{"the master reports slave", update("slave"), []string{
			"-role-change master mymaster 127.0.0.1 6379 new reported role is slave"}},
		{"again: no change", update("slave"), nil},
		{"the master reports master again", update("master"), []string{
			"+role-change master mymaster 127.0.0.1 6379 new reported role is master"}},
	}
	a := newApplier()
	must(t, a, monitor("mymaster", mAddr, 2))
	for _, st := range steps {
		after := a.f.LastEventSeq()
		must(t, a, st.cmd)
		events, _ := a.f.EventsSince(after)
		if got := eventStrings(events); strings.Join(got, "\n") != strings.Join(st.want, "\n") {
			t.Fatalf("%s: events\n%s\nwant\n%s", st.name, strings.Join(got, "\n"), strings.Join(st.want, "\n"))
		}
	}
	m, _, _ := a.f.Master("mymaster")
	if m.GetMasterRole() != "master" {
		t.Fatalf("master role %q", m.GetMasterRole())
	}
}

// +new-epoch carries the new epoch alone, between the promotion's state
// events and +switch-master, and the promoted master's role is master.
func TestNewEpochEvent(t *testing.T) {
	a := seeded(t)
	must(t, a, cmdOf(&fsmv1.UpdateReplicas{Master: "mymaster", MasterRole: "slave"}))
	must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr}))
	after := a.f.LastEventSeq()
	must(t, a, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}))
	events, _ := a.f.EventsSince(after)
	got := eventStrings(events)
	want := []string{
		"+promoted-slave slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379",
		"+failover-state-reconf-slaves master mymaster 127.0.0.1 6379",
		"+new-epoch 1",
		"+switch-master mymaster 127.0.0.1 6379 127.0.0.1 6380",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if events[2].GetEpoch() != 1 || events[2].GetNodeId() != "" {
		t.Fatalf("+new-epoch %v", events[2])
	}
	m, _, _ := a.f.Master("mymaster")
	if m.GetMasterRole() != "master" {
		t.Fatalf("role after the promotion %q", m.GetMasterRole())
	}
}

// Until the cluster has switched to format 2, a failover publishes what a
// format-1 binary publishes, so that old and new nodes number events alike
// during a rolling upgrade.
func TestEventsOfFormat2WaitForTheSwitch(t *testing.T) {
	for _, switched := range []bool{false, true} {
		a := seeded(t)
		a.f.state.LogFormat = 0 // a cluster that has not switched yet
		if switched {
			must(t, a, cmdOf(&fsmv1.FormatProbe{Format: Format2}))
			if got := a.f.State().GetLogFormat(); got != Format2 {
				t.Fatalf("log format after the switch %d", got)
			}
		}
		after := a.f.LastEventSeq()
		must(t, a, cmdOf(&fsmv1.BeginFailover{Master: "mymaster", Reason: "manual", Candidate: r1Addr}))
		must(t, a, cmdOf(&fsmv1.Promoted{Master: "mymaster", Address: r1Addr}))
		events, _ := a.f.EventsSince(after)
		got := eventStrings(events)
		has := slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "+new-epoch") }) ||
			slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "+failover-state-wait-promotion") })
		if has != switched {
			t.Errorf("switched to format 2: %v; events %q", switched, got)
		}
	}
}
