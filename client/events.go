package client

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// afterSeqHeader is the server's WatchEvents header with the sequence
// number its live events start after.
const afterSeqHeader = "raftinel-after-seq"

// Event is one Sentinel-named event, with the payload Sentinel publishes.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Type is the Sentinel channel name, for example "+switch-master".
	Type    string `json:"type"`
	Payload string `json:"payload"`
	Master  string `json:"master"`
	Epoch   uint64 `json:"epoch"`
	// NodeID is the node whose opinion the event reports (+sdown, -sdown).
	NodeID string `json:"node_id,omitempty"`
	// Actor is who asked for the manual action that produced the event
	// ("token alice"), and ActorAddress from where; empty otherwise.
	Actor        string `json:"actor,omitempty"`
	ActorAddress string `json:"actor_address,omitempty"`
}

// EventsOptions select what WatchEvents delivers.
type EventsOptions struct {
	// Master keeps only this master's events; empty for all.
	Master string
	// Replay delivers the stored history (the latest events of each
	// master) before the live events.
	Replay bool
}

// WatchEvents calls fn with every event as the cluster applies it, in
// sequence order, until ctx ends or fn returns an error (which it
// returns). When a stream ends (a node stopped, or its maximum stream age
// passed) it resumes on the next node after the last sequence number, so
// no event is repeated or skipped; when no node still holds the events in
// between, it returns an Aborted status error.
func (c *Client) WatchEvents(ctx context.Context, opts EventsOptions, fn func(Event) error) error {
	r := &eventReader{c: c, opts: opts, fn: fn}
	b := c.newBackoff()
	last := ""
	for {
		for _, addr := range c.order(false) {
			delivered, err := r.stream(ctx, addr)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if r.fnErr != nil {
				return r.fnErr
			}
			if delivered {
				b.reset()
			}
			if errors.Is(err, ErrClosed) || !retryable(err) || status.Code(err) == codes.Aborted {
				return err
			}
			last = failure(addr, err)
		}
		if b.wait(ctx) != nil {
			return gaveUp(ctx, last)
		}
	}
}

// eventReader keeps the resume point across streams.
type eventReader struct {
	c     *Client
	opts  EventsOptions
	fn    func(Event) error
	fnErr error
	after uint64 // resume after this seq, once start is set
	start bool   // a stream told its starting point
}

func (r *eventReader) request() *coordinatorv1.WatchEventsRequest {
	req := &coordinatorv1.WatchEventsRequest{Master: r.opts.Master}
	switch {
	case r.start:
		req.AfterSeq = r.after
	case r.opts.Replay:
		req.Replay = true
	}
	return req
}

// stream reads one WatchEvents stream until it ends.
func (r *eventReader) stream(ctx context.Context, addr string) (bool, error) {
	cc, err := r.c.conn(addr)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := coordinatorv1.NewCoordinatorServiceClient(cc).WatchEvents(ctx, r.request())
	if err != nil {
		return false, err
	}
	md, err := s.Header()
	if err != nil {
		return false, err
	}
	if v := md.Get(afterSeqHeader); len(v) == 1 {
		if n, err := strconv.ParseUint(v[0], 10, 64); err == nil && (!r.start || n > r.after) {
			r.after, r.start = n, true
		}
	}
	delivered := false
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "stream ended")
		}
		if err != nil {
			return delivered, err
		}
		delivered = true
		r.c.answered(addr)
		e := resp.GetEvent()
		if r.start && e.GetSeq() > r.after {
			r.after = e.GetSeq()
		}
		if err := r.fn(Event{Seq: e.GetSeq(), Time: e.GetAt().AsTime(), Type: e.GetType(), Payload: e.GetPayload(),
			Master: e.GetMaster(), Epoch: e.GetEpoch(), NodeID: e.GetNodeId(), Actor: e.GetActor(), ActorAddress: e.GetActorAddress()}); err != nil {
			r.fnErr = err
			return delivered, err
		}
	}
}
