package server

import (
	"context"
	"errors"
	"github.com/raftinel/raftinel/security"
	"net"
	"sync"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/orchestrator"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/server/sentinel"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// sentinelEventBuffer is how many applied events may wait for the
	// Sentinel front end; a front end further behind loses its stream and
	// resubscribes (it logs that subscribers may have missed events).
	sentinelEventBuffer = 1024
)

// sentinelText is an error whose text is the exact Sentinel reply, which
// may end with a period as Sentinel's do.
type sentinelText string

func (e sentinelText) Error() string { return string(e) }

const (
	errDuplicateMaster sentinelText = "ERR Duplicate master name."
)

// sentinelBackend serves the Sentinel front end from this node: reads from
// the local FSM, the node's probes and its peer probes, never through
// Raft; writes call the API's handlers through onLeader, so they are
// validated and reach the leader exactly as API writes do.
type sentinelBackend struct {
	s    *Server
	api  *api
	myID string

	// targets caches, per instance address, what SDOWN is judged with;
	// rebuilt after every change of the state.
	targetsMu sync.Mutex
	targets   *instanceTargets

	reach *peerReach
}

// instanceTarget is how this node judges one instance: as the recorded
// master of a group or as a replica, with the group's down-after.
type instanceTarget struct {
	master          bool
	masterSince     time.Time     // failover.Probe.MasterSince of the master
	rebootDownAfter time.Duration // failover.Probe.RebootDownAfter of the master
	downAfter       time.Duration
}

type instanceTargets struct {
	changed <-chan struct{}
	byAddr  map[string]instanceTarget
}

var (
	_ sentinel.Backend       = (*sentinelBackend)(nil)
	_ sentinel.StateNotifier = (*sentinelBackend)(nil)
	_ sentinel.Voucher       = (*sentinelBackend)(nil)
)

func newSentinelBackend(s *Server) *sentinelBackend {
	return &sentinelBackend{s: s, api: &api{s: s}, myID: sentinel.RunID(s.cfg.ID), reach: newPeerReach()}
}

func (b *sentinelBackend) MyID() string { return b.myID }

func (b *sentinelBackend) State() *fsmv1.State { return b.s.fsm.View() }

// Vouches lets the front end stop naming masters while this node has had
// no contact with a Raft leader for longer than --max-staleness.
func (b *sentinelBackend) Vouches() bool { return b.s.Vouches() }

// Changed lets the front end clone the state once per change.
func (b *sentinelBackend) Changed() (<-chan struct{}, uint64) { return b.s.fsm.Changed() }

func (b *sentinelBackend) Tilt() (bool, time.Time) {
	mo := b.s.monitor
	mo.mu.Lock()
	defer mo.mu.Unlock()
	return mo.tilt.Active(time.Now()), mo.tilt.EnteredAt
}

// Instance is this node's probe view of one instance.
func (b *sentinelBackend) Instance(addr string) (sentinel.InstanceView, bool) {
	o, ok := b.s.monitor.watcher.Observation(addr)
	if !ok {
		return sentinel.InstanceView{}, false
	}
	t, known := b.target(addr)
	if !known {
		t = instanceTarget{downAfter: fsm.DefaultDownAfter} // not in the state seen yet
	}
	return instanceView(o, t, time.Now()), true
}

// instanceView maps a probe observation to Sentinel's fields.
func instanceView(o probe.Observation, t instanceTarget, now time.Time) sentinel.InstanceView {
	v := sentinel.InstanceView{
		LastOKPingReply: o.LastValidReply,
		LastPingReply:   o.LastReply,
		Disconnected:    !o.LinkUp,
		InfoRefresh:     o.InfoAt,
	}
	v.LastPingSent = o.FailingSince // Sentinel's act_ping_time
	p := orchestrator.ProbeOf(o, true)
	p.MasterSince, p.RebootDownAfter = t.masterSince, t.rebootDownAfter
	if down, _ := failover.SubjectivelyDown(p, t.master, t.downAfter, now); down {
		v.SDown, v.SDownSince = true, failover.SDownSince(p, t.downAfter, now)
	}
	v.MasterReboot = t.master && failover.MasterRebooting(p)
	if in := o.Info; in != nil {
		v.RoleReported, v.RoleReportedTime = string(in.Role), o.RoleChangedAt
		v.RunID = in.RunID
		if in.HasMasterLinkDownSince {
			v.MasterLinkDownSince = time.Duration(in.MasterLinkDownSinceSeconds) * time.Second
		}
		v.MasterHost, v.MasterPort, v.MasterLinkUp = in.MasterHost, in.MasterPort, in.MasterLinkUp()
		v.SlavePriority, v.SlaveReplOffset, v.ReplicaAnnounced = in.ReplicaPriority, in.SlaveReplOffset, in.ReplicaAnnounced
	}
	return v
}

