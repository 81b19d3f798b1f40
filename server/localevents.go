package server

import (
	"sync"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Sentinel's TILT events, with Sentinel's payloads. TILT is one node's
// state (its own timer stalled), never committed: the node in TILT
// publishes them itself, on its own Sentinel endpoint and WatchEvents
// streams, as a sentinel does. They carry the node's id, sequence number 0
// (they are outside the committed sequence) and no master.
const (
	EventTiltOn      = "+tilt"
	EventTiltOff     = "-tilt"
	tiltOnPayload    = "#tilt mode entered"
	tiltOffPayload   = "#tilt mode exited"
	localEventBuffer = 64
)

// localEvents fans this node's own, uncommitted events out to the front
// ends. A subscriber whose buffer is full misses the event (and the front
// end logs it): these events are rare, and nothing may wait for a reader.
type localEvents struct {
	mu   sync.Mutex
	subs map[chan *fsmv1.Event]struct{}
}

func newLocalEvents() *localEvents {
	return &localEvents{subs: map[chan *fsmv1.Event]struct{}{}}
}

// subscribe returns a channel of the events published from now on, and
// the function that ends the subscription.
func (h *localEvents) subscribe() (<-chan *fsmv1.Event, func()) {
	ch := make(chan *fsmv1.Event, localEventBuffer)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// publish hands e to every subscriber that has room; it reports how many
// missed it.
func (h *localEvents) publish(e *fsmv1.Event) (missed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- e:
		default:
			missed++
		}
	}
	return missed
}
