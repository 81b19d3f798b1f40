package orchestrator

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// ProbeOf converts an observation (ok false: none yet) to the failover
// package's input.
func ProbeOf(o probe.Observation, ok bool) failover.Probe {
	if !ok {
		return failover.Probe{}
	}
	p := failover.Probe{
		Since:           o.Since,
		LastValidReply:  o.LastValidReply,
		LinkUp:          o.LinkUp,
		FailingSince:    o.FailingSince,
		RoleSince:       o.RoleChangedAt,
		MasterAddrSince: o.MasterAddrChangedAt,
		LastPong:        o.LastPong,
		RebootedAt:      o.RebootedAt,
	}
	if o.Info == nil {
		return p
	}
	in := o.Info
	p.InfoAt = o.InfoAt
	p.Role = failover.Role(in.Role)
	p.MasterHost, p.MasterPort = in.MasterHost, in.MasterPort
	p.MasterLinkUp = in.MasterLinkUp()
	p.MasterLinkDownFor = time.Duration(in.MasterLinkDownSinceSeconds) * time.Second
	p.Priority = in.ReplicaPriority
	p.Offset = in.SlaveReplOffset
	if in.Role == probe.RoleMaster {
		p.Offset = in.MasterReplOffset
	}
	p.RunID = in.RunID
	p.ReplID, p.ReplID2, p.ReplID2Offset = in.MasterReplID, in.MasterReplID2, in.SecondReplOffset
	p.Keys, p.KeysKnown, p.Loading = in.Keys, in.HasKeyspace, in.Loading
	return p
}

// MasterProbe adds to the master's probe what comes from the state: when
// it became the master (the last failover attempt began before its
// promotion) and the group's master-reboot-down-after-period.
func MasterProbe(p failover.Probe, m *fsmv1.Master) failover.Probe {
	if at := m.GetLastFailoverAtUnixNanos(); at != 0 {
		p.MasterSince = time.Unix(0, at)
	}
	p.RebootDownAfter = RebootDownAfter(m)
	return p
}

// RebootDownAfter is a master's master-reboot-down-after-period; zero is off.
func RebootDownAfter(m *fsmv1.Master) time.Duration {
	return time.Duration(m.GetSettings().GetMasterRebootDownAfterPeriodMs()) * time.Millisecond
}

// DownAfter is a master's down-after setting.
func DownAfter(m *fsmv1.Master) time.Duration {
	return time.Duration(m.GetSettings().GetDownAfterMs()) * time.Millisecond
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port of %q: %w", addr, err)
	}
	return h, port, nil
}
