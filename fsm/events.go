package fsm

import (
	"fmt"
	"net"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// MaxEvents bounds the history kept per master in the replicated state.
const MaxEvents = 100

// SplitAddress splits host:port for event payloads; Sentinel prints the
// host and the port as two words.
func SplitAddress(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, "0"
	}
	return h, p
}

// masterDetail is Sentinel's "%@" for a master: "master <name> <ip> <port>".
func masterDetail(m *fsmv1.Master) string {
	return masterDetailAt(m.GetName(), m.GetAddress())
}

func masterDetailAt(name, addr string) string {
	h, p := SplitAddress(addr)
	return fmt.Sprintf("master %s %s %s", name, h, p)
}

// replicaDetail is Sentinel's "%@" for a replica:
// "slave <ip:port> <ip> <port> @ <master> <master-ip> <master-port>".
func replicaDetail(m *fsmv1.Master, addr string) string {
	h, p := SplitAddress(addr)
	mh, mp := SplitAddress(m.GetAddress())
	return fmt.Sprintf("slave %s %s %s @ %s %s %s", net.JoinHostPort(h, p), h, p, m.GetName(), mh, mp)
}

// recorder collects the events one command produces, so that a rejected
// command records none.
type recorder struct {
	st     *fsmv1.State
	now    int64
	events []*fsmv1.Event
	// actor, when a user asked for the command, is carried by each event.
	actor *fsmv1.Actor
}

func (r *recorder) add(m *fsmv1.Master, typ, payload, nodeID string) {
	r.events = append(r.events, &fsmv1.Event{
		AtUnixNanos: r.now, Type: typ, Payload: payload, NodeId: nodeID, Master: m.GetName(), Epoch: m.GetEpoch(), Actor: r.actor,
	})
}

// addFrom records an event that format added to what Apply publishes, only
// once the cluster has switched to that format (State.log_format): in a
// cluster still running binaries that do not publish it, every node must
// number its events alike.
func (r *recorder) addFrom(format uint32, m *fsmv1.Master, typ, payload, nodeID string) {
	if max(r.st.GetLogFormat(), Format1) >= format {
		r.add(m, typ, payload, nodeID)
	}
}

// commit numbers the events, appends them to each master's bounded history
// (when the master still exists) and returns them.
func (r *recorder) commit() []*fsmv1.Event {
	for _, e := range r.events {
		r.st.LastEventSeq++
		e.Seq = r.st.LastEventSeq
		m, ok := r.st.Masters[e.Master]
		if !ok {
			continue
		}
		m.Events = append(m.Events, e)
		if over := len(m.Events) - MaxEvents; over > 0 {
			loseHookEvents(m, m.Events[:over])
			m.Events = append([]*fsmv1.Event(nil), m.Events[over:]...)
		}
	}
	return r.events
}
