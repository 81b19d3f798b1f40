package fsm

import (
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func eventStrings(events []*fsmv1.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.GetType()+" "+e.GetPayload())
	}
	return out
}

func TestMaintenanceEvents(t *testing.T) {
	a := newApplier()
	if err := a.apply(t, monitor("m", "10.0.0.1:6379", 2)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		value string
		want  []string
	}{
		{"yes", []string{"+set master m 10.0.0.1 6379 maintenance yes", "+maintenance master m 10.0.0.1 6379"}},
		// Setting the value it already has publishes the +set only.
		{"yes", []string{"+set master m 10.0.0.1 6379 maintenance yes"}},
		{"no", []string{"+set master m 10.0.0.1 6379 maintenance no", "-maintenance master m 10.0.0.1 6379"}},
		{"no", []string{"+set master m 10.0.0.1 6379 maintenance no"}},
	}
	for i, st := range steps {
		after := a.f.LastEventSeq()
		if err := a.apply(t, set("m", "maintenance", st.value)); err != nil {
			t.Fatal(err)
		}
		events, _ := a.f.EventsSince(after)
		got := eventStrings(events)
		if len(got) != len(st.want) {
			t.Fatalf("step %d (%s): events %q, want %q", i, st.value, got, st.want)
		}
		for j := range got {
			if got[j] != st.want[j] {
				t.Fatalf("step %d (%s): events %q, want %q", i, st.value, got, st.want)
			}
		}
	}
}

func TestMonitorInMaintenance(t *testing.T) {
	a := newApplier()
	cmd := monitor("m", "10.0.0.1:6379", 2)
	cmd.GetMonitorMaster().Settings.Maintenance = true
	if err := a.apply(t, cmd); err != nil {
		t.Fatal(err)
	}
	m, _, _ := a.f.Master("m")
	if !m.GetSettings().GetMaintenance() {
		t.Fatal("maintenance given to monitor was not kept")
	}
	events, _ := a.f.EventsSince(0)
	got := eventStrings(events)
	if len(got) != 2 || got[1] != "+maintenance master m 10.0.0.1 6379" {
		t.Fatalf("events %q, want +monitor then +maintenance", got)
	}
}
