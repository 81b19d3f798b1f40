package fsm

import (
	"fmt"
	"strings"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// Decode parses a log entry. An error means this binary does not understand
// the entry: it was written by a newer version or is corrupt.
func Decode(data []byte) (*fsmv1.Command, error) {
	cmd := &fsmv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	if cmd.Kind == nil {
		// A newer binary's command kind arrives as unknown fields.
		return nil, fmt.Errorf("decode command: no command kind this binary knows")
	}
	if need, have := FormatOf(cmd), LogFormat(); need > have {
		// Only a test build with a lower format gets here: it plays a
		// binary of an older release, which would not know the kind.
		return nil, fmt.Errorf("decode command: %s entries are log format %d, this binary understands format %d at most", KindName(cmd), need, have)
	}
	return cmd, nil
}

// Encode marshals a command for the log.
func Encode(cmd *fsmv1.Command) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
}

// applyCommand changes st according to cmd. It validates everything before
// it mutates anything, so a rejected command leaves st untouched.
// It returns the events the command produced.
func applyCommand(st *fsmv1.State, cmd *fsmv1.Command) ([]*fsmv1.Event, error) {
	r := &recorder{st: st, now: cmd.GetProposedAtUnixNanos(), actor: cmd.GetActor()}
	var err error
	switch k := cmd.Kind.(type) {
	case *fsmv1.Command_RegisterNode:
		err = registerNode(r, k.RegisterNode)
	case *fsmv1.Command_DeregisterNode:
		err = deregisterNode(r, k.DeregisterNode)
	case *fsmv1.Command_MonitorMaster:
		err = monitorMaster(r, k.MonitorMaster)
	case *fsmv1.Command_RemoveMaster:
		err = removeMaster(r, k.RemoveMaster)
	case *fsmv1.Command_SetMasterOptions:
		err = setMasterOptions(r, k.SetMasterOptions)
	case *fsmv1.Command_ResetMaster:
		err = resetMaster(r, k.ResetMaster)
	case *fsmv1.Command_ReportVote:
		err = reportVote(r, k.ReportVote)
	case *fsmv1.Command_UpdateReplicas:
		err = updateReplicas(r, k.UpdateReplicas)
	case *fsmv1.Command_SetObjectiveDown:
		err = setObjectiveDown(r, k.SetObjectiveDown)
	case *fsmv1.Command_BeginFailover:
		err = beginFailover(r, k.BeginFailover)
	case *fsmv1.Command_AbortFailover:
		err = abortFailover(r, k.AbortFailover)
	case *fsmv1.Command_Promoted:
		err = promoted(r, k.Promoted)
	case *fsmv1.Command_ReplicaReconfigured:
		err = replicaReconfigured(r, k.ReplicaReconfigured)
	case *fsmv1.Command_FinishFailover:
		err = finishFailover(r, k.FinishFailover)
	case *fsmv1.Command_RecordRepair:
		err = recordRepair(r, k.RecordRepair)
	case *fsmv1.Command_HandoverPaused:
		err = handoverPaused(r, k.HandoverPaused)
	case *fsmv1.Command_HookProgress:
		err = hookProgress(r, k.HookProgress)
	case *fsmv1.Command_FormatProbe:
		// Written only once every voter understands the format: from here
		// on, every node applies entries as that format says.
		r.st.LogFormat = max(r.st.GetLogFormat(), k.FormatProbe.GetFormat())
	case *fsmv1.Command_FenceSet:
		err = fenceSet(r, k.FenceSet)
	case *fsmv1.Command_FenceWaitStarted:
		err = fenceWaitStarted(r, k.FenceWaitStarted)
	default:
		panic(fmt.Sprintf("fsm: command kind %T has no handler: upgrade this binary", cmd.Kind))
	}
	if err != nil {
		return nil, err
	}
	return r.commit(), nil
}

