package failover

import (
	"math"
	"strconv"
	"time"
)

// Sentinel's timing constants at their defaults. They are fixed rather than
// configurable because the replica-selection and topology-repair rules are
// meant to behave exactly like a default Sentinel.
const (
	// PingPeriod is Sentinel's ping-period. Sentinel scales its selection
	// thresholds by it even when down-after makes the real PING period
	// shorter, and so do we.
	PingPeriod = time.Second
	// InfoPeriod is Sentinel's info-period (the normal INFO poll).
	InfoPeriod = 10 * time.Second
	// PublishPeriod is Sentinel's publish-period; the convert-to-slave wait
	// is expressed in it.
	PublishPeriod = 2 * time.Second

	// ReplyValidity: a replica whose last valid PING reply is older than
	// this cannot be promoted (5 × ping-period).
	ReplyValidity = 5 * PingPeriod
	// InfoValidityMasterDown: while the master is SDOWN, INFO is polled
	// every second, so a replica's INFO older than this is stale.
	InfoValidityMasterDown = 5 * PingPeriod
	// InfoValidity: INFO staleness limit while the master is not SDOWN
	// (3 × info-period).
	InfoValidity = 3 * InfoPeriod
	// LinkDownFactor multiplies down-after in the master-link-down rule of
	// replica selection.
	LinkDownFactor = 10
	// RoleMismatchGrace is added to down-after before a master that reports
	// role slave is SDOWN: enough for two INFO reports (2 × info-period).
	RoleMismatchGrace = 2 * InfoPeriod
	// MasterSaneInfoAge: a master looks sane only if its INFO is younger
	// than this (2 × info-period).
	MasterSaneInfoAge = 2 * InfoPeriod
	// ConvertWait is how long a replica reporting role master must have
	// done so, and must not have entered SDOWN, before it is converted
	// back (4 × publish-period).
	ConvertWait = 4 * PublishPeriod
	// ReconfTimeout is Sentinel's slave-reconf-timeout: a replica that was
	// sent REPLICAOF this long ago counts as re-pointed.
	ReconfTimeout = 10 * time.Second
	// DefaultTiltTrigger is Sentinel's tilt-trigger.
	DefaultTiltTrigger = 2 * time.Second
	// DefaultTiltPeriod is Sentinel's tilt-period.
	DefaultTiltPeriod = 30 * time.Second
)

// Role is the replication role an instance reports in INFO.
type Role string

// Roles as Redis spells them in INFO replication. The empty Role means the
// role is not known (no INFO parsed yet).
const (
	RoleMaster  Role = "master"
	RoleReplica Role = "slave"
)

