package fsm

import (
	"sort"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// Head is what a watcher of a master needs: where it is and at which epoch.
type Head struct {
	Address string
	Epoch   uint64
}

// Heads returns every master's head, the applied index and the newest event
// sequence number, read together. It copies two strings and a number per
// master, not the masters, so watch front ends can call it on every change.
func (f *FSM) Heads() (heads map[string]Head, index, lastEventSeq uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	heads = make(map[string]Head, len(f.state.Masters))
	for name, m := range f.state.Masters {
		heads[name] = Head{Address: m.GetAddress(), Epoch: m.GetEpoch()}
	}
	return heads, f.state.GetAppliedIndex(), f.state.GetLastEventSeq()
}

// History returns copies of the stored events of one master (every master
// when master is empty), oldest first, and the newest sequence number at
// the same moment, so a reader can go on with EventsSince without a gap.
func (f *FSM) History(master string) ([]*fsmv1.Event, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*fsmv1.Event
	for name, m := range f.state.Masters {
		if master != "" && name != master {
			continue
		}
		for _, e := range m.GetEvents() {
			out = append(out, proto.Clone(e).(*fsmv1.Event))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetSeq() < out[j].GetSeq() })
	return out, f.state.GetLastEventSeq()
}
