package failover

import (
	"strconv"
	"strings"
	"time"
)

// ActionKind is what a topology-repair decision asks the server to do.
type ActionKind int

// The repair actions, named after the Sentinel events they correspond to.
const (
	// NoAction: leave the instance alone.
	NoAction ActionKind = iota
	// ConvertToSlave: the instance reports role master but is not the
	// current master; send it REPLICAOF the current master.
	ConvertToSlave
	// FixSlaveConfig: the replica follows the wrong master (or none); send
	// it REPLICAOF the current master.
	FixSlaveConfig
)

// String returns the Sentinel event name without its sign.
func (k ActionKind) String() string {
	switch k {
	case NoAction:
		return "none"
	case ConvertToSlave:
		return "convert-to-slave"
	case FixSlaveConfig:
		return "fix-slave-config"
	}
	return "unknown(" + strconv.Itoa(int(k)) + ")"
}

// Action is a repair decision with an operator-facing reason; for NoAction
// the reason says what is missing, or is empty when nothing is wrong.
type Action struct {
	Kind   ActionKind
	Reason string
}

// HealInput describes one recorded replica and the current master, outside
// a failover. Host names compare case-insensitively, as in Sentinel.
type HealInput struct {
	// MasterHost and MasterPort are the current master as committed.
	MasterHost string
	MasterPort int
	// Master is what this node observed of the current master.
	Master Probe
	// MasterSDown reports whether the current master is SDOWN or ODOWN.
	MasterSDown bool

	// Host and Port are the recorded replica's address.
	Host string
	Port int
	// Instance is what this node observed of the recorded replica.
	Instance Probe
	// InstanceLastDown is when the replica last entered SDOWN (or ODOWN),
	// kept after it recovers; zero if never. Like Sentinel's
	// s_down_since_time, it marks the start of the latest outage.
	InstanceLastDown time.Time

	// FailoverTimeout is the master's failover-timeout.
	FailoverTimeout time.Duration
	// FailoverInProgress: a failover journal entry is open. No repair runs
	// then; the failover itself re-points replicas, and a promoted replica
	// reporting master before Promoted commits must not be demoted.
	FailoverInProgress bool
	// Tilt: this node is in TILT, when Sentinel reconfigures nothing.
	Tilt bool
	// FormerMaster: the instance is the master a committed failover
	// promoted away from (IsFormerMaster). It is converted at once, with
	// no ConvertWait: every committed state already says it is not the
	// master, and each moment it keeps role master is a moment in which a
	// client that cached its address can have writes acknowledged that
	// will be discarded.
	FormerMaster bool
	// Now is the decision time.
	Now time.Time
}

// Heal returns the repair, if any, that a recorded replica needs outside a
// failover: ConvertToReplica's answer for an instance reporting role master,
// FixReplicaConfig's for one reporting role slave.
func Heal(in HealInput) Action {
	switch in.Instance.Role {
	case RoleMaster:
		return ConvertToReplica(in)
	case RoleReplica:
		return FixReplicaConfig(in)
	}
	return Action{Kind: NoAction, Reason: "role unknown"}
}

// ConvertToReplica decides Sentinel's +convert-to-slave: a recorded replica
// that reports role master (typically the old master returning) is pointed
// at the current master when all of these hold:
//   - it is not the current master, no failover is in progress and this
//     node is not in TILT;
//   - its own INFO is younger than 20 s (Raftinel only: Sentinel decides as
//     each INFO reply arrives, so its view is always current);
//   - the current master looks sane: it reports role master, is not SDOWN
//     and its INFO is younger than 20 s;
//   - the instance has not entered SDOWN in the last ConvertWait (8 s);
//   - its role change was seen more than ConvertWait ago.
//
// The waits give a node that has just rejoined time to learn a newer
// topology before acting on a stale one. Sentinel excludes the replica it is
// promoting; FailoverInProgress covers that case here.
func ConvertToReplica(in HealInput) Action {
	p := in.Instance
	if p.InfoAt.IsZero() || p.Role != RoleMaster {
		return Action{Kind: NoAction, Reason: "does not report role master"}
	}
	if why := healBlocked(in); why != "" {
		return Action{Kind: NoAction, Reason: why}
	}
	if in.FormerMaster {
		return Action{Kind: ConvertToSlave, Reason: "the former master returned with role master; current master is " + hostPort(in.MasterHost, in.MasterPort)}
	}
	if !noDownFor(in, ConvertWait) {
		return Action{Kind: NoAction, Reason: "entered sdown less than " + secs(ConvertWait) + " ago"}
	}
	roleClock := p.orSince(p.RoleSince)
	if roleClock.IsZero() {
		return Action{Kind: NoAction, Reason: "role change time unknown"}
	}
	if d := in.Now.Sub(roleClock); d <= ConvertWait {
		return Action{Kind: NoAction, Reason: "role master seen for " + secs(d) + ", waiting " + secs(ConvertWait)}
	}
	return Action{Kind: ConvertToSlave, Reason: "reports role master; current master is " + hostPort(in.MasterHost, in.MasterPort)}
}

