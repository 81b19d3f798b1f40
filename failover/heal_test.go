package failover

import (
	"strings"
	"testing"
	"time"
)

var healNow = at(time.Hour)

// healBase is a returning old master that should be converted; rows change
// one field.
func healBase() HealInput {
	return HealInput{
		MasterHost: "10.0.0.2",
		MasterPort: 6379,
		Master: Probe{
			Since: healNow.Add(-time.Hour), LastValidReply: healNow, LinkUp: true,
			InfoAt: healNow.Add(-time.Second), Role: RoleMaster,
		},
		Host: "10.0.0.1",
		Port: 6379,
		Instance: Probe{
			Since: healNow.Add(-time.Hour), LastValidReply: healNow, LinkUp: true,
			InfoAt: healNow.Add(-time.Second), Role: RoleMaster, RoleSince: healNow.Add(-time.Minute),
		},
		InstanceLastDown: healNow.Add(-10 * time.Minute),
		FailoverTimeout:  3 * time.Minute,
		Now:              healNow,
	}
}

func heal(f func(*HealInput)) HealInput {
	in := healBase()
	f(&in)
	return in
}

func TestConvertToReplica(t *testing.T) {
	tests := []struct {
		name   string
		in     HealInput
		kind   ActionKind
		reason string // prefix
	}{
		{"converts", healBase(), ConvertToSlave, "reports role master; current master is 10.0.0.2:6379"},
		{"reports slave", heal(func(in *HealInput) { in.Instance.Role = RoleReplica }), NoAction, "does not report role master"},
		{"no info", heal(func(in *HealInput) { in.Instance.InfoAt = time.Time{} }), NoAction, "does not report role master"},
		{"is the current master", heal(func(in *HealInput) { in.Host = "10.0.0.2" }), NoAction, "is the current master"},
		{"is the current master, host case differs", heal(func(in *HealInput) {
			in.MasterHost, in.Host, in.Port = "redis-A", "REDIS-a", 6379
		}), NoAction, "is the current master"},
		{"failover in progress", heal(func(in *HealInput) { in.FailoverInProgress = true }), NoAction, "failover in progress"},
		{"tilt", heal(func(in *HealInput) { in.Tilt = true }), NoAction, "tilt"},
		{"instance disconnected, its last info fresh", heal(func(in *HealInput) { in.Instance.LinkUp = false }), NoAction, "instance is disconnected"},
		{"instance info exactly 20s old", heal(func(in *HealInput) { in.Instance.InfoAt = healNow.Add(-20 * time.Second) }), NoAction, "instance info is 20s old"},
		{"instance info just under 20s old", heal(func(in *HealInput) { in.Instance.InfoAt = healNow.Add(-20*time.Second + ms) }), ConvertToSlave, ""},
		{"master sdown", heal(func(in *HealInput) { in.MasterSDown = true }), NoAction, "current master is sdown"},
		{"master reports slave", heal(func(in *HealInput) { in.Master.Role = RoleReplica }), NoAction, "current master does not report role master"},
		{"master info never", heal(func(in *HealInput) { in.Master.InfoAt = time.Time{} }), NoAction, "current master has no info yet"},
		{"master info exactly 20s old", heal(func(in *HealInput) { in.Master.InfoAt = healNow.Add(-20 * time.Second) }), NoAction, "current master info is 20s old"},
		{"master info just under 20s old", heal(func(in *HealInput) { in.Master.InfoAt = healNow.Add(-20*time.Second + ms) }), ConvertToSlave, ""},
		{"entered sdown exactly 8s ago", heal(func(in *HealInput) { in.InstanceLastDown = healNow.Add(-8 * time.Second) }), NoAction, "entered sdown less than 8s ago"},
		{"entered sdown just over 8s ago", heal(func(in *HealInput) { in.InstanceLastDown = healNow.Add(-8*time.Second - ms) }), ConvertToSlave, ""},
		{"never sdown", heal(func(in *HealInput) { in.InstanceLastDown = time.Time{} }), ConvertToSlave, ""},
		{"role seen exactly 8s ago", heal(func(in *HealInput) { in.Instance.RoleSince = healNow.Add(-8 * time.Second) }), NoAction, "role master seen for 8s, waiting 8s"},
		{"role seen just over 8s ago", heal(func(in *HealInput) { in.Instance.RoleSince = healNow.Add(-8*time.Second - ms) }), ConvertToSlave, ""},
		{"role since falls back to Since", heal(func(in *HealInput) { in.Instance.RoleSince = time.Time{} }), ConvertToSlave, ""},
		{"no clocks at all", heal(func(in *HealInput) { in.Instance.RoleSince, in.Instance.Since = time.Time{}, time.Time{} }), NoAction, "role change time unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := []func(HealInput) Action{ConvertToReplica}
			if tc.in.Instance.Role == RoleMaster {
				fs = append(fs, Heal)
			}
			for _, f := range fs {
				got := f(tc.in)
				if got.Kind != tc.kind || !strings.HasPrefix(got.Reason, tc.reason) {
					t.Fatalf("got %v %q, want %v %q", got.Kind, got.Reason, tc.kind, tc.reason)
				}
			}
		})
	}
}

