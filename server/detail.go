package server

import (
	"context"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func (a *api) GetMasterDetail(ctx context.Context, req *coordinatorv1.GetMasterDetailRequest) (*coordinatorv1.GetMasterDetailResponse, error) {
	if err := a.waitConsistent(ctx, req.GetConsistency()); err != nil {
		return nil, err
	}
	m, idx, ok := a.s.fsm.Master(req.GetName())
	if !ok {
		return nil, fsm.UnknownMaster(req.GetName())
	}
	ownOffsets(m, a.s.monitor.watcher.Observation)
	return &coordinatorv1.GetMasterDetailResponse{Detail: masterDetail(m), Index: idx}, nil
}

// ownOffsets sets, in m (a copy of the caller's), the offsets this node's
// own probe read last, where they are newer than the record: the leader
// commits offsets only along with a change that matters (or, for a master
// with max-lag, now and then), so the log's are as old as the last such
// change, while every node reads every instance's INFO itself. A replica's
// observed-at then says when its offset was read.
func ownOffsets(m *fsmv1.Master, observation func(addr string) (probe.Observation, bool)) {
	if o, ok := observation(m.GetAddress()); ok && o.LinkUp && o.Info != nil && o.Info.Role == probe.RoleMaster {
		m.MasterOffset = o.Info.MasterReplOffset
	}
	for _, r := range m.GetReplicas() {
		o, ok := observation(r.GetAddress())
		if !ok || o.Info == nil || o.InfoAt.UnixNano() <= r.GetObservedAtUnixNanos() {
			continue
		}
		r.Offset, r.ObservedAtUnixNanos = o.Info.SlaveReplOffset, o.InfoAt.UnixNano()
	}
}

func timestamp(unixNanos int64) *timestamppb.Timestamp {
	if unixNanos == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, unixNanos))
}

func masterDetail(m *fsmv1.Master) *coordinatorv1.MasterDetail {
	d := &coordinatorv1.MasterDetail{
		Master:         publicMaster(m),
		Odown:          m.GetOdown(),
		LastFailoverAt: timestamp(m.GetLastFailoverAtUnixNanos()),
		MasterOffset:   m.GetMasterOffset(),
		MasterRunId:    m.GetMasterRunId(),
		LastFailover:   publicOutcome(m.GetLastFailover()),
	}
	if f := m.GetFence(); f != nil {
		d.Fence = &coordinatorv1.FenceStatus{Address: f.GetAddress(), MinReplicas: f.GetMinReplicas(),
			MaxLag: durationpb.New(time.Duration(f.GetMaxLagS()) * time.Second), At: timestamp(f.GetAtUnixNanos()), Reason: f.GetReason()}
	}
	for _, r := range m.GetReplicas() {
		rep := &coordinatorv1.Replica{
			Address: r.GetAddress(), RunId: r.GetRunId(), Role: r.GetRole(), MasterLinkUp: r.GetMasterLinkUp(),
			Priority: r.GetPriority(), Offset: r.GetOffset(), Announced: r.GetAnnounced(), Sdown: r.GetSdown(),
			Disconnected: r.GetDisconnected(), ObservedAt: timestamp(r.GetObservedAtUnixNanos()),
		}
		if r.GetMasterHost() != "" {
			rep.MasterAddress = net.JoinHostPort(r.GetMasterHost(), strconv.Itoa(int(r.GetMasterPort())))
		}
		if !r.GetMasterLinkUp() && r.GetMasterLinkDownMs() > 0 {
			rep.MasterLinkDown = durationpb.New(time.Duration(r.GetMasterLinkDownMs()) * time.Millisecond)
		}
		if m.GetMasterOffset() > 0 && r.GetOffset() > 0 {
			rep.Lag = max(0, m.GetMasterOffset()-r.GetOffset())
		}
		d.Replicas = append(d.Replicas, rep)
	}
	for _, v := range m.GetVotes() {
		d.Votes = append(d.Votes, &coordinatorv1.Vote{NodeId: v.GetNodeId(), Down: v.GetDown(), At: timestamp(v.GetAtUnixNanos()), Reason: v.GetReason()})
	}
	if f := m.GetFailover(); f != nil {
		j := &coordinatorv1.FailoverJournal{
			Phase:        phaseName(f.GetPhase().String(), "FAILOVER_PHASE_"),
			Reason:       f.GetReason(),
			Candidate:    f.GetCandidate(),
			OldMaster:    f.GetOldMaster(),
			StartedEpoch: f.GetStartedEpoch(),
			StartedAt:    timestamp(f.GetStartedAtUnixNanos()),
			PromotedAt:   timestamp(f.GetPromotedAtUnixNanos()),
			Coordinated:  f.GetCoordinated(),
		}
		if w := f.GetFenceWait(); w != nil {
			j.FenceWaitUntil, j.FenceWaitReason = timestamp(w.GetUntilUnixNanos()), w.GetReason()
		}
		if f.GetCoordinated() {
			j.HandoverTimeout = durationpb.New(time.Duration(f.GetHandoverTimeoutMs()) * time.Millisecond)
		}
		for _, rc := range f.GetReconf() {
			j.Reconf = append(j.Reconf, &coordinatorv1.ReplicaReconf{Address: rc.GetAddress(),
				Phase: phaseName(rc.GetPhase().String(), "RECONF_PHASE_"), SentAt: timestamp(rc.GetSentAtUnixNanos())})
		}
		for _, r := range f.GetRejected() {
			j.Rejected = append(j.Rejected, &coordinatorv1.Rejection{Address: r.GetAddress(), Reason: r.GetReason()})
		}
		d.Failover = j
	}
	for _, e := range m.GetEvents() {
		d.Events = append(d.Events, publicEvent(e))
	}
	return d
}

func publicEvent(e *fsmv1.Event) *coordinatorv1.Event {
	return &coordinatorv1.Event{Seq: e.GetSeq(), At: timestamp(e.GetAtUnixNanos()), Master: e.GetMaster(), Type: e.GetType(),
		Payload: e.GetPayload(), NodeId: e.GetNodeId(), Epoch: e.GetEpoch(), Actor: e.GetActor().GetWho(), ActorAddress: e.GetActor().GetFrom()}
}

// phaseName turns FAILOVER_PHASE_RECONF_REPLICAS into "reconf-replicas".
func phaseName(enum, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(enum, prefix)), "_", "-")
}
