package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
)

// eventCollector keeps what one WatchEvents stream delivers.
type eventCollector struct {
	mu     sync.Mutex
	events []*coordinatorv1.Event
}

func collectEvents(t *testing.T, nd *inmemNode, master string) *eventCollector {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := nd.client.WatchEvents(ctx, &coordinatorv1.WatchEventsRequest{Master: master})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // the starting point is fixed
		t.Fatal(err)
	}
	c := &eventCollector{}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			c.mu.Lock()
			c.events = append(c.events, resp.GetEvent())
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *eventCollector) find(typ string) *coordinatorv1.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if e.GetType() == typ {
			return e
		}
	}
	return nil
}

func (c *eventCollector) all() []*coordinatorv1.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*coordinatorv1.Event(nil), c.events...)
}

// stall makes the node's next loop tick see a gap of more than the TILT
// trigger, as after a 3 s pause of the process.
func stall(nd *inmemNode) {
	mo := nd.srv.monitor
	mo.mu.Lock()
	mo.tilt.LastTick = mo.tilt.LastTick.Add(-3 * time.Second)
	mo.mu.Unlock()
}

// TILT is one node's state: the node in TILT publishes +tilt and -tilt,
// with Sentinel's payloads, on its own Sentinel endpoint and WatchEvents
// streams (even one that follows a single master), with its id and
// sequence number 0; they are not committed, so no other node publishes
// them and no history holds them.
func TestTiltEventsArePublishedByTheNodeInTilt(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.leader()
	c.registered()
	nd, other := c.nodes[0], c.nodes[1]
	ctx := ctxT(t, time.Minute)

	// TILT lasts tiltPeriod after the stall: read for longer than that.
	sc := redis.NewSentinelClient(&redis.Options{Addr: nd.srv.SentinelAddr(), DialTimeout: 2 * time.Second, ReadTimeout: 4 * tiltPeriod})
	t.Cleanup(func() { _ = sc.Close() })
	sub := sc.Subscribe(ctx, EventTiltOn, EventTiltOff)
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	filtered := collectEvents(t, nd, "mymaster")
	elsewhere := collectEvents(t, other, "")
	seqBefore := nd.srv.FSM().LastEventSeq()

	stall(nd)
	for _, want := range []struct{ channel, payload string }{{EventTiltOn, "#tilt mode entered"}, {EventTiltOff, "#tilt mode exited"}} {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want.channel, err)
		}
		if msg.Channel != want.channel || msg.Payload != want.payload {
			t.Fatalf("got %s %q, want %s %q", msg.Channel, msg.Payload, want.channel, want.payload)
		}
	}
	testwait.For(t, 10*time.Second, "+tilt and -tilt on the node's WatchEvents stream", func() error {
		for _, typ := range []string{EventTiltOn, EventTiltOff} {
			e := filtered.find(typ)
			if e == nil {
				return fmt.Errorf("no %s yet: %v", typ, filtered.all())
			}
			if e.GetNodeId() != nd.id || e.GetSeq() != 0 || e.GetMaster() != "" || e.GetAt() == nil {
				return fmt.Errorf("%s event %v", typ, e)
			}
		}
		return nil
	})
	for _, e := range elsewhere.all() {
		if e.GetType() == EventTiltOn || e.GetType() == EventTiltOff {
			if e.GetNodeId() == nd.id {
				t.Fatalf("%s's TILT event published by %s: %v", nd.id, other.id, e)
			}
		}
	}
	if got := nd.srv.FSM().LastEventSeq(); got != seqBefore {
		t.Fatalf("TILT events were committed: last seq %d, was %d", got, seqBefore)
	}
}