// target looks up how addr is judged, rebuilding the index after a change.
func (b *sentinelBackend) target(addr string) (instanceTarget, bool) {
	b.targetsMu.Lock()
	defer b.targetsMu.Unlock()
	if b.targets == nil || isClosed(b.targets.changed) {
		changed, _ := b.s.fsm.Changed()
		idx := &instanceTargets{changed: changed, byAddr: map[string]instanceTarget{}}
		for _, m := range b.s.fsm.View().GetMasters() {
			downAfter := time.Duration(m.GetSettings().GetDownAfterMs()) * time.Millisecond
			for _, r := range m.GetReplicas() {
				idx.byAddr[r.GetAddress()] = instanceTarget{downAfter: downAfter}
			}
			mp := orchestrator.MasterProbe(failover.Probe{}, m)
			idx.byAddr[m.GetAddress()] = instanceTarget{master: true, masterSince: mp.MasterSince, rebootDownAfter: mp.RebootDownAfter, downAfter: downAfter}
		}
		b.targets = idx
	}
	t, ok := b.targets.byAddr[addr]
	return t, ok
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Peers are the other registered nodes; with reach, one is reachable when
// it answered this node's status probe lately.
func (b *sentinelBackend) Peers(reach bool) []sentinel.Peer {
	if reach {
		if done := b.reach.ask(time.Now()); done != nil {
			wait := time.NewTimer(peerAskWait)
			select {
			case <-done:
			case <-wait.C:
			case <-b.s.ctx.Done():
			}
			wait.Stop()
		}
	}
	nodes := b.s.fsm.Nodes()
	now := time.Now()
	out := make([]sentinel.Peer, 0, len(nodes))
	for _, n := range nodes {
		if n.GetId() == b.s.cfg.ID {
			continue
		}
		out = append(out, sentinel.Peer{ID: n.GetId(), SentinelAddr: n.GetSentinelAddress(),
			Reachable: reach && b.reach.reachable(n.GetId(), now)})
	}
	return out
}

// probePeers asks every other node for its own status each period while
// someone wants to know (peerReach), until the node stops. It reuses the
// Status API's remote call, which gives up on a node after a second.
func (b *sentinelBackend) probePeers(ctx context.Context) {
	tick := newBeat(b.s.monitor.watcher, peerProbePeriod)
	defer tick.Stop()
	for {
		if b.reach.wanted(time.Now()) {
			b.probeRound(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			tick.rearm(now)
		case <-b.reach.kick:
		}
	}
}

func (b *sentinelBackend) probeRound(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range b.s.fsm.Nodes() {
		if n.GetId() == b.s.cfg.ID {
			continue
		}
		m := nodeMember(n)
		wg.Go(func() {
			if st := b.api.remoteStatus(ctx, m); st.GetState() != "unreachable" {
				b.reach.answered(m.Id, time.Now())
			}
		})
	}
	wg.Wait()
	b.reach.roundEnded()
}

// Events relays every event this node applies from now on. The relay
// stops, closing the channel, when the consumer lets the buffer fill or the
// FSM can no longer supply the events in order (a snapshot was installed).
func (b *sentinelBackend) Events() (<-chan *fsmv1.Event, func()) {
	out := make(chan *fsmv1.Event, sentinelEventBuffer)
	ctx, cancel := context.WithCancel(b.s.ctx)
	after := b.s.fsm.LastEventSeq()
	local, unsubscribe := b.s.local.subscribe()
	b.s.wg.Go(func() {
		defer close(out)
		defer unsubscribe()
		b.relayEvents(ctx, after, local, out)
	})
	return out, cancel
}

// relayEvents sends the committed events after after, as they are
// applied, and this node's own events (local) as they happen.
func (b *sentinelBackend) relayEvents(ctx context.Context, after uint64, local <-chan *fsmv1.Event, out chan<- *fsmv1.Event) {
	for {
		changed, _ := b.s.fsm.Changed()
		events, missed := b.s.fsm.EventsSince(after)
		if missed {
			b.s.log.Warn("sentinel event relay: events are no longer available in order; restarting the stream", "after_seq", after)
			return
		}
		for _, e := range events {
			select {
			case out <- e:
				after = e.GetSeq()
			default:
				b.s.log.Warn("sentinel event relay: the front end fell behind; restarting the stream", "after_seq", after)
				return
			}
		}
		select {
		case <-changed:
		case e := <-local:
			select {
			case out <- e:
			default:
				b.s.log.Warn("sentinel event relay: the front end fell behind; restarting the stream", "event", e.GetType())
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func (b *sentinelBackend) Monitor(ctx context.Context, name, addr string, quorum int) error {
	req := &coordinatorv1.MonitorRequest{Name: name, Address: addr, Settings: &coordinatorv1.MasterSettings{Quorum: uint32(quorum)}}
	_, err := onLeader(b.s, sentinelCaller(ctx), coordinatorv1.CoordinatorService_Monitor_FullMethodName, req, b.api.Monitor)
	return sentinelError(err)
}

func (b *sentinelBackend) Remove(ctx context.Context, name string) error {
	req := &coordinatorv1.RemoveRequest{Name: name}
	_, err := onLeader(b.s, sentinelCaller(ctx), coordinatorv1.CoordinatorService_Remove_FullMethodName, req, b.api.Remove)
	return sentinelError(err)
}

func (b *sentinelBackend) Set(ctx context.Context, name string, options [][2]string) error {
	req := &coordinatorv1.SetRequest{Name: name}
	for _, o := range options {
		req.Options = append(req.Options, &coordinatorv1.Option{Key: o[0], Value: o[1]})
	}
	_, err := onLeader(b.s, sentinelCaller(ctx), coordinatorv1.CoordinatorService_Set_FullMethodName, req, b.api.Set)
	return sentinelError(err)
}

func (b *sentinelBackend) Reset(ctx context.Context, name string) error {
	req := &coordinatorv1.ResetRequest{Name: name}
	_, err := onLeader(b.s, sentinelCaller(ctx), coordinatorv1.CoordinatorService_Reset_FullMethodName, req, b.api.Reset)
	return sentinelError(err)
}

// Failover is SENTINEL FAILOVER: a forced promotion that answers as soon as
// its start is committed, as Sentinel answers +OK and fails over in the
// background.
func (b *sentinelBackend) Failover(ctx context.Context, name string) error {
	return sentinelError(b.s.StartFailover(sentinelCaller(ctx), name))
}

// sentinelError is the one place a write's error becomes Sentinel's reply:
// by its reason first, then by its gRPC code, else its message (the fsm's
// messages for SET already are Sentinel's: "Invalid argument '<v>' for
// SENTINEL SET '<opt>'"; the front end puts "ERR " before any text without
// a code). It takes the error as a write returns it, from this node or
// relayed from the leader.
func sentinelError(err error) error {
	if err == nil {
		return nil
	}
	switch ReasonOf(err) {
	case fsm.ReasonFailoverInProgress:
		return sentinel.ErrInProgress
	case fsm.ReasonNoGoodReplica:
		return sentinel.ErrNoGoodReplica
	case fsm.ReasonUnknownMaster:
		return sentinel.ErrNoSuchMaster
	}
	st := status.Convert(toStatus(err))
	switch st.Code() {
	case codes.NotFound:
		return sentinel.ErrNoSuchMaster
	case codes.AlreadyExists:
		return errDuplicateMaster
	}
	return errors.New(st.Message())
}

// startSentinel serves the Sentinel protocol on the listener New bound.
func (s *Server) startSentinel(lis net.Listener) error {
	backend := newSentinelBackend(s)
	s.sentinel = sentinel.New(sentinel.Config{
		Listener:         lis,
		Password:         s.cfg.SentinelPass,
		Users:            sentinelUsers{s.auth},
		Logger:           s.log,
		MaxClients:       s.cfg.SentinelMaxClients,
		SubscriberBuffer: s.cfg.SentinelSubscriberBuffer,
		BusyPoll:         s.cfg.SentinelBusyPoll,
		CommandTimeout:   s.cfg.RequestTimeout,
		// With it, SET passes script options on to the leader, which
		// checks every node; without, they are refused here as Sentinel
		// refuses them under deny-scripts-reconfig.
		AllowScriptReconfig: s.cfg.AllowScriptReconfig,
	}, backend)
	if err := s.sentinel.Start(); err != nil {
		return err
	}
	s.wg.Go(func() { backend.probePeers(s.ctx) })
	return nil
}

// sentinelCaller gives a Sentinel write the identity of its client, for
// the leader's check and the audit: the Sentinel endpoint has already
// authenticated it (with the shared password, or none), and a client that
// may write there may do what SENTINEL writes do.
func sentinelCaller(ctx context.Context) context.Context {
	if _, ok := security.IdentityFrom(ctx); ok {
		return ctx
	}
	id := security.Identity{Kind: security.KindSentinel, Name: "default", Role: security.RoleAdmin}
	if c, ok := sentinel.ClientFrom(ctx); ok {
		id.Name, id.From = c.User, c.Addr
	}
	return security.WithIdentity(ctx, id)
}

// sentinelUsers are the Sentinel users of the auth file (roles
// sentinel-read and sentinel-admin), as of its last load.
type sentinelUsers struct{ auth *security.AuthFile }

func (u sentinelUsers) Lookup(user, pass string) (sentinel.User, bool) {
	if u.auth == nil {
		return sentinel.User{}, false
	}
	t, ok := u.auth.LookupSentinel(user, pass)
	return sentinel.User{Name: t.Name, ReadOnly: t.Sentinel == security.SentinelRead}, ok
}

func (u sentinelUsers) Any() bool { return u.auth != nil && u.auth.Tokens().HasSentinelUsers() }
