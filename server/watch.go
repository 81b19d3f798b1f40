package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftinel/raftinel/fsm"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// watchHub turns the FSM's one change notification into per-master ones.
// A single goroutine reads every master's head (address and epoch, no
// clone) once per applied command; the streams of a master wake only when
// that master's head changes, and event streams only when events were
// added. Nothing here waits for a stream, so a slow reader holds up its own
// goroutine and no one else's.
type watchHub struct {
	fsm *fsm.FSM
	// senders delivers WatchMaster updates; see masterWatch.
	senders *watchSenders

	mu      sync.RWMutex // read-locked by every stream at every change
	index   uint64       // the applied index of the heads last synced
	masters map[string]*topic
	lastSeq uint64
	events  chan struct{} // closed when lastSeq rises
}

// topic is one master as the hub last saw it. A removed topic is never
// reused: a master monitored again under the same name gets a new topic, so
// a stream of the old one ends instead of seeing its epoch go back.
type topic struct {
	head    fsm.Head
	index   uint64
	removed bool
	changed chan struct{} // closed when head changes or the master goes
	// msg is the WatchMasterResponse for head and index, encoded once for
	// every stream that sends it (nil until the first stream asks).
	msg *grpc.PreparedMsg
	// watchers are the WatchMaster streams of this topic.
	watchers map[*masterWatch]struct{}
}

func newWatchHub(f *fsm.FSM) *watchHub {
	h := &watchHub{fsm: f, masters: map[string]*topic{}, events: make(chan struct{})}
	h.senders = newWatchSenders(h)
	h.sync()
	return h
}

// run follows the FSM until ctx ends. Changed is taken before the state is
// read, so no change between the read and the wait is missed.
func (h *watchHub) run(ctx context.Context) {
	for {
		changed, _ := h.fsm.Changed()
		h.sync()
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// sync brings the hub up to the FSM. Streams call it too, to look up a
// master the hub's goroutine has not seen yet; heads read before an other
// caller's newer ones are dropped, so nothing ever goes back.
func (h *watchHub) sync() {
	heads, index, lastSeq := h.fsm.Heads()
	h.mu.Lock()
	defer h.mu.Unlock()
	if index < h.index {
		return
	}
	h.index = index
	var wake []*masterWatch
	for name, t := range h.masters {
		head, ok := heads[name]
		switch {
		case !ok:
			t.removed = true
			close(t.changed)
			delete(h.masters, name)
		case head != t.head:
			t.head, t.index, t.msg = head, index, nil
			close(t.changed)
			t.changed = make(chan struct{})
		default:
			continue
		}
		for w := range t.watchers {
			wake = append(wake, w)
		}
	}
	for name, head := range heads {
		if _, ok := h.masters[name]; !ok {
			h.masters[name] = &topic{head: head, index: index, changed: make(chan struct{}), watchers: map[*masterWatch]struct{}{}}
		}
	}
	h.senders.enqueue(wake...)
	if lastSeq != h.lastSeq {
		h.lastSeq = lastSeq
		close(h.events)
		h.events = make(chan struct{})
	}
}

// topic returns the current topic of a master, or nil when it is not
// monitored as far as the FSM knows now.
func (h *watchHub) topic(name string) *topic {
	h.mu.RLock()
	t := h.masters[name]
	h.mu.RUnlock()
	if t != nil {
		return t
	}
	h.sync()
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.masters[name]
}

// read returns what a topic holds now and the channel closed at its next
// change.
func (h *watchHub) read(t *topic) (head fsm.Head, index uint64, removed bool, changed <-chan struct{}) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return t.head, t.index, t.removed, t.changed
}

// message returns the response for head and index of t, encoded once per
// change and shared by every stream of the topic: grpc's PreparedMsg holds
// the bytes as they go on the wire, and sending it encodes nothing. stream
// supplies the codec (every stream of this server has the same one). A
// head that has moved on since the caller read it is encoded for this
// caller alone.
func (h *watchHub) message(t *topic, name string, head fsm.Head, index uint64, stream grpc.ServerStream) (*grpc.PreparedMsg, error) {
	h.mu.RLock()
	msg, current := t.msg, t.head == head && t.index == index
	h.mu.RUnlock()
	if msg != nil && current {
		return msg, nil
	}
	encode := func() (*grpc.PreparedMsg, error) {
		msg := new(grpc.PreparedMsg)
		err := msg.Encode(stream, &coordinatorv1.WatchMasterResponse{Name: name, Address: head.Address, Epoch: head.Epoch, Index: index})
		return msg, err
	}
	if !current {
		return encode()
	}
	// Encoded under the write lock: the streams woken by a change all ask
	// at once, and only the first must encode (about a microsecond).
	h.mu.Lock()
	defer h.mu.Unlock()
	if t.head != head || t.index != index {
		return encode()
	}
	if t.msg == nil {
		var err error
		if t.msg, err = encode(); err != nil {
			t.msg = nil
			return nil, err
		}
	}
	return t.msg, nil
}

// eventsChanged returns a channel closed when the hub next sees new events.
func (h *watchHub) eventsChanged() <-chan struct{} {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.events
}

// startWatchHub starts the hub's goroutine; it stops with the node.
func (s *Server) startWatchHub() {
	s.watch = newWatchHub(s.fsm)
	s.watch.senders.start(s.ctx, &s.wg)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.watch.run(s.ctx)
	}()
}

