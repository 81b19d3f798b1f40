package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftinel/raftinel/client"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const listKey = "bench:log"

// result is what one run measured.
type result struct {
	announce time.Duration // fault -> first +switch-master heard
	commit   time.Duration // Raftinel: fault -> the leader's stamp on the Promoted entry
	outage   time.Duration // fault -> first acknowledged write sent after it
	lost     int           // acknowledged writes missing on the new master
	acked    int
}

func (r result) String() string {
	return fmt.Sprintf("promoted commit %v, announce %v, outage %v, lost %d of %d acknowledged", r.commit.Round(time.Millisecond),
		r.announce.Round(time.Millisecond), r.outage.Round(time.Millisecond), r.lost, r.acked)
}

// clientTimeout is the writer's dial, read and write timeout, the same for
// both systems. It bounds how long a write to a frozen master hangs. The
// other options are go-redis's defaults; note that its pool retries a
// failed dial 5 times, 100 ms apart, and after PoolSize failed dials in a
// row only probes once a second, so after a SIGKILL the outage a go-redis
// application sees is the announcement plus up to 400 ms.
const clientTimeout = 250 * time.Millisecond

func runOnce(ctx context.Context, o *options, sys, fault string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.runTimeout)
	defer cancel()
	topo, err := startTopology(ctx, o, sys)
	if err != nil {
		return result{}, err
	}
	defer topo.close()

	switched, err := listenSwitch(ctx, topo.sentinelAddrs)
	if err != nil {
		return result{}, err
	}
	rdb, closeWriter, err := newWriterClient(ctx, sys, topo)
	if err != nil {
		return result{}, err
	}
	defer closeWriter()
	w := &writer{client: rdb}
	writeCtx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	w.start(writeCtx)
	if err := poll(ctx, 10*time.Second, func() error {
		if w.ackedCount() < 100 {
			return errors.New("the writer has not written 100 values yet")
		}
		return nil
	}); err != nil {
		return result{}, err
	}

	// A random delay puts the fault anywhere in the probes' period, so
	// that the runs do not all hit one phase of it.
	select {
	case <-time.After(time.Duration(rand.Int64N(int64(time.Second)))):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	sig := syscall.SIGKILL
	if fault == "stop" {
		sig = syscall.SIGSTOP
	}
	faultAt := time.Now()
	if err := topo.redis[0].signal(sig); err != nil {
		return result{}, fmt.Errorf("signal the master: %w", err)
	}

	var sw switchEvent
	select {
	case sw = <-switched:
	case <-ctx.Done():
		return result{}, fmt.Errorf("no +switch-master after %v", time.Since(faultAt).Round(time.Millisecond))
	}
	var outage time.Duration
	if err := poll(ctx, o.runTimeout, func() error {
		d, ok := w.firstAckAfter(faultAt)
		if !ok {
			return errors.New("no write acknowledged since the fault")
		}
		outage = d
		return nil
	}); err != nil {
		return result{}, err
	}
	// Keep writing a while on the new master before counting.
	select {
	case <-time.After(o.keepWriting):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	stopWriting()
	w.wait()

	lost, acked, err := w.missingOn(ctx, sw.newAddr)
	if err != nil {
		return result{}, err
	}
	r := result{announce: sw.at.Sub(faultAt), outage: outage, lost: lost, acked: acked}
	if len(topo.grpcAddrs) > 0 {
		at, err := promotedAt(ctx, topo.grpcAddrs[0])
		if err != nil {
			return result{}, err
		}
		r.commit = at.Sub(faultAt)
	}
	return r, nil
}

// promotedAt is when the leader stamped the entry that promoted the new
// master: the FSM records +switch-master with the Promoted command's
// proposed_at. Leader and bench share this machine's clock.
func promotedAt(ctx context.Context, grpcAddr string) (time.Time, error) {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close()
	resp, err := coordinatorv1.NewCoordinatorServiceClient(conn).GetMasterDetail(ctx, &coordinatorv1.GetMasterDetailRequest{Name: masterName})
	if err != nil {
		return time.Time{}, fmt.Errorf("read the journal's events: %w", err)
	}
	for _, e := range resp.GetDetail().GetEvents() {
		if e.GetType() == "+switch-master" {
			return e.GetAt().AsTime(), nil
		}
	}
	return time.Time{}, errors.New("no +switch-master event in the master's history")
}

type switchEvent struct {
	at      time.Time
	newAddr string
}

// listenSwitch subscribes to +switch-master on every endpoint and delivers
// the first one heard. It returns once every subscription is confirmed, so
// no announcement can be missed.
func listenSwitch(ctx context.Context, addrs []string) (<-chan switchEvent, error) {
	out := make(chan switchEvent, len(addrs))
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		sub := c.Subscribe(ctx, "+switch-master")
		if _, err := sub.Receive(ctx); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("subscribe on %s: %w", addr, err)
		}
		go func() {
			defer c.Close()
			defer sub.Close()
			ch := sub.Channel()
			select {
			case msg := <-ch:
				// <name> <oldip> <oldport> <newip> <newport>
				if f := strings.Fields(msg.Payload); len(f) == 5 {
					out <- switchEvent{at: time.Now(), newAddr: net.JoinHostPort(f[3], f[4])}
				}
			case <-ctx.Done():
			}
		}()
	}
	return out, nil
}