func TestFixReplicaConfig(t *testing.T) {
	// A replica still following the old master 10.0.0.1.
	base := func(f func(*HealInput)) HealInput {
		return heal(func(in *HealInput) {
			in.Host, in.Port = "10.0.0.3", 6379
			in.Instance.Role = RoleReplica
			in.Instance.MasterHost, in.Instance.MasterPort = "10.0.0.1", 6379
			in.Instance.MasterAddrSince = healNow.Add(-time.Hour)
			f(in)
		})
	}
	tests := []struct {
		name   string
		in     HealInput
		kind   ActionKind
		reason string
	}{
		{"fixes wrong master", base(func(*HealInput) {}), FixSlaveConfig, "follows 10.0.0.1:6379 instead of 10.0.0.2:6379"},
		{"right master", base(func(in *HealInput) { in.Instance.MasterHost = "10.0.0.2" }), NoAction, ""},
		{"right master, host case differs", base(func(in *HealInput) {
			in.MasterHost, in.Instance.MasterHost = "redis-b", "Redis-B"
		}), NoAction, ""},
		{"wrong port", base(func(in *HealInput) { in.Instance.MasterHost, in.Instance.MasterPort = "10.0.0.2", 6380 }), FixSlaveConfig, "follows 10.0.0.2:6380"},
		{"no master", base(func(in *HealInput) { in.Instance.MasterHost, in.Instance.MasterPort = "", 0 }), FixSlaveConfig, "follows no master instead of 10.0.0.2:6379"},
		{"ipv6 address formatting", base(func(in *HealInput) { in.Instance.MasterHost = "::1" }), FixSlaveConfig, "follows [::1]:6379"},
		{"reports master", base(func(in *HealInput) { in.Instance.Role = RoleMaster }), NoAction, "does not report role slave"},
		{"is the current master", base(func(in *HealInput) { in.Host = "10.0.0.2" }), NoAction, "is the current master"},
		{"failover in progress", base(func(in *HealInput) { in.FailoverInProgress = true }), NoAction, "failover in progress"},
		{"tilt", base(func(in *HealInput) { in.Tilt = true }), NoAction, "tilt"},
		{"instance info stale", base(func(in *HealInput) { in.Instance.InfoAt = healNow.Add(-time.Minute) }), NoAction, "instance info is 60s old"},
		{"master insane", base(func(in *HealInput) { in.MasterSDown = true }), NoAction, "current master is sdown"},
		{"wrong for exactly failover-timeout", base(func(in *HealInput) { in.Instance.MasterAddrSince = healNow.Add(-3 * time.Minute) }), NoAction, "follows 10.0.0.1:6379 for 180s, waiting failover-timeout 180s"},
		{"wrong for just over failover-timeout", base(func(in *HealInput) { in.Instance.MasterAddrSince = healNow.Add(-3*time.Minute - ms) }), FixSlaveConfig, ""},
		{"entered sdown within failover-timeout", base(func(in *HealInput) { in.InstanceLastDown = healNow.Add(-3 * time.Minute) }), NoAction, "entered sdown less than 180s ago"},
		{"entered sdown before failover-timeout", base(func(in *HealInput) { in.InstanceLastDown = healNow.Add(-3*time.Minute - ms) }), FixSlaveConfig, ""},
		{"address since falls back to Since", base(func(in *HealInput) { in.Instance.MasterAddrSince = time.Time{} }), FixSlaveConfig, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FixReplicaConfig(tc.in)
			if got.Kind != tc.kind || !strings.HasPrefix(got.Reason, tc.reason) || (tc.reason == "" && tc.kind == NoAction && got.Reason != "") {
				t.Fatalf("got %v %q, want %v %q", got.Kind, got.Reason, tc.kind, tc.reason)
			}
			if tc.in.Instance.Role == RoleReplica {
				if h := Heal(tc.in); h != got {
					t.Fatalf("Heal = %+v, FixReplicaConfig = %+v", h, got)
				}
			}
		})
	}
}

func TestHealUnknownRoleAndKindNames(t *testing.T) {
	if got := Heal(heal(func(in *HealInput) { in.Instance.Role = "" })); got.Kind != NoAction || got.Reason != "role unknown" {
		t.Fatalf("got %+v", got)
	}
	for k, want := range map[ActionKind]string{NoAction: "none", ConvertToSlave: "convert-to-slave", FixSlaveConfig: "fix-slave-config", 7: "unknown(7)"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(k), k.String(), want)
		}
	}
}