// streamDeadline is when a new stream must end: MaxStreamAge plus up to a
// tenth more, so that streams opened together do not all reconnect at once.
func (s *Server) streamDeadline() *time.Timer {
	age := s.cfg.MaxStreamAge
	return time.NewTimer(age + rand.N(age/10+1))
}

// afterSeqHeader is the WatchEvents response header that carries the
// sequence number the stream's live events start after.
const afterSeqHeader = "raftinel-after-seq"

var (
	errStreamAge    = status.Error(codes.Unavailable, "stream reached this node's maximum stream age; reconnect (to any node) to go on")
	errShuttingDown = status.Error(codes.Unavailable, "node is shutting down; reconnect to another node")
)

// waitStream blocks until changed is closed (nil error) or the stream must
// end: client gone, node stopping or stream too old.
func (s *Server) waitStream(ctx context.Context, changed <-chan struct{}, age *time.Timer) error {
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.ctx.Done():
		return errShuttingDown
	case <-age.C:
		return errStreamAge
	}
}

// waitIndexForStream waits until the FSM has applied index, as long as the
// stream may live.
func (s *Server) waitIndexForStream(ctx context.Context, index uint64, age *time.Timer) error {
	for {
		changed, applied := s.fsm.Changed()
		if applied >= index {
			return nil
		}
		if err := s.waitStream(ctx, changed, age); err != nil {
			return err
		}
	}
}

func (a *api) WatchMaster(req *coordinatorv1.WatchMasterRequest, stream coordinatorv1.CoordinatorService_WatchMasterServer) error {
	name := req.GetName()
	if err := fsm.ValidateName("master", name); err != nil {
		return toStatus(err)
	}
	s := a.s
	s.metrics.watchMaster.Add(1)
	defer s.metrics.watchMaster.Add(-1)
	age := s.streamDeadline()
	defer age.Stop()
	if err := s.waitIndexForStream(stream.Context(), req.GetConsistency().GetMinIndex(), age); err != nil {
		return err
	}
	// A node cut off from the leader for too long ends the stream (now, or
	// when that happens) so the client resumes on another node. The channel
	// is taken after the check: the check itself may find contact again and
	// replace the closed channel of the time before, which would otherwise
	// end a healthy stream at once.
	if err := s.checkFresh(); err != nil {
		return err
	}
	lost := s.staleness.lostCh()
	t := s.watch.topic(name)
	if t == nil {
		return toStatus(fsm.UnknownMaster(name))
	}
	// The updates are sent by the hub's senders; this goroutine only waits
	// for the stream to end, on a small stack.
	w := &masterWatch{stream: stream, name: name, t: t, resume: req.GetResumeFromEpoch(), first: true, end: make(chan error, 1)}
	s.watch.add(w)
	defer s.watch.drop(w)
	select {
	case err := <-w.end:
		return err
	case <-stream.Context().Done():
		return status.FromContextError(stream.Context().Err()).Err()
	case <-s.ctx.Done():
		return errShuttingDown
	case <-age.C:
		return errStreamAge
	case <-lost:
		if err := s.checkFresh(); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "this node lost contact with the Raft leader for a moment; reconnect (to any node) to go on")
	}
}

