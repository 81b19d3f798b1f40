package fsm

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// Result is what Apply returns to the proposer through raft's ApplyFuture.
type Result struct {
	// Index is the Raft index of the command.
	Index uint64
	// Err is the business rejection, or nil. It is always an *Error.
	Err error
}

// FSM is the replicated state machine. It implements raft.FSM. Readers get
// clones, so nothing outside can mutate the state.
type FSM struct {
	mu      sync.RWMutex
	state   *fsmv1.State
	changed chan struct{} // closed and replaced on every change
	// recent holds the latest events of every master for live streams. It
	// is not replicated state: a restore empties it.
	recent []*fsmv1.Event
	// ends counts the failovers this node applied the end of (stats.go),
	// from the entries above countAfter. Not replicated state either.
	ends       map[FailoverEnd]uint64
	countAfter uint64
	// view is View's shared copy of state; viewStale says a change came
	// since it was made. dirty names the masters changed since then, and
	// dirtyAll says more may have (nodes, a restore): View copies only
	// what changed and shares the rest with the view before.
	view      *fsmv1.State
	viewStale bool
	dirty     map[string]bool
	dirtyAll  bool
}

// recentEvents bounds the live event buffer; a reader further behind is
// told it missed events.
const recentEvents = 4096

var _ raft.FSM = (*FSM)(nil)

// New returns an empty state machine.
func New() *FSM {
	return &FSM{state: &fsmv1.State{}, changed: make(chan struct{})}
}

// Apply applies one committed log entry.
func (f *FSM) Apply(l *raft.Log) any {
	cmd, err := Decode(l.Data)
	if err != nil {
		panic(fmt.Sprintf("fsm: log entry %d: %v: upgrade this binary", l.Index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	events, err := applyCommand(f.state, cmd)
	f.state.AppliedIndex = l.Index
	f.recent = append(f.recent, events...)
	f.countEndsLocked(l.Index, events)
	if over := len(f.recent) - recentEvents; over > 0 {
		f.recent = append([]*fsmv1.Event(nil), f.recent[over:]...)
	}
	if err == nil {
		if name := masterOf(cmd); name == "" {
			f.dirtyAll = true
		} else {
			f.touchLocked(name)
			// An event is recorded in its master's history.
			for _, e := range events {
				f.touchLocked(e.GetMaster())
			}
		}
	}
	f.notifyLocked()
	return &Result{Index: l.Index, Err: err}
}

func (f *FSM) touchLocked(master string) {
	if f.dirty == nil {
		f.dirty = map[string]bool{}
	}
	f.dirty[master] = true
}

// masterOf names the one master a command of its kind changes, or "" for
// a command that may change more than one, or the nodes.
func masterOf(cmd *fsmv1.Command) string {
	switch k := cmd.Kind.(type) {
	case *fsmv1.Command_MonitorMaster:
		return k.MonitorMaster.GetName()
	case *fsmv1.Command_RemoveMaster:
		return k.RemoveMaster.GetName()
	case *fsmv1.Command_SetMasterOptions:
		return k.SetMasterOptions.GetName()
	case *fsmv1.Command_ResetMaster:
		return k.ResetMaster.GetName()
	case *fsmv1.Command_ReportVote:
		return k.ReportVote.GetMaster()
	case *fsmv1.Command_UpdateReplicas:
		return k.UpdateReplicas.GetMaster()
	case *fsmv1.Command_SetObjectiveDown:
		return k.SetObjectiveDown.GetMaster()
	case *fsmv1.Command_BeginFailover:
		return k.BeginFailover.GetMaster()
	case *fsmv1.Command_AbortFailover:
		return k.AbortFailover.GetMaster()
	case *fsmv1.Command_Promoted:
		return k.Promoted.GetMaster()
	case *fsmv1.Command_ReplicaReconfigured:
		return k.ReplicaReconfigured.GetMaster()
	case *fsmv1.Command_FinishFailover:
		return k.FinishFailover.GetMaster()
	case *fsmv1.Command_RecordRepair:
		return k.RecordRepair.GetMaster()
	case *fsmv1.Command_HandoverPaused:
		return k.HandoverPaused.GetMaster()
	case *fsmv1.Command_HookProgress:
		return k.HookProgress.GetMaster()
	case *fsmv1.Command_FenceSet:
		return k.FenceSet.GetMaster()
	case *fsmv1.Command_FenceWaitStarted:
		return k.FenceWaitStarted.GetMaster()
	}
	return ""
}

func (f *FSM) notifyLocked() {
	f.viewStale = true
	close(f.changed)
	f.changed = make(chan struct{})
}

// Changed returns a channel that is closed at the next change, and the index
// the state has now. Read the state after calling Changed, so that no change
// between the read and the wait is missed.
func (f *FSM) Changed() (<-chan struct{}, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed, f.state.GetAppliedIndex()
}

// EventsSince returns the events with a sequence number above after, oldest
// first, and whether some in between are no longer available (the reader
// fell too far behind, or a snapshot was installed meanwhile).
func (f *FSM) EventsSince(after uint64) ([]*fsmv1.Event, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	last := f.state.GetLastEventSeq()
	if after >= last {
		return nil, false
	}
	i := sort.Search(len(f.recent), func(i int) bool { return f.recent[i].GetSeq() > after })
	out := make([]*fsmv1.Event, 0, len(f.recent)-i)
	for _, e := range f.recent[i:] {
		out = append(out, proto.Clone(e).(*fsmv1.Event))
	}
	missed := len(out) == 0 || out[0].GetSeq() > after+1
	return out, missed
}

// LastEventSeq is the sequence number of the newest event.
func (f *FSM) LastEventSeq() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.GetLastEventSeq()
}

// AppliedIndex is the Raft index of the last applied command.
func (f *FSM) AppliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.GetAppliedIndex()
}

// WaitForIndex blocks until the state reflects at least index, or ctx ends.
func (f *FSM) WaitForIndex(ctx context.Context, index uint64) error {
	for {
		ch, applied := f.Changed()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (applied %d): %w", index, applied, ctx.Err())
		}
	}
}

