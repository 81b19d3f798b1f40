package fsm

import (
	"net"
	"strconv"
	"strings"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Sentinel's defaults, used when a monitor command leaves a setting at zero.
const (
	DefaultDownAfter       = 30 * time.Second
	DefaultFailoverTimeout = 3 * time.Minute
	DefaultParallelSyncs   = 1

	// MinDuration is the shortest down-after or failover-timeout accepted:
	// below it a probe period cannot tell a slow reply from a dead server.
	MinDuration = 100 * time.Millisecond
	// MaxDuration caps the time settings so a typo (ms given as µs) is caught.
	MaxDuration = 24 * time.Hour
	// MinPingPeriod is the shortest ping-period accepted (0 means automatic).
	MinPingPeriod = 10 * time.Millisecond

	maxNameLen = 64

	// DefaultFenceLag is fence-lag's default, the min-replicas-max-lag set
	// on the master: 2 s. Replicas acknowledge once a second and Redis
	// counts the lag in whole seconds, so at 1 s a healthy replica whose
	// acknowledgement comes a little late is counted out and the master
	// refuses writes (measured: see the README's fencing section); 2 s
	// tolerates a second of jitter and keeps the isolated master's window
	// at about 4 s.
	DefaultFenceLag = 2 * time.Second
	// MaxFenceLag bounds fence-lag: beyond a minute the fence no longer
	// shortens anything that repl-timeout (60 s) would not.
	MaxFenceLag = 60 * time.Second
)

// FenceLag is a master's fence-lag in effect (its default for 0).
func FenceLag(s *fsmv1.MasterSettings) time.Duration {
	if s.GetFenceLagS() == 0 {
		return DefaultFenceLag
	}
	return time.Duration(s.GetFenceLagS()) * time.Second
}

// FenceOn reports whether the master is fenced (fence yes, the default).
func FenceOn(s *fsmv1.MasterSettings) bool { return !s.GetFenceOff() }

func validateFenceLag(sec int64) error {
	if sec < 1 || sec > int64(MaxFenceLag/time.Second) {
		return errorf(Invalid, "%s must be 1 to %d whole seconds (Redis's min-replicas-max-lag), got %d", OptFenceLag, int64(MaxFenceLag/time.Second), sec)
	}
	return nil
}

// ParseFenceLag reads fence-lag: whole seconds ("2") or a Go duration of
// whole seconds ("2s"); Redis counts the lag in whole seconds only.
func ParseFenceLag(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, validateFenceLag(n)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, errorf(Invalid, "%s %q: want whole seconds (2 or 2s)", OptFenceLag, v)
	}
	if d%time.Second != 0 {
		return 0, errorf(Invalid, "%s %q: Redis counts the lag in whole seconds; want 1s, 2s, ...", OptFenceLag, v)
	}
	return int64(d / time.Second), validateFenceLag(int64(d / time.Second))
}

// ParseYesNo reads a yes|no option as Sentinel spells them.
func ParseYesNo(key, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, errorf(Invalid, "Invalid argument '%s' for SENTINEL SET '%s': want yes or no", v, key)
}

// ValidateName checks a master or node name: 1 to 64 of [A-Za-z0-9._-].
func ValidateName(what, name string) error {
	if name == "" {
		return errorf(Invalid, "%s name is empty", what)
	}
	if len(name) > maxNameLen {
		return errorf(Invalid, "%s name %q is longer than %d characters", what, name, maxNameLen)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return errorf(Invalid, "%s name %q may only contain letters, digits, '.', '_' and '-'", what, name)
		}
	}
	return nil
}

// ValidateAddress checks a host:port address.
func ValidateAddress(what, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errorf(Invalid, "%s address %q is not host:port", what, addr)
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n") {
		return errorf(Invalid, "%s address %q has no valid host", what, addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return errorf(Invalid, "%s address %q has an invalid port (1 to 65535)", what, addr)
	}
	return nil
}

func validateDurationMs(what string, ms int64) error {
	return validateRangeMs(what, ms, MinDuration)
}

func validateRangeMs(what string, ms int64, least time.Duration) error {
	if ms < least.Milliseconds() || ms > MaxDuration.Milliseconds() {
		return errorf(Invalid, "%s must be between %d and %d milliseconds, got %d", what,
			least.Milliseconds(), MaxDuration.Milliseconds(), ms)
	}
	return nil
}