func (a *api) WatchEvents(req *coordinatorv1.WatchEventsRequest, stream coordinatorv1.CoordinatorService_WatchEventsServer) error {
	master := req.GetMaster()
	if master != "" {
		if err := fsm.ValidateName("master", master); err != nil {
			return toStatus(err)
		}
	}
	s := a.s
	s.metrics.watchEvents.Add(1)
	defer s.metrics.watchEvents.Add(-1)
	age := s.streamDeadline()
	defer age.Stop()
	after := s.fsm.LastEventSeq()
	var history []*fsmv1.Event
	switch {
	case req.GetReplay() && req.GetAfterSeq() > 0:
		return status.Error(codes.InvalidArgument, "replay and after_seq exclude each other: replay starts from the stored history, after_seq resumes a stream")
	case req.GetReplay():
		history, after = s.fsm.History(master)
	case req.GetAfterSeq() > 0:
		after = req.GetAfterSeq()
	}
	// The header tells the client that the starting point is fixed, and
	// which it is: every event after it will be sent.
	if err := stream.SendHeader(metadata.Pairs(afterSeqHeader, strconv.FormatUint(after, 10))); err != nil {
		return err
	}
	for _, e := range history {
		if err := stream.Send(&coordinatorv1.WatchEventsResponse{Event: publicEvent(e)}); err != nil {
			return err
		}
	}
	// This node's own events (+tilt, -tilt): node-wide, so every stream
	// gets them whatever master it follows, with sequence number 0.
	local, unsubscribe := s.local.subscribe()
	defer unsubscribe()
	for {
		changed := s.watch.eventsChanged()
		events, missed := s.fsm.EventsSince(after)
		if missed {
			return status.Errorf(codes.Aborted, "events after seq %d are no longer held by this node (the stream fell behind, or a snapshot was installed); reconnect, with replay for the stored history", after)
		}
		for _, e := range events {
			after = e.GetSeq()
			if master != "" && e.GetMaster() != master {
				continue
			}
			if err := stream.Send(&coordinatorv1.WatchEventsResponse{Event: publicEvent(e)}); err != nil {
				return err
			}
		}
		for {
			e, err := s.waitStreamOrLocal(stream.Context(), changed, local, age)
			if err != nil {
				return err
			}
			if e == nil {
				break
			}
			if err := stream.Send(&coordinatorv1.WatchEventsResponse{Event: publicEvent(e)}); err != nil {
				return err
			}
		}
	}
}

// waitStreamOrLocal is waitStream that also returns a local event as soon
// as one arrives (nil when changed was closed instead).
func (s *Server) waitStreamOrLocal(ctx context.Context, changed <-chan struct{}, local <-chan *fsmv1.Event, age *time.Timer) (*fsmv1.Event, error) {
	select {
	case e := <-local:
		return e, nil
	default:
	}
	select {
	case e := <-local:
		return e, nil
	case <-changed:
		return nil, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case <-s.ctx.Done():
		return nil, errShuttingDown
	case <-age.C:
		return nil, errStreamAge
	}
}

// masterWatch is one WatchMaster stream. Its handler goroutine only waits
// for the end; the hub's sender goroutines send its updates, so that the
// deep send path grows a few stacks rather than one per stream, and a
// change wakes those few instead of every stream's goroutine.
type masterWatch struct {
	stream grpc.ServerStream
	name   string
	t      *topic
	resume uint64
	end    chan error // the stream's end, from a sender (buffered)

	queued atomic.Bool // in the senders' queue

	// mu is held while sending, so the handler returns only once no send
	// is in flight on its stream (grpc forbids sends after it returns).
	mu     sync.Mutex
	closed bool
	first  bool
	sent   fsm.Head
}