// Probe is what this node has observed of one Redis instance. The server
// fills it from its probe results; a zero time always means "never".
type Probe struct {
	// Since is when this node began observing the instance. It stands in for
	// LastValidReply, RoleSince and MasterAddrSince while those are zero,
	// the way Sentinel initialises its per-instance clocks when it creates
	// the instance record.
	Since time.Time
	// LastValidReply is the last +PONG, -LOADING or -MASTERDOWN reply.
	LastValidReply time.Time
	// LinkUp reports whether the last contact got any reply.
	LinkUp bool
	// FailingSince is the SDOWN clock: when the first contact after the last
	// valid reply began that has not been answered validly, whatever went
	// wrong with it (a PING unanswered or answered with an error, a refused
	// or timed-out dial, a connection that broke). A contact still in flight
	// counts from its start, so a frozen instance's clock runs while its
	// PING waits. Zero when the latest contact was answered validly.
	FailingSince time.Time

	// InfoAt is when INFO was last parsed; zero means never, and then the
	// fields below carry no information.
	InfoAt time.Time
	// Role is the role INFO reported.
	Role Role
	// RoleSince is when the reported role last changed.
	RoleSince time.Time
	// MasterSince is when the instance became the recorded master by a
	// failover (zero for the master first monitored). The master-reports-
	// slave rule counts no earlier than it, as Sentinel counts from the new
	// master record it creates at the switch: a replica just promoted
	// still reports role slave until its next INFO.
	MasterSince time.Time
	// MasterHost and MasterPort are the master a replica says it follows.
	MasterHost string
	MasterPort int
	// MasterAddrSince is when MasterHost or MasterPort last changed.
	MasterAddrSince time.Time
	// MasterLinkUp is master_link_status:up.
	MasterLinkUp bool
	// MasterLinkDownFor is master_link_down_since_seconds as reported. It
	// is only read while MasterLinkUp is false, which mirrors Sentinel
	// resetting the value whenever INFO omits the field. It is compared as
	// given, so a negative value (Redis reports -1 when the link never came
	// up) passes every limit, as it does in Sentinel.
	MasterLinkDownFor time.Duration
	// Priority is replica-priority; 0 means never promote.
	Priority int
	// Offset is slave_repl_offset (or master_repl_offset for a master).
	Offset int64
	// RunID is run_id; empty when not reported.
	RunID string

	// LastPong is the last plain PONG; LOADING and MASTERDOWN are valid
	// replies (LastValidReply) but not PONG, which the reboot rule tells
	// apart.
	LastPong time.Time
	// RebootedAt is when INFO first showed the current run id in place of
	// an earlier one (Sentinel's +reboot); zero if that was never seen.
	RebootedAt time.Time
	// RebootDownAfter is the group's master-reboot-down-after-period, set
	// for the recorded master's probe only (like MasterSince, it comes
	// from the state, not from the instance); zero turns the rule off.
	RebootDownAfter time.Duration

	// ReplID is master_replid: the replication history the instance holds
	// (a replica's as of its last sync). ReplID2 and ReplID2Offset are
	// master_replid2 and second_repl_offset: the earlier history a master
	// still lets replicas continue, up to that offset. Empty when unknown.
	ReplID        string
	ReplID2       string
	ReplID2Offset int64
	// Keys is the number of keys INFO keyspace reported; it means
	// something only when KeysKnown (INFO included that section).
	Keys      int64
	KeysKnown bool
	// Loading is INFO's loading:1: the instance is still loading its
	// dataset from disk, so its keys and replication ids are not final.
	Loading bool
}

// linkDownFor is the master link down time Sentinel would hold.
func (p Probe) linkDownFor() time.Duration {
	if p.MasterLinkUp {
		return 0
	}
	return p.MasterLinkDownFor
}

// orSince returns t, or p.Since when t was never set.
func (p Probe) orSince(t time.Time) time.Time {
	if t.IsZero() {
		return p.Since
	}
	return t
}

// satAdd adds two durations, clamping instead of wrapping so absurd settings
// make limits huge rather than negative.
func satAdd(a, b time.Duration) time.Duration {
	s := a + b
	if a > 0 && b > 0 && s < 0 {
		return math.MaxInt64
	}
	if a < 0 && b < 0 && s >= 0 {
		return math.MinInt64
	}
	return s
}

// satSub subtracts b from a, clamping like satAdd.
func satSub(a, b time.Duration) time.Duration {
	if b == math.MinInt64 {
		if a >= 0 {
			return math.MaxInt64
		}
		return a - b
	}
	return satAdd(a, -b)
}

// satMul multiplies a duration by a small non-negative factor, clamping.
func satMul(d time.Duration, n int64) time.Duration {
	if n <= 0 || d == 0 {
		return 0
	}
	if d > 0 && d > math.MaxInt64/time.Duration(n) {
		return math.MaxInt64
	}
	if d < 0 && d < math.MinInt64/time.Duration(n) {
		return math.MinInt64
	}
	return d * time.Duration(n)
}

// secs formats a duration as seconds ("5s", "1.5s", "400s") so operators
// read one unit in every reason string, whatever the magnitude.
func secs(d time.Duration) string {
	ms := d.Round(time.Millisecond) / time.Millisecond
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64) + "s"
}

// asciiLower mirrors tolower in the C locale: only A-Z change.
func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// compareFold compares like C's strcasecmp, which Sentinel uses for run ids
// and host names: bytewise after ASCII lowercasing, a prefix sorting first.
func compareFold(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		ca, cb := asciiLower(a[i]), asciiLower(b[i])
		if ca != cb {
			if ca < cb {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