// validatePingPeriodMs accepts 0 (automatic) or MinPingPeriod to
// MaxDuration. A period above down-after is accepted and acts as
// down-after, as in Sentinel, so that lowering down-after later never
// fails on it.
func validatePingPeriodMs(ms int64) error {
	if ms == 0 {
		return nil
	}
	if err := validateRangeMs(OptPingPeriod, ms, MinPingPeriod); err != nil {
		return errorf(Invalid, "%s (or 0 for automatic)", err.Error())
	}
	return nil
}

// validateSettings checks settings after defaults were applied.
func validateSettings(s *fsmv1.MasterSettings) error {
	if s.GetQuorum() < 1 {
		return errorf(Invalid, "quorum must be 1 or greater")
	}
	if err := validateDurationMs("down-after-milliseconds", s.GetDownAfterMs()); err != nil {
		return err
	}
	if err := validateDurationMs("failover-timeout", s.GetFailoverTimeoutMs()); err != nil {
		return err
	}
	if s.GetParallelSyncs() < 1 {
		return errorf(Invalid, "parallel-syncs must be 1 or greater")
	}
	if s.GetMaxLagBytes() < 0 {
		return errorf(Invalid, "max-lag must be 0 (no limit) or more bytes")
	}
	if ms := s.GetMasterRebootDownAfterPeriodMs(); ms < 0 || ms > MaxDuration.Milliseconds() {
		return errorf(Invalid, "%s must be 0 (off) to %d milliseconds, got %d", OptMasterRebootDownAfter, MaxDuration.Milliseconds(), ms)
	}
	if s.GetFenceLagS() != 0 {
		if err := validateFenceLag(s.GetFenceLagS()); err != nil {
			return err
		}
	}
	if err := validatePingPeriodMs(s.GetPingPeriodMs()); err != nil {
		return err
	}
	return validateHooks(s)
}

// withDefaults returns a copy of s with Sentinel's defaults in place of zeros.
func withDefaults(s *fsmv1.MasterSettings) *fsmv1.MasterSettings {
	out := &fsmv1.MasterSettings{}
	if s != nil {
		out.Quorum = s.Quorum
		out.DownAfterMs = s.DownAfterMs
		out.FailoverTimeoutMs = s.FailoverTimeoutMs
		out.ParallelSyncs = s.ParallelSyncs
		out.AuthUser = s.AuthUser
		out.AuthPass = s.AuthPass
		out.MaxLagBytes = s.MaxLagBytes
		out.PingPeriodMs = s.PingPeriodMs
		out.MasterRebootDownAfterPeriodMs = s.MasterRebootDownAfterPeriodMs
		out.NotificationScript = s.NotificationScript
		out.ClientReconfigScript = s.ClientReconfigScript
		out.WebhookUrl = s.WebhookUrl
		out.Maintenance = s.Maintenance
		out.FenceOff = s.FenceOff
		out.FenceLagS = s.FenceLagS
	}
	if out.FenceLagS == 0 {
		out.FenceLagS = int64(DefaultFenceLag / time.Second)
	}
	if out.DownAfterMs == 0 {
		out.DownAfterMs = DefaultDownAfter.Milliseconds()
	}
	if out.FailoverTimeoutMs == 0 {
		out.FailoverTimeoutMs = DefaultFailoverTimeout.Milliseconds()
	}
	if out.ParallelSyncs == 0 {
		out.ParallelSyncs = DefaultParallelSyncs
	}
	return out
}

// Option keys accepted by SetMasterOptions, named as Sentinel names them.
const (
	OptQuorum          = "quorum"
	OptDownAfter       = "down-after-milliseconds"
	OptFailoverTimeout = "failover-timeout"
	OptParallelSyncs   = "parallel-syncs"
	OptAuthUser        = "auth-user"
	OptAuthPass        = "auth-pass"
	OptMaxLag          = "max-lag"
	// OptPingPeriod is Raftinel's own: Sentinel's ping-period is global.
	OptPingPeriod = "ping-period"
	// OptMasterRebootDownAfter is Sentinel 7's option; 0 turns it off.
	OptMasterRebootDownAfter = "master-reboot-down-after-period"
	// OptMaintenance is Raftinel's own (Patroni's pause): "yes" suspends
	// automatic failovers and topology repairs of the group.
	OptMaintenance = "maintenance"
	// OptFence and OptFenceLag are Raftinel's own: whether the master is
	// fenced with min-replicas-to-write, and its min-replicas-max-lag.
	OptFence    = "fence"
	OptFenceLag = "fence-lag"
)

