package orchestrator

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// lookup finds the probe's observation of the instance at addr (ok false:
// none).
type lookup func(addr string) (probe.Observation, bool)

// view is one pass's reading of the probe: each instance's observation as
// the pass first looked it up. All a pass decides, and what notePass
// records of it (the Gens skip compares), come from one reading of each
// instance, though the probe moves on while the pass runs. Instances are
// read one by one rather than all at once: their probes run on their own
// schedules, so a single instant across them promised nothing anyway.
type view struct {
	look lookup
	mu   sync.Mutex
	seen map[string]seenObservation
}

type seenObservation struct {
	o  probe.Observation
	ok bool
}

func newView(look lookup) *view {
	return &view{look: look, seen: make(map[string]seenObservation, 4)}
}

// get is the pass's observation of addr (a lookup); a pass's own
// goroutines (the empty-restart check reads its replicas side by side) may
// call it at once.
func (v *view) get(addr string) (probe.Observation, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.seen[addr]
	if !ok {
		s.o, s.ok = v.look(addr)
		v.seen[addr] = s
	}
	return s.o, s.ok
}

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
