package server

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/fsm"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// api implements coordinator.v1. Writes reach it on the leader only
// (leaderCall sees to that, for gRPC calls and the node's own writes);
// reads are served from the local FSM.
type api struct {
	coordinatorv1.UnimplementedCoordinatorServiceServer
	s *Server
}

func (a *api) localStatus() *coordinatorv1.NodeStatus {
	r := a.s.raft
	_, leaderID := r.LeaderWithID()
	st := &coordinatorv1.NodeStatus{
		Id:              a.s.cfg.ID,
		RaftAddress:     a.s.cfg.RaftAddr,
		GrpcAddress:     a.s.GRPCAddr(),
		SentinelAddress: a.s.cfg.SentinelAddr,
		State:           stateName(r.State()),
		LeaderId:        string(leaderID),
		Term:            r.CurrentTerm(),
		LastIndex:       r.LastIndex(),
		AppliedIndex:    r.AppliedIndex(),
		LogFormat:       fsm.LogFormat(),
		Version:         a.s.cfg.Version,
	}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if string(srv.ID) == a.s.cfg.ID {
				st.Voter = srv.Suffrage == raft.Voter
			}
		}
	}
	return st
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Leader:
		return "leader"
	}
	return "shutdown"
}

func (a *api) Status(ctx context.Context, req *coordinatorv1.StatusRequest) (*coordinatorv1.StatusResponse, error) {
	self := a.localStatus()
	if req.GetLocalOnly() {
		return &coordinatorv1.StatusResponse{Nodes: []*coordinatorv1.NodeStatus{self}}, nil
	}
	members, err := a.members()
	if err != nil {
		return nil, err
	}
	out := make([]*coordinatorv1.NodeStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.Id == a.s.cfg.ID {
			out[i] = self
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = a.remoteStatus(ctx, m)
		}()
	}
	wg.Wait()
	resp := &coordinatorv1.StatusResponse{Nodes: out}
	voters := a.s.voters()
	resp.ClusterLogFormat = fsm.ClusterFormat(voters)
	for _, f := range fsm.Features(voters) {
		resp.Features = append(resp.Features, &coordinatorv1.LogFeature{Kind: f.Kind, Format: f.Format, Enabled: f.Enabled})
	}
	return resp, nil
}

// nodeMember is a registered node as remoteStatus takes it.
func nodeMember(n *fsmv1.Node) *coordinatorv1.Member {
	return &coordinatorv1.Member{Id: n.GetId(), RaftAddress: n.GetRaftAddress(), GrpcAddress: n.GetGrpcAddress(), SentinelAddress: n.GetSentinelAddress()}
}

// remoteStatus asks a member for its own view, briefly: an unreachable node
// is reported as such rather than stalling the whole answer.
func (a *api) remoteStatus(ctx context.Context, m *coordinatorv1.Member) *coordinatorv1.NodeStatus {
	down := &coordinatorv1.NodeStatus{Id: m.Id, RaftAddress: m.RaftAddress, GrpcAddress: m.GrpcAddress,
		SentinelAddress: m.SentinelAddress, Voter: m.Voter, State: "unreachable"}
	if m.GrpcAddress == "" {
		down.Error = "gRPC address not registered yet"
		return down
	}
	conn, err := a.s.conn(m.GrpcAddress)
	if err != nil {
		down.Error = err.Error()
		return down
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := coordinatorv1.NewCoordinatorServiceClient(conn).Status(ctx, &coordinatorv1.StatusRequest{LocalOnly: true})
	if err != nil || len(resp.Nodes) != 1 {
		down.Error = status.Convert(err).Message()
		return down
	}
	return resp.Nodes[0]
}

func (a *api) members() ([]*coordinatorv1.Member, error) {
	f := a.s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []*coordinatorv1.Member
	for _, srv := range f.Configuration().Servers {
		m := &coordinatorv1.Member{Id: string(srv.ID), RaftAddress: string(srv.Address), Voter: srv.Suffrage == raft.Voter}
		if n, ok := a.s.fsm.Node(m.Id); ok {
			m.GrpcAddress, m.SentinelAddress = n.GrpcAddress, n.SentinelAddress
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

func (a *api) ListMembers(ctx context.Context, _ *coordinatorv1.ListMembersRequest) (*coordinatorv1.ListMembersResponse, error) {
	members, err := a.members()
	if err != nil {
		return nil, err
	}
	_, leader := a.s.raft.LeaderWithID()
	return &coordinatorv1.ListMembersResponse{Members: members, LeaderId: string(leader)}, nil
}

// Join adds a node as a voter (or confirms it is one) and records its
// addresses. Nodes also call it on every start to refresh their addresses.
func (a *api) Join(ctx context.Context, req *coordinatorv1.JoinRequest) (*coordinatorv1.JoinResponse, error) {
	node := &fsmv1.Node{Id: req.GetId(), RaftAddress: req.GetRaftAddress(), GrpcAddress: req.GetGrpcAddress(), SentinelAddress: req.GetSentinelAddress(),
		LogFormat: req.GetLogFormat(), Version: req.GetVersion()}
	if err := fsm.ValidateName("node", node.Id); err != nil {
		return nil, err
	}
	if err := fsm.ValidateAddress("raft", node.RaftAddress); err != nil {
		return nil, err
	}
	f := a.s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	present := false
	for _, srv := range f.Configuration().Servers {
		switch {
		case string(srv.ID) == node.Id && string(srv.Address) == node.RaftAddress:
			present = true
		case string(srv.ID) == node.Id:
			return nil, status.Errorf(codes.AlreadyExists, "node id %q is already a member at raft address %s; remove it first or choose another id", node.Id, srv.Address)
		case string(srv.Address) == node.RaftAddress:
			return nil, status.Errorf(codes.AlreadyExists, "raft address %s already belongs to member %q", node.RaftAddress, srv.ID)
		}
	}
	if !present {
		timeout := a.s.cfg.RequestTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		if err := a.s.raft.AddVoter(raft.ServerID(node.Id), raft.ServerAddress(node.RaftAddress), 0, timeout).Error(); err != nil {
			return nil, err
		}
		a.s.log.Info("added voter", "id", node.Id, "raft_addr", node.RaftAddress)
	}
	idx, err := a.s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_RegisterNode{RegisterNode: &fsmv1.RegisterNode{Node: node}}})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.JoinResponse{Index: idx}, nil
}

// CheckLogFormat commits a FormatProbe: it succeeds once every voter
// understands the format.
func (a *api) CheckLogFormat(ctx context.Context, req *coordinatorv1.CheckLogFormatRequest) (*coordinatorv1.CheckLogFormatResponse, error) {
	format := req.GetFormat()
	if format == 0 {
		format = fsm.Format2
	}
	if format != fsm.Format2 {
		return nil, &fsm.Error{Kind: fsm.Invalid, Msg: fmt.Sprintf("log format %d: only format 2 has a probe", format)}
	}
	idx, err := a.s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_FormatProbe{FormatProbe: &fsmv1.FormatProbe{Format: format}}})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.CheckLogFormatResponse{Index: idx, Format: format}, nil
}