// OptionKeys lists the settable options in the order help texts show them.
var OptionKeys = []string{OptQuorum, OptDownAfter, OptFailoverTimeout, OptParallelSyncs, OptAuthUser, OptAuthPass, OptMaxLag,
	OptPingPeriod, OptMasterRebootDownAfter, OptNotificationScript, OptClientReconfigScript, OptWebhookURL, OptMaintenance, OptFence, OptFenceLag}

// ParseMillis reads a time option: whole milliseconds as Sentinel takes them
// ("1500") or a Go duration ("1.5s", "1500ms").
func ParseMillis(v string) (int64, bool) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, true
	}
	d, err := time.ParseDuration(v)
	if err != nil || d%time.Millisecond != 0 {
		return 0, false
	}
	return d.Milliseconds(), true
}

// setOption applies one option to s, or explains why it cannot.
func setOption(s *fsmv1.MasterSettings, key, value string) error {
	invalid := func() error {
		return errorf(Invalid, "Invalid argument '%s' for SENTINEL SET '%s'", value, key)
	}
	positive := func() (uint32, error) {
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil || n < 1 {
			return 0, invalid()
		}
		return uint32(n), nil
	}
	switch strings.ToLower(key) {
	case OptQuorum:
		n, err := positive()
		if err != nil {
			return err
		}
		s.Quorum = n
	case OptParallelSyncs:
		n, err := positive()
		if err != nil {
			return err
		}
		s.ParallelSyncs = n
	case OptDownAfter, OptFailoverTimeout:
		ms, ok := ParseMillis(value)
		if !ok {
			return invalid()
		}
		if err := validateDurationMs(strings.ToLower(key), ms); err != nil {
			return err
		}
		if strings.ToLower(key) == OptDownAfter {
			s.DownAfterMs = ms
		} else {
			s.FailoverTimeoutMs = ms
		}
	case OptPingPeriod:
		ms, ok := ParseMillis(value)
		if !ok {
			return invalid()
		}
		if err := validatePingPeriodMs(ms); err != nil {
			return err
		}
		s.PingPeriodMs = ms
	case OptAuthUser:
		s.AuthUser = value
	case OptAuthPass:
		s.AuthPass = value
	case OptMaxLag:
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n < 0 {
			return invalid()
		}
		s.MaxLagBytes = n
	case OptMasterRebootDownAfter:
		// Unlike down-after, 0 is valid: it turns the rule off, as in
		// Sentinel. Any other value is a duration like the other times.
		ms, ok := ParseMillis(value)
		if !ok || ms < 0 {
			return invalid()
		}
		if ms > MaxDuration.Milliseconds() {
			return errorf(Invalid, "%s must be 0 (off) to %d milliseconds, got %d", OptMasterRebootDownAfter, MaxDuration.Milliseconds(), ms)
		}
		s.MasterRebootDownAfterPeriodMs = ms
	case OptNotificationScript:
		s.NotificationScript = value
	case OptClientReconfigScript:
		s.ClientReconfigScript = value
	case OptWebhookURL:
		s.WebhookUrl = value
	case OptMaintenance:
		// Sentinel's boolean options take yes and no.
		switch strings.ToLower(value) {
		case "yes":
			s.Maintenance = true
		case "no":
			s.Maintenance = false
		default:
			return invalid()
		}
	case OptFence:
		on, err := ParseYesNo(OptFence, value)
		if err != nil {
			return err
		}
		s.FenceOff = !on
	case OptFenceLag:
		n, err := ParseFenceLag(value)
		if err != nil {
			return err
		}
		s.FenceLagS = n
	default:
		return errorf(Invalid, "Unknown option or number of arguments for SENTINEL SET '%s'", key)
	}
	return nil
}
