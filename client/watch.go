package client

import (
	"context"
	"errors"
	"io"
	"sync"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Watcher follows one master through WatchMaster streams. When a stream
// ends (its node stopped, or the node's maximum stream age passed) it opens
// another, on the next node, resuming from the last epoch seen, so its
// readers see one sequence of rising epochs whatever happens underneath.
type Watcher struct {
	c      *Client
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	current Master
	known   bool
	changed chan struct{} // closed and replaced at every new master
	err     error
	node    string // gRPC address of the node streaming now
}

// WatchMaster starts following a master until ctx ends, Close is called or
// the master turns out not to be monitored (Err then says NotFound).
func (c *Client) WatchMaster(ctx context.Context, name string) *Watcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{c: c, name: name, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	go w.run(ctx)
	return w
}

// Close stops the watcher and waits for its goroutine.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

// Done is closed when the watcher has stopped; Err says why.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Err is why the watcher stopped: a NotFound status error for a master that
// is not monitored (or was removed), the context's error, or ErrClosed.
// It is nil while the watcher runs.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Current returns the newest master seen, and false before the first.
func (w *Watcher) Current() (Master, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current, w.known
}

// Node is the gRPC address of the node the watcher streams from now, or
// empty between two streams.
func (w *Watcher) Node() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.node
}

func (w *Watcher) setNode(addr string) {
	w.mu.Lock()
	w.node = addr
	w.mu.Unlock()
}

// Changed returns a channel closed at the next new master. Call it before
// Current, so that no change between the two is missed.
func (w *Watcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// Wait returns the current master, waiting for the first one if needed.
func (w *Watcher) Wait(ctx context.Context) (Master, error) {
	for {
		changed := w.Changed()
		if m, ok := w.Current(); ok {
			return m, nil
		}
		select {
		case <-changed:
		case <-w.done:
			if m, ok := w.Current(); ok {
				return m, nil
			}
			return Master{}, w.Err()
		case <-ctx.Done():
			return Master{}, ctx.Err()
		}
	}
}

// Updates returns a channel that receives the current master (once known)
// and then every newer one. A reader slower than the changes gets the
// newest, never an older one. It is closed when the watcher stops, after
// the last master the watcher saw. Each call returns a channel of its own;
// read it until it is closed.
func (w *Watcher) Updates() <-chan Master {
	out := make(chan Master, 1)
	go func() {
		defer close(out)
		var last Master
		sent := false
		fresh := func() (Master, bool) {
			m, ok := w.Current()
			return m, ok && (!sent || m != last)
		}
		for {
			changed := w.Changed()
			if m, ok := fresh(); ok {
				select {
				case out <- m:
					last, sent = m, true
					continue
				case <-w.done:
				}
			} else {
				select {
				case <-changed:
					continue
				case <-w.done:
				}
			}
			// Stopped: leave the newest master in the buffer, in place of
			// an older one the reader has not taken, without blocking.
			if m, ok := fresh(); ok {
				select {
				case out <- m:
				default:
					select {
					case <-out:
					default:
					}
					out <- m
				}
			}
			return
		}
	}()
	return out
}

// offer records a master from a stream unless it is older than the one
// already known.
func (w *Watcher) offer(m Master) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known && (m.Epoch < w.current.Epoch || (m.Epoch == w.current.Epoch && m.Address == w.current.Address)) {
		return
	}
	w.current, w.known = m, true
	close(w.changed)
	w.changed = make(chan struct{})
}

// request resumes from the last master seen: no older epoch, and no answer
// from a node that has not applied what that master was read from.
func (w *Watcher) request() *coordinatorv1.WatchMasterRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	req := &coordinatorv1.WatchMasterRequest{Name: w.name, ResumeFromEpoch: w.current.Epoch}
	if w.current.Index > 0 {
		req.Consistency = &coordinatorv1.ReadConsistency{MinIndex: w.current.Index}
	}
	return req
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	err := w.follow(ctx)
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

// follow opens stream after stream until one ends with an answer that is
// not "try again" or ctx ends.
func (w *Watcher) follow(ctx context.Context) error {
	b := w.c.newBackoff()
	last := ""
	for {
		for _, addr := range w.c.order(false) {
			delivered, err := w.stream(ctx, addr)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if delivered {
				b.reset()
			}
			if errors.Is(err, ErrClosed) || !retryable(err) {
				return err
			}
			last = failure(addr, err)
		}
		if b.wait(ctx) != nil {
			return gaveUp(ctx, last)
		}
	}
}

// stream reads one WatchMaster stream until it ends, and says whether it
// delivered anything. An end of stream without a status is a reconnect.
func (w *Watcher) stream(ctx context.Context, addr string) (bool, error) {
	cc, err := w.c.conn(addr)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := coordinatorv1.NewCoordinatorServiceClient(cc).WatchMaster(ctx, w.request())
	if err != nil {
		return false, err
	}
	defer w.setNode("")
	delivered := false
	for {
		u, err := s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "stream ended")
			}
			return delivered, err
		}
		if !delivered {
			w.setNode(addr)
			delivered = true
		}
		w.c.answered(addr)
		w.offer(Master{Name: u.GetName(), Address: u.GetAddress(), Epoch: u.GetEpoch(), Index: u.GetIndex()})
	}
}
