package fsm

import (
	"fmt"
	"time"

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
	return cmd, nil
}

// Encode marshals a command for the log.
func Encode(cmd *fsmv1.Command) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
}

// applyCommand changes st according to cmd. It validates everything before
// it mutates anything, so a rejected command leaves st untouched.
func applyCommand(st *fsmv1.State, cmd *fsmv1.Command) error {
	now := time.Unix(0, cmd.GetProposedAtUnixNanos())
	switch k := cmd.Kind.(type) {
	case *fsmv1.Command_RegisterNode:
		return registerNode(st, k.RegisterNode, now)
	case *fsmv1.Command_DeregisterNode:
		return deregisterNode(st, k.DeregisterNode)
	case *fsmv1.Command_MonitorMaster:
		return monitorMaster(st, k.MonitorMaster, now)
	case *fsmv1.Command_RemoveMaster:
		return removeMaster(st, k.RemoveMaster)
	case *fsmv1.Command_SetMasterOptions:
		return setMasterOptions(st, k.SetMasterOptions)
	}
	panic(fmt.Sprintf("fsm: command kind %T has no handler: upgrade this binary", cmd.Kind))
}

func registerNode(st *fsmv1.State, c *fsmv1.RegisterNode, now time.Time) error {
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
	stored.RegisteredAtUnixNanos = now.UnixNano()
	if old, ok := st.Nodes[n.GetId()]; ok {
		stored.RegisteredAtUnixNanos = old.GetRegisteredAtUnixNanos()
	}
	if st.Nodes == nil {
		st.Nodes = map[string]*fsmv1.Node{}
	}
	st.Nodes[n.GetId()] = stored
	return nil
}

func deregisterNode(st *fsmv1.State, c *fsmv1.DeregisterNode) error {
	if _, ok := st.Nodes[c.GetId()]; !ok {
		return errorf(NotFound, "unknown node %q", c.GetId())
	}
	delete(st.Nodes, c.GetId())
	return nil
}

func monitorMaster(st *fsmv1.State, c *fsmv1.MonitorMaster, now time.Time) error {
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
	if _, ok := st.Masters[c.GetName()]; ok {
		return errorf(AlreadyExists, "Duplicate master name %q", c.GetName())
	}
	if st.Masters == nil {
		st.Masters = map[string]*fsmv1.Master{}
	}
	st.Masters[c.GetName()] = &fsmv1.Master{
		Name:                 c.GetName(),
		Address:              c.GetAddress(),
		Epoch:                0,
		Settings:             settings,
		MonitoredAtUnixNanos: now.UnixNano(),
	}
	return nil
}

func removeMaster(st *fsmv1.State, c *fsmv1.RemoveMaster) error {
	if _, ok := st.Masters[c.GetName()]; !ok {
		return errorf(NotFound, "unknown master %q", c.GetName())
	}
	delete(st.Masters, c.GetName())
	return nil
}

func setMasterOptions(st *fsmv1.State, c *fsmv1.SetMasterOptions) error {
	m, ok := st.Masters[c.GetName()]
	if !ok {
		return errorf(NotFound, "unknown master %q", c.GetName())
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
	m.Settings = next
	return nil
}