// FixReplicaConfig decides Sentinel's +fix-slave-config: a recorded replica
// whose INFO names a master other than the current one (or none) is
// re-pointed when all of these hold:
//   - it is not the current master, no failover is in progress and this
//     node is not in TILT;
//   - its own INFO is younger than 20 s (as for ConvertToReplica);
//   - the current master looks sane (as for ConvertToReplica);
//   - the instance has not entered SDOWN within the last failover-timeout;
//   - the wrong master address has been reported for longer than
//     failover-timeout.
func FixReplicaConfig(in HealInput) Action {
	p := in.Instance
	if p.InfoAt.IsZero() || p.Role != RoleReplica {
		return Action{Kind: NoAction, Reason: "does not report role slave"}
	}
	if p.MasterHost != "" && p.MasterPort == in.MasterPort && compareFold(p.MasterHost, in.MasterHost) == 0 {
		return Action{}
	}
	if why := healBlocked(in); why != "" {
		return Action{Kind: NoAction, Reason: why}
	}
	if !noDownFor(in, in.FailoverTimeout) {
		return Action{Kind: NoAction, Reason: "entered sdown less than " + secs(in.FailoverTimeout) + " ago"}
	}
	addrClock := p.orSince(p.MasterAddrSince)
	if addrClock.IsZero() {
		return Action{Kind: NoAction, Reason: "master address change time unknown"}
	}
	wrong := "no master"
	if p.MasterHost != "" {
		wrong = hostPort(p.MasterHost, p.MasterPort)
	}
	if d := in.Now.Sub(addrClock); d <= in.FailoverTimeout {
		return Action{Kind: NoAction, Reason: "follows " + wrong + " for " + secs(d) + ", waiting failover-timeout " + secs(in.FailoverTimeout)}
	}
	return Action{Kind: FixSlaveConfig, Reason: "follows " + wrong + " instead of " + hostPort(in.MasterHost, in.MasterPort)}
}

// healBlocked returns why no repair may run now, or "".
func healBlocked(in HealInput) string {
	switch {
	case in.Port == in.MasterPort && compareFold(in.Host, in.MasterHost) == 0:
		// Never tell an instance to replicate from itself.
		return "is the current master"
	case in.FailoverInProgress:
		return "failover in progress"
	case in.Tilt:
		return "tilt"
	case !in.Instance.LinkUp:
		// Its INFO is the last one read before it stopped answering, not
		// its current view, and REPLICAOF would not reach it.
		return "instance is disconnected"
	}
	// Sentinel decides the moment an INFO reply arrives; Raftinel may
	// decide later, so it refuses to act on a view of the instance that
	// is no longer current.
	if d := in.Now.Sub(in.Instance.InfoAt); d >= MasterSaneInfoAge {
		return "instance info is " + secs(d) + " old"
	}
	return masterInsane(in)
}

// masterInsane returns why the current master does not look sane
// (Sentinel's sentinelMasterLooksSane), or "" if it does.
func masterInsane(in HealInput) string {
	m := in.Master
	switch {
	case in.MasterSDown:
		return "current master is sdown"
	case m.InfoAt.IsZero():
		return "current master has no info yet"
	case m.Role != RoleMaster:
		return "current master does not report role master"
	}
	if d := in.Now.Sub(m.InfoAt); d >= MasterSaneInfoAge {
		return "current master info is " + secs(d) + " old"
	}
	return ""
}

// noDownFor mirrors sentinelRedisInstanceNoDownFor: true unless the instance
// entered SDOWN within the last d.
func noDownFor(in HealInput, d time.Duration) bool {
	return in.InstanceLastDown.IsZero() || in.Now.Sub(in.InstanceLastDown) > d
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// IsFormerMaster recognises an instance reporting role master as the old
// master of a committed failover: by address (the failover's old master),
// or by replication history, since its run id changes at every restart:
// it still holds the history the current master was promoted from (its
// master_replid is the current master's master_replid2), whatever address
// it has now.
func IsFormerMaster(addr, lastOldMaster string, inst, current Probe) bool {
	if inst.Role != RoleMaster {
		return false
	}
	if lastOldMaster != "" && addr == lastOldMaster {
		return true
	}
	return inst.ReplID != "" && current.ReplID2 != "" && inst.ReplID == current.ReplID2 && !allZero(inst.ReplID)
}

func allZero(id string) bool { return strings.Trim(id, "0") == "" }
