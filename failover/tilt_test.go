package failover

import (
	"testing"
	"time"
)

func TestTilt(t *testing.T) {
	var tl Tilt
	tl = tl.Tick(t0, 0)
	if !tl.EnteredAt.IsZero() || tl.Active(t0) {
		t.Fatal("first tick must not trigger")
	}
	tl = tl.Tick(at(2*time.Second), 0)
	if !tl.EnteredAt.IsZero() {
		t.Fatal("a gap of exactly the trigger must not trigger")
	}
	tl = tl.Tick(at(4*time.Second+ms), 0)
	if !tl.EnteredAt.Equal(at(4*time.Second + ms)) {
		t.Fatalf("gap over trigger did not trigger: %+v", tl)
	}
	entered := tl.EnteredAt
	if !tl.Active(entered.Add(30*time.Second - ms)) {
		t.Fatal("tilt must hold just under the period")
	}
	if tl.Active(entered.Add(30 * time.Second)) {
		t.Fatal("tilt must end once exactly the period elapsed")
	}
	if !tl.Until().Equal(entered.Add(30 * time.Second)) {
		t.Fatalf("Until = %v", tl.Until())
	}
	if !tl.Active(entered.Add(-time.Second)) {
		t.Fatal("a clock before EnteredAt must count as tilt")
	}

	// Regular ticks do not extend tilt; a new trigger restarts it.
	tl = tl.Tick(entered.Add(time.Second), 0)
	if !tl.EnteredAt.Equal(entered) {
		t.Fatal("a normal tick moved EnteredAt")
	}
	tl = tl.Tick(entered.Add(20*time.Second), 0)
	if !tl.EnteredAt.Equal(entered.Add(20 * time.Second)) {
		t.Fatal("new trigger did not restart tilt")
	}
	if !tl.Active(entered.Add(49 * time.Second)) {
		t.Fatal("restarted tilt ended early")
	}

	// A clock going backwards triggers.
	back := Tilt{}.Tick(t0, 0).Tick(at(-ms), 0)
	if !back.EnteredAt.Equal(at(-ms)) {
		t.Fatal("negative gap did not trigger")
	}

	// A tick the caller chose to wait 900 ms longer for: the trigger
	// counts from the usual period's end.
	idle := Tilt{}.Tick(t0, 0).Tick(at(2900*ms), 900*ms)
	if !idle.EnteredAt.IsZero() {
		t.Fatal("a gap of the trigger plus the idle wait must not trigger")
	}
	if idle = idle.Tick(at(5801*ms), 900*ms); !idle.EnteredAt.Equal(at(5801 * ms)) {
		t.Fatal("a gap over the trigger plus the idle wait did not trigger")
	}
	if back := (Tilt{}).Tick(t0, 0).Tick(at(-ms), time.Second); !back.EnteredAt.Equal(at(-ms)) {
		t.Fatal("negative gap with an idle wait did not trigger")
	}

	// Custom settings.
	custom := Tilt{Trigger: 100 * ms, Period: time.Second}.Tick(t0, 0).Tick(at(101*ms), 0)
	if !custom.Active(at(1100*ms)) || custom.Active(at(1101*ms)) {
		t.Fatalf("custom period wrong: %+v", custom)
	}
	if (Tilt{}).Active(t0) || !(Tilt{}).Until().IsZero() {
		t.Fatal("zero Tilt must be inactive")
	}
}