// add registers w with its topic and queues its first update, the current
// head; a topic removed meanwhile ends w with NotFound.
func (h *watchHub) add(w *masterWatch) {
	h.mu.Lock()
	if w.t.watchers != nil {
		w.t.watchers[w] = struct{}{}
	}
	h.mu.Unlock()
	h.senders.enqueue(w)
}

// drop unregisters w once its handler returns, waiting for a send in
// flight.
func (h *watchHub) drop(w *masterWatch) {
	// A send blocks only on a client that left a whole flow-control window
	// unread; the stream's end (after this returns) fails it, so the wait
	// for it is bounded.
	closed := make(chan struct{})
	go func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(time.Second):
	}
	h.mu.Lock()
	delete(w.t.watchers, w)
	h.mu.Unlock()
}

// send brings one stream up to its topic's head: the current head at
// first, then every new one, never one older than the client's resume
// epoch. Heads only move forward, and a stream is sent to by one sender at
// a time, so the epochs a client sees never go back; one that fell behind
// gets the newest head.
func (h *watchHub) send(w *masterWatch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	head, index, removed, _ := h.read(w.t)
	var err error
	switch {
	case removed:
		err = toStatus(&fsm.Error{Kind: fsm.NotFound, Reason: fsm.ReasonUnknownMaster, Msg: fmt.Sprintf("master %q is no longer monitored", w.name)})
	case head.Epoch >= w.resume && (w.first || head != w.sent):
		var msg *grpc.PreparedMsg
		if msg, err = h.message(w.t, w.name, head, index, w.stream); err == nil {
			err = w.stream.SendMsg(msg)
		}
		if err == nil {
			w.sent, w.first = head, false
		}
	}
	if err != nil {
		w.closed = true
		w.end <- err
	}
}

// watchSenders is a few goroutines that send WatchMaster updates from one
// queue. A stream is queued at most once at a time; a change while it is
// queued is picked up when it is sent, as it sends the newest head. A send
// blocks only when its client has left a whole flow-control window
// (64 KiB, about 1,500 updates) unread, which holds up that sender alone.
type watchSenders struct {
	h     *watchHub
	mu    sync.Mutex
	queue []*masterWatch
	ready chan struct{} // one token per idle sender to wake
}

// watchSenderCount is how many goroutines send updates.
var watchSenderCount = max(4, 2*runtime.GOMAXPROCS(0))

func newWatchSenders(h *watchHub) *watchSenders {
	return &watchSenders{h: h, ready: make(chan struct{}, watchSenderCount)}
}

// start runs the senders until ctx ends.
func (ws *watchSenders) start(ctx context.Context, wg *sync.WaitGroup) {
	for range watchSenderCount {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws.run(ctx)
		}()
	}
}

func (ws *watchSenders) enqueue(ws2 ...*masterWatch) {
	n := 0
	ws.mu.Lock()
	for _, w := range ws2 {
		if w.queued.CompareAndSwap(false, true) {
			ws.queue = append(ws.queue, w)
			n++
		}
	}
	ws.mu.Unlock()
	for range min(n, watchSenderCount) {
		select {
		case ws.ready <- struct{}{}:
		default:
		}
	}
}

// run sends until ctx ends.
func (ws *watchSenders) run(ctx context.Context) {
	for {
		select {
		case <-ws.ready:
		case <-ctx.Done():
			return
		}
		for {
			ws.mu.Lock()
			if len(ws.queue) == 0 {
				ws.queue = nil
				ws.mu.Unlock()
				break
			}
			w := ws.queue[len(ws.queue)-1]
			ws.queue[len(ws.queue)-1] = nil
			ws.queue = ws.queue[:len(ws.queue)-1]
			ws.mu.Unlock()
			w.queued.Store(false)
			ws.h.send(w)
		}
	}
}