func registerNode(r *recorder, c *fsmv1.RegisterNode) error {
	st := r.st
	n := c.GetNode()
	if err := ValidateName("node", n.GetId()); err != nil {
		return err
	}
	if err := ValidateAddress("raft", n.GetRaftAddress()); err != nil {
		return err
	}
	if err := ValidateAddress("gRPC", n.GetGrpcAddress()); err != nil {
		return err
	}
	if n.GetSentinelAddress() != "" {
		if err := ValidateAddress("sentinel", n.GetSentinelAddress()); err != nil {
			return err
		}
	}
	for id, other := range st.Nodes {
		if id != n.GetId() && other.GetRaftAddress() == n.GetRaftAddress() {
			return errorf(AlreadyExists, "raft address %s is already used by node %q", n.GetRaftAddress(), id)
		}
	}
	stored := proto.Clone(n).(*fsmv1.Node)
	stored.RegisteredAtUnixNanos = r.now
	if old, ok := st.Nodes[n.GetId()]; ok {
		stored.RegisteredAtUnixNanos = old.GetRegisteredAtUnixNanos()
	}
	if st.Nodes == nil {
		st.Nodes = map[string]*fsmv1.Node{}
	}
	st.Nodes[n.GetId()] = stored
	return nil
}

func deregisterNode(r *recorder, c *fsmv1.DeregisterNode) error {
	st := r.st
	if _, ok := st.Nodes[c.GetId()]; !ok {
		return errorf(NotFound, "unknown node %q", c.GetId())
	}
	delete(st.Nodes, c.GetId())
	return nil
}

func monitorMaster(r *recorder, c *fsmv1.MonitorMaster) error {
	st := r.st
	if err := ValidateName("master", c.GetName()); err != nil {
		return err
	}
	if err := ValidateAddress("master", c.GetAddress()); err != nil {
		return err
	}
	settings := withDefaults(c.GetSettings())
	if err := validateSettings(settings); err != nil {
		return err
	}
	if len(HookTargets(settings)) > 0 {
		return errorf(Invalid, "hooks are not set by monitor: set them afterwards with SET (notification-script, client-reconfig-script, webhook-url)")
	}
	if _, ok := st.Masters[c.GetName()]; ok {
		return errorf(AlreadyExists, "Duplicate master name %q", c.GetName())
	}
	if st.Masters == nil {
		st.Masters = map[string]*fsmv1.Master{}
	}
	m := &fsmv1.Master{
		Name:                 c.GetName(),
		Address:              c.GetAddress(),
		Settings:             settings,
		MonitoredAtUnixNanos: r.now,
	}
	st.Masters[c.GetName()] = m
	r.add(m, "+monitor", fmt.Sprintf("%s quorum %d", masterDetail(m), settings.GetQuorum()), "")
	if settings.GetMaintenance() {
		r.add(m, EventMaintenanceOn, masterDetail(m), "")
	}
	return nil
}

func removeMaster(r *recorder, c *fsmv1.RemoveMaster) error {
	m, ok := r.st.Masters[c.GetName()]
	if !ok {
		return UnknownMaster(c.GetName())
	}
	r.add(m, "-monitor", masterDetail(m), "")
	delete(r.st.Masters, c.GetName())
	return nil
}

func setMasterOptions(r *recorder, c *fsmv1.SetMasterOptions) error {
	m, ok := r.st.Masters[c.GetName()]
	if !ok {
		return UnknownMaster(c.GetName())
	}
	if len(c.GetOptions()) == 0 {
		return errorf(Invalid, "no option to set")
	}
	// Unlike Sentinel's SET, all options apply or none does.
	next := proto.Clone(m.GetSettings()).(*fsmv1.MasterSettings)
	for _, o := range c.GetOptions() {
		if err := setOption(next, o.GetKey(), o.GetValue()); err != nil {
			return err
		}
	}
	if err := validateSettings(next); err != nil {
		return err
	}
	startHooks(r, m, next)
	was := m.GetSettings().GetMaintenance()
	m.Settings = next
	for _, o := range c.GetOptions() {
		v := o.GetValue()
		if strings.EqualFold(o.GetKey(), OptAuthPass) {
			v = "******"
		}
		r.add(m, "+set", fmt.Sprintf("%s %s %s", masterDetail(m), strings.ToLower(o.GetKey()), v), "")
	}
	switch {
	case next.GetMaintenance() && !was:
		r.add(m, EventMaintenanceOn, masterDetail(m), "")
	case !next.GetMaintenance() && was:
		r.add(m, EventMaintenanceOff, masterDetail(m), "")
	}
	return nil
}

// Raftinel's own events for the maintenance option, published when it
// changes (after the option's +set); the payload is the master's "%@".
const (
	EventMaintenanceOn  = "+maintenance"
	EventMaintenanceOff = "-maintenance"
)