// State returns a copy of the whole state.
func (f *FSM) State() *fsmv1.State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return proto.Clone(f.state).(*fsmv1.State)
}

// View returns the whole state for reading only: one copy shared by every
// caller until the next change. The loop every node runs reads the whole
// state ten times a second and at every change; with a thousand masters a
// copy each time was most of a node's CPU, while the state changes a few
// times a second at most. Callers must never modify what View returns
// (State returns a copy of their own).
//
// A new view copies only the masters changed since the view before (and
// the nodes when they changed): during a hundred failovers at once, with a
// thousand masters, copying the whole state at every one of hundreds of
// commits a second starved the node. An unchanged master is the same
// record, by pointer, in both views.
func (f *FSM) View() *fsmv1.State {
	f.mu.RLock()
	v, stale := f.view, f.viewStale
	f.mu.RUnlock()
	if v != nil && !stale {
		return v
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.view != nil && !f.viewStale {
		return f.view
	}
	prev := f.view
	if prev == nil || f.dirtyAll {
		f.view = proto.Clone(f.state).(*fsmv1.State)
	} else {
		next := &fsmv1.State{Nodes: prev.Nodes, Masters: make(map[string]*fsmv1.Master, len(f.state.Masters)),
			AppliedIndex: f.state.GetAppliedIndex(), LastEventSeq: f.state.GetLastEventSeq(), LogFormat: f.state.GetLogFormat()}
		for name, m := range f.state.Masters {
			if old, ok := prev.Masters[name]; ok && !f.dirty[name] {
				next.Masters[name] = old
			} else {
				next.Masters[name] = proto.Clone(m).(*fsmv1.Master)
			}
		}
		f.view = next
	}
	f.viewStale, f.dirtyAll = false, false
	clear(f.dirty)
	return f.view
}

// Master returns a copy of one master and the index the state reflects.
func (f *FSM) Master(name string) (*fsmv1.Master, uint64, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.state.Masters[name]
	if !ok {
		return nil, f.state.GetAppliedIndex(), false
	}
	return proto.Clone(m).(*fsmv1.Master), f.state.GetAppliedIndex(), true
}

// Masters returns copies of every master, sorted by name, and the index.
func (f *FSM) Masters() ([]*fsmv1.Master, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*fsmv1.Master, 0, len(f.state.Masters))
	for _, m := range f.state.Masters {
		out = append(out, proto.Clone(m).(*fsmv1.Master))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, f.state.GetAppliedIndex()
}

// Nodes returns copies of every registered node, sorted by id.
func (f *FSM) Nodes() []*fsmv1.Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*fsmv1.Node, 0, len(f.state.Nodes))
	for _, n := range f.state.Nodes {
		out = append(out, proto.Clone(n).(*fsmv1.Node))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// Node returns a copy of one registered node.
func (f *FSM) Node(id string) (*fsmv1.Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n, ok := f.state.Nodes[id]
	if !ok {
		return nil, false
	}
	return proto.Clone(n).(*fsmv1.Node), true
}

// Snapshot captures the state; raft persists it later, off the apply path.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	// Persist only marshals the state: the shared read-only copy will do.
	return &snapshot{state: f.View()}, nil
}

// Restore replaces the state with a snapshot, after checking it.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	st := &fsmv1.State{}
	if err := proto.Unmarshal(data, st); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if err := ValidateState(st); err != nil {
		return fmt.Errorf("snapshot is invalid: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = st
	f.recent = nil
	f.dirtyAll = true
	f.notifyLocked()
	return nil
}

// ValidateState checks every invariant Apply maintains.
func ValidateState(st *fsmv1.State) error {
	for id, n := range st.Nodes {
		if id != n.GetId() {
			return fmt.Errorf("node key %q holds node %q", id, n.GetId())
		}
		if err := ValidateName("node", id); err != nil {
			return err
		}
	}
	for name, m := range st.Masters {
		if name != m.GetName() {
			return fmt.Errorf("master key %q holds master %q", name, m.GetName())
		}
		if err := ValidateName("master", name); err != nil {
			return err
		}
		if err := ValidateAddress("master", m.GetAddress()); err != nil {
			return err
		}
		if err := validateSettings(m.GetSettings()); err != nil {
			return fmt.Errorf("master %q: %w", name, err)
		}
	}
	return nil
}

type snapshot struct{ state *fsmv1.State }

func (s *snapshot) marshal() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(s.state)
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	data, err := s.marshal()
	if err == nil {
		_, err = sink.Write(data)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