// newWriterClient is the application's Redis client. For raftinel and
// sentinel it is go-redis's FailoverClient against the Sentinel endpoints,
// the same options for both; for raftinel-watch it is package client's
// go-redis helper following the master over gRPC WatchMaster. close
// releases everything the client holds.
func newWriterClient(ctx context.Context, sys string, topo *topology) (rdb *redis.Client, closeAll func(), err error) {
	switch sys {
	case systemRaftinel, systemSentinel:
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: masterName, SentinelAddrs: topo.sentinelAddrs,
			DialTimeout: clientTimeout, ReadTimeout: clientTimeout, WriteTimeout: clientTimeout,
			MaxRetries: -1,
		})
		return rdb, func() { _ = rdb.Close() }, nil
	case systemWatch:
		c, err := client.New(ctx, topo.grpcAddrs...)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to the cluster: %w", err)
		}
		w := c.WatchMaster(ctx, masterName)
		rdb = client.NewRedisClient(w, &redis.Options{
			DialTimeout: clientTimeout, ReadTimeout: clientTimeout, WriteTimeout: clientTimeout,
			MaxRetries: -1,
		})
		return rdb, func() { _ = rdb.Close(); w.Close(); c.Close() }, nil
	}
	return nil, nil, fmt.Errorf("no writer for system %q", sys)
}

// writer appends 1, 2, 3... to a list, one at a time, as fast as it can,
// recording when each acknowledged write was sent and acknowledged.
type writer struct {
	client *redis.Client
	mu     sync.Mutex
	acks   []ack
	done   sync.WaitGroup
}

type ack struct {
	value          int
	sent, received time.Time
}

// start runs the writer until ctx ends; wait returns after it stopped.
func (w *writer) start(ctx context.Context) {
	w.done.Add(1)
	go w.run(ctx)
}

func (w *writer) run(ctx context.Context) {
	defer w.done.Done()
	for i := 1; ctx.Err() == nil; i++ {
		sent := time.Now()
		err := w.client.RPush(ctx, listKey, i).Err()
		if err != nil {
			// The master is gone or the client is re-resolving: try the
			// next value after a short breath instead of spinning.
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, ack{value: i, sent: sent, received: time.Now()})
		w.mu.Unlock()
	}
}

func (w *writer) wait() { w.done.Wait() }

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// firstAckAfter is the outage: the first write sent after the fault and
// acknowledged. A write sent after SIGKILL or SIGSTOP cannot be answered by
// the old master, so its answer came from the new one.
func (w *writer) firstAckAfter(fault time.Time) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.acks {
		if a.sent.After(fault) {
			return a.received.Sub(fault), true
		}
	}
	return 0, false
}

// missingOn counts acknowledged values that the new master does not hold.
func (w *writer) missingOn(ctx context.Context, addr string) (lost, acked int, err error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	vals, err := c.LRange(ctx, listKey, 0, -1).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("read the list on the new master %s: %w", addr, err)
	}
	have := make(map[int]bool, len(vals))
	for _, v := range vals {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, 0, fmt.Errorf("unexpected list value %q", v)
		}
		have[n] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.acks {
		if !have[a.value] {
			lost++
		}
	}
	return lost, len(w.acks), nil
}