func (a *api) RemoveNode(ctx context.Context, req *coordinatorv1.RemoveNodeRequest) (*coordinatorv1.RemoveNodeResponse, error) {
	members, err := a.members()
	if err != nil {
		return nil, err
	}
	found := false
	for _, m := range members {
		found = found || m.Id == req.GetId()
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "unknown node %q: not a member of the cluster", req.GetId())
	}
	if len(members) == 1 {
		return nil, status.Errorf(codes.FailedPrecondition, "node %q is the last member; a cluster cannot remove its only node", req.GetId())
	}
	if _, ok := a.s.fsm.Node(req.GetId()); ok {
		// Forget the addresses first: the leader may be the node leaving.
		if _, err := a.s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_DeregisterNode{DeregisterNode: &fsmv1.DeregisterNode{Id: req.GetId()}}}); err != nil {
			return nil, err
		}
	}
	if err := a.s.raft.RemoveServer(raft.ServerID(req.GetId()), 0, a.s.cfg.RequestTimeout).Error(); err != nil {
		return nil, err
	}
	a.s.log.Info("removed node", "id", req.GetId())
	return &coordinatorv1.RemoveNodeResponse{Index: a.s.raft.LastIndex()}, nil
}

func (a *api) Monitor(ctx context.Context, req *coordinatorv1.MonitorRequest) (*coordinatorv1.MonitorResponse, error) {
	s := req.GetSettings()
	fenceLag := s.GetFenceLag().AsDuration()
	if fenceLag%time.Second != 0 {
		return nil, status.Errorf(codes.InvalidArgument, "fence-lag %v: Redis counts the lag in whole seconds; want 1s, 2s, ...", fenceLag)
	}
	idx, err := a.s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
		Name:    req.GetName(),
		Address: req.GetAddress(),
		Settings: &fsmv1.MasterSettings{
			Quorum:            s.GetQuorum(),
			DownAfterMs:       s.GetDownAfter().AsDuration().Milliseconds(),
			FailoverTimeoutMs: s.GetFailoverTimeout().AsDuration().Milliseconds(),
			ParallelSyncs:     s.GetParallelSyncs(),
			AuthUser:          s.GetAuthUser(),
			AuthPass:          s.GetAuthPass(),
			MaxLagBytes:       s.GetMaxLagBytes(),
			PingPeriodMs:      s.GetPingPeriod().AsDuration().Milliseconds(),
			// A negative duration reaches the state machine's check as a
			// negative value, not as 0 (off).
			MasterRebootDownAfterPeriodMs: s.GetMasterRebootDownAfterPeriod().AsDuration().Milliseconds(),
			// Refused by the state machine: hooks are set with Set, where
			// they are checked on every node.
			NotificationScript:   s.GetNotificationScript(),
			ClientReconfigScript: s.GetClientReconfigScript(),
			WebhookUrl:           s.GetWebhookUrl(),
			Maintenance:          s.GetMaintenance(),
			FenceOff:             s.Fence != nil && !s.GetFence(),
			FenceLagS:            int64(fenceLag / time.Second),
		},
	}}})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.MonitorResponse{Index: idx}, nil
}

func (a *api) Remove(ctx context.Context, req *coordinatorv1.RemoveRequest) (*coordinatorv1.RemoveResponse, error) {
	idx, err := a.s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_RemoveMaster{RemoveMaster: &fsmv1.RemoveMaster{Name: req.GetName()}}})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.RemoveResponse{Index: idx}, nil
}

func (a *api) Set(ctx context.Context, req *coordinatorv1.SetRequest) (*coordinatorv1.SetResponse, error) {
	if err := a.s.checkHookOptions(ctx, req.GetOptions()); err != nil {
		return nil, err
	}
	c := &fsmv1.SetMasterOptions{Name: req.GetName()}
	for _, o := range req.GetOptions() {
		c.Options = append(c.Options, &fsmv1.Option{Key: o.GetKey(), Value: o.GetValue()})
	}
	idx, err := a.s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_SetMasterOptions{SetMasterOptions: c}})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.SetResponse{Index: idx}, nil
}

func (a *api) Reset(ctx context.Context, req *coordinatorv1.ResetRequest) (*coordinatorv1.ResetResponse, error) {
	idx, err := a.s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_ResetMaster{ResetMaster: &fsmv1.ResetMaster{Name: req.GetName()}}})
	if err != nil {
		return nil, err
	}
	return &coordinatorv1.ResetResponse{Index: idx}, nil
}

// waitConsistent lets a reader ask for a state at least as new as an index
// it saw elsewhere (for example the index a write returned).
func (a *api) waitConsistent(ctx context.Context, c *coordinatorv1.ReadConsistency) error {
	if c.GetMinIndex() == 0 {
		return nil
	}
	return a.s.fsm.WaitForIndex(ctx, c.GetMinIndex())
}

func (a *api) ListMasters(ctx context.Context, req *coordinatorv1.ListMastersRequest) (*coordinatorv1.ListMastersResponse, error) {
	if err := a.waitConsistent(ctx, req.GetConsistency()); err != nil {
		return nil, err
	}
	if err := a.s.checkFresh(); err != nil {
		return nil, err
	}
	masters, idx := a.s.fsm.Masters()
	out := &coordinatorv1.ListMastersResponse{Index: idx}
	for _, m := range masters {
		out.Masters = append(out.Masters, publicMaster(m))
	}
	return out, nil
}

func (a *api) GetMaster(ctx context.Context, req *coordinatorv1.GetMasterRequest) (*coordinatorv1.GetMasterResponse, error) {
	if err := a.waitConsistent(ctx, req.GetConsistency()); err != nil {
		return nil, err
	}
	if err := a.s.checkFresh(); err != nil {
		return nil, err
	}
	m, idx, ok := a.s.fsm.Master(req.GetName())
	if !ok {
		return nil, fsm.UnknownMaster(req.GetName())
	}
	return &coordinatorv1.GetMasterResponse{Master: publicMaster(m), Index: idx}, nil
}

func publicMaster(m *fsmv1.Master) *coordinatorv1.Master {
	s := m.GetSettings()
	return &coordinatorv1.Master{
		Name:    m.GetName(),
		Address: m.GetAddress(),
		Epoch:   m.GetEpoch(),
		Settings: &coordinatorv1.MasterSettings{
			Quorum:                      s.GetQuorum(),
			DownAfter:                   durationpb.New(time.Duration(s.GetDownAfterMs()) * time.Millisecond),
			FailoverTimeout:             durationpb.New(time.Duration(s.GetFailoverTimeoutMs()) * time.Millisecond),
			ParallelSyncs:               s.GetParallelSyncs(),
			AuthUser:                    s.GetAuthUser(),
			AuthPassSet:                 s.GetAuthPass() != "",
			MaxLagBytes:                 s.GetMaxLagBytes(),
			PingPeriod:                  pingPeriod(s),
			MasterRebootDownAfterPeriod: durationpb.New(time.Duration(s.GetMasterRebootDownAfterPeriodMs()) * time.Millisecond),
			NotificationScript:          s.GetNotificationScript(),
			ClientReconfigScript:        s.GetClientReconfigScript(),
			WebhookUrl:                  s.GetWebhookUrl(),
			Maintenance:                 s.GetMaintenance(),
			Fence:                       proto.Bool(fsm.FenceOn(s)),
			FenceLag:                    durationpb.New(fsm.FenceLag(s)),
		},
	}
}

// pingPeriod is a master's ping-period for reads: unset when automatic.
func pingPeriod(s *fsmv1.MasterSettings) *durationpb.Duration {
	if s.GetPingPeriodMs() == 0 {
		return nil
	}
	return durationpb.New(time.Duration(s.GetPingPeriodMs()) * time.Millisecond)
}
