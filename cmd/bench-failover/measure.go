package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/raftinel/raftinel/internal/benchproc"
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

// result is what one run measured. announce and end count from the fault
// (kill, stop), or for the leader-crash faults from the crashing leader's
// exit, and then only what the surviving nodes published.
type result struct {
	// sdown: from the fault (for the leader-crash faults too: the
	// master's SIGKILL) to the first +sdown of the master heard on any
	// endpoint, when sdownHeard.
	sdown      time.Duration
	sdownHeard bool
	tilt       bool          // a +tilt was heard on an endpoint during the run
	announce   time.Duration // -> first +switch-master heard
	end        time.Duration // -> first +failover-end heard (when ended)
	ended      bool          // a +failover-end was heard (awaited except for stop, debug-sleep)
	// endTimedOut: +failover-end-for-timeout was heard too: the failover
	// ended after failover-timeout without every replica re-pointed.
	endTimedOut bool
	commit      time.Duration // Raftinel: fault -> the leader's stamp on the Promoted entry
	outage      time.Duration // fault -> first acknowledged write sent after it
	lost        int           // acknowledged writes missing on the new master
	acked       int

	// restart-300ms only; sdown above, from the SIGKILL, when heard.
	restarted    time.Duration // SIGKILL -> the new process started
	back         time.Duration // SIGKILL -> the restarted master's first PONG
	odownHeard   bool          // a +odown of the master was heard
	switchHeard  bool          // a +switch-master was heard
	acknowledged bool          // a write sent after the SIGKILL was acknowledged (outage is set)

	// Leader-crash faults only.
	// Switchover only: the longest time between two acknowledged writes
	// from the request on, when it began (from the request), and for
	// Raftinel how the handover was made (FailoverOutcome.handover).
	switchover bool
	gap, gapAt time.Duration
	switchGap  time.Duration // the gap that spans the first +switch-master
	handover   string

	crashed string        // the decider that exited
	exited  time.Duration // master's SIGKILL -> the crashing leader's exit
	elected time.Duration // Raftinel: exit -> a survivor reports itself Raft leader
}

func (r result) String() string {
	s := r.measures()
	if r.tilt {
		s += "; +tilt heard"
	}
	return s
}

func (r result) measures() string {
	rd := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	if r.restarted != 0 {
		outage := "no write acknowledged since the SIGKILL"
		if r.acknowledged {
			outage = "outage " + rd(r.outage).String()
		}
		return fmt.Sprintf("restarted %v after the SIGKILL, first PONG %v; first +sdown %s, +odown %s, +switch-master %s; %s, lost %d of %d acknowledged",
			rd(r.restarted), rd(r.back), r.sdownString(), yesNo(r.odownHeard), yesNo(r.switchHeard), outage, r.lost, r.acked)
	}
	if r.switchover {
		s := fmt.Sprintf("longest gap between acknowledged writes %v (from %v after the request), gap across the switch %v, announce %v, failover-end %v, lost %d of %d acknowledged",
			rd(r.gap), rd(r.gapAt), rd(r.switchGap), rd(r.announce), rd(r.end), r.lost, r.acked)
		if r.handover != "" {
			s += ", handover " + r.handover
		}
		return s
	}
	if r.crashed != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "first +sdown %s; %s exited %v after the master's SIGKILL; from its exit: ", r.sdownString(), r.crashed, rd(r.exited))
		if r.elected != 0 {
			fmt.Fprintf(&b, "new Raft leader %v, ", rd(r.elected))
		}
		fmt.Fprintf(&b, "announce %v, failover-end %v%s; from the SIGKILL: ", rd(r.announce), rd(r.end), forTimeout(r))
		if r.commit != 0 {
			fmt.Fprintf(&b, "promoted commit %v, ", rd(r.commit))
		}
		fmt.Fprintf(&b, "outage %v; lost %d of %d acknowledged", rd(r.outage), r.lost, r.acked)
		return b.String()
	}
	s := fmt.Sprintf("first +sdown %s, promoted commit %v, announce %v, outage %v, lost %d of %d acknowledged", r.sdownString(), rd(r.commit),
		rd(r.announce), rd(r.outage), r.lost, r.acked)
	if r.ended {
		s += fmt.Sprintf(", failover-end %v%s", rd(r.end), forTimeout(r))
	}
	return s
}

func (r result) sdownString() string {
	if !r.sdownHeard {
		return "none heard"
	}
	return r.sdown.Round(time.Millisecond).String()
}

func yesNo(heard bool) string {
	if heard {
		return "heard"
	}
	return "not heard"
}

func forTimeout(r result) string {
	if r.endTimedOut {
		return " (for timeout)"
	}
	return ""
}

// clientTimeout is the writer's dial, read and write timeout, the same for
// both systems. It bounds how long a write to a frozen master hangs. The
// other options are go-redis's defaults; note that its pool retries a
// failed dial 5 times, 100 ms apart, and after PoolSize failed dials in a
// row only probes once a second, so after a SIGKILL the outage a go-redis
// application sees is the announcement plus up to 400 ms.
const clientTimeout = 250 * time.Millisecond

func runOnce(ctx context.Context, o *options, sys, fault string) (result, error) {
	runTimeout := o.runTimeoutFor(fault)
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	topo, err := startTopology(ctx, o, sys, fault)
	if err != nil {
		return result{}, setupError{err}
	}
	defer topo.close()

	ev, err := listenEvents(ctx, topo.sentinelAddrs)
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
	if err := benchproc.Poll(ctx, 10*time.Second, func() error {
		if w.ackedCount() < 100 {
			return errors.New("the writer has not written 100 values yet")
		}
		return nil
	}); err != nil {
		return result{}, err
	}

	if fault == faultSwitchover {
		return runSwitchover(ctx, o, sys, topo, ev, w, stopWriting)
	}

	var frz *freezer
	if fault == faultDebugSleep {
		if frz, err = newFreezer(ctx, topo.redisAddrs[0]); err != nil {
			return result{}, err
		}
		defer frz.close()
	}

	// A random delay puts the fault anywhere in the probes' period, so
	// that the runs do not all hit one phase of it.
	select {
	case <-time.After(time.Duration(rand.Int64N(int64(time.Second)))):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	faultAt := time.Now()
	// Acknowledgements received before ackAfter are the old master's.
	ackAfter := faultAt
	switch fault {
	case faultDebugSleep:
		if err := frz.freeze(o.debugSleep); err != nil {
			return result{}, fmt.Errorf("DEBUG SLEEP the master: %w", err)
		}
		// A signal stops the master at once; DEBUG SLEEP only when the
		// master reads it, and a write the writer sent a few
		// microseconds after faultAt can be answered first. No failover
		// can answer a write within down-after/2 of the fault, so an
		// acknowledgement that early is the old master's.
		ackAfter = faultAt.Add(o.downAfter / 2)
	default:
		sig := syscall.SIGKILL
		if fault == faultStop {
			sig = syscall.SIGSTOP
		}
		if err := topo.redis[0].Signal(sig); err != nil {
			return result{}, fmt.Errorf("signal the master: %w", err)
		}
	}
	if fault == faultRestart {
		return runRestart(ctx, o, topo, ev, w, stopWriting, faultAt)
	}

	// from is when announce and end count from; counts says whose events
	// count: every endpoint, or after a leader crash the survivors'.
	var r result
	from, counts, crashed := faultAt, func(int) bool { return true }, -1
	var newLeader <-chan leaderResult
	if isLeaderCrash(fault) {
		c, err := waitCrash(ctx, topo, faultAt)
		if err != nil {
			return result{}, err
		}
		crashed, from = c.index, c.at
		counts = func(i int) bool { return i != crashed }
		r.crashed, r.exited = topo.deciders[crashed].Name, c.at.Sub(faultAt)
		var survivors []string
		for i, addr := range topo.sentinelAddrs {
			if i != crashed {
				survivors = append(survivors, addr)
			}
		}
		if sys == systemSentinel {
			// Disarm the survivors, or the one elected for the retry would
			// crash too and leave a single sentinel, short of the quorum.
			// One that voted for the crashed leader cannot try again for
			// 2 x failover-timeout; this takes milliseconds. The
			// coordinators need nothing: a new Raft leader resumes the
			// journal instead of committing its start (or the promotion)
			// again.
			if err := topo.setSentinelCrash(ctx, survivors, ""); err != nil {
				return result{}, err
			}
		} else {
			var grpcSurvivors []string
			for i, addr := range topo.grpcAddrs {
				if i != crashed {
					grpcSurvivors = append(grpcSurvivors, addr)
				}
			}
			newLeader = watchNewLeader(ctx, grpcSurvivors)
		}
	}
	// A decider other than the crashed leader must not exit.
	alive := func() error {
		for i, p := range topo.deciders {
			if i != crashed && p.Exited() {
				return fmt.Errorf("%s exited with status %d: %s", p.Name, p.ExitCode, p.Tail())
			}
		}
		return nil
	}

	if err := ev.wait(ctx, chanSwitch, counts, alive); err != nil {
		return result{}, fmt.Errorf("no +switch-master after %v: %w", time.Since(faultAt).Round(time.Millisecond), err)
	}
	var outage time.Duration
	if err := benchproc.Poll(ctx, runTimeout, func() error {
		d, ok := w.firstAckAfter(faultAt, ackAfter)
		if !ok {
			return errors.New("no write acknowledged since the fault")
		}
		outage = d
		return nil
	}); err != nil {
		return result{}, err
	}
	// +failover-end is the kill fault's reference for the leader-crash
	// faults; the freezes (stop, debug-sleep) do not wait for it.
	if fault != faultStop && fault != faultDebugSleep {
		if err := ev.wait(ctx, chanEnd, counts, alive); err != nil {
			return result{}, fmt.Errorf("no +failover-end after %v: %w", time.Since(faultAt).Round(time.Millisecond), err)
		}
	}
	sw, lost, acked, err := countLost(ctx, o, ev, w, stopWriting, counts)
	if err != nil {
		return result{}, err
	}
	r.announce, r.outage, r.lost, r.acked = sw.at.Sub(from), outage, lost, acked
	if e, ok := ev.first(chanEnd, counts); ok {
		r.end, r.ended = e.at.Sub(from), true
		_, r.endTimedOut = ev.first(chanEndTimeout, counts)
	}
	// Any endpoint's +sdown counts, the crashed leader's too: it came
	// before the crash.
	if sd, ok := ev.first(chanSdown, func(int) bool { return true }); ok {
		r.sdown, r.sdownHeard = sd.at.Sub(faultAt), true
	}
	_, r.tilt = ev.first(chanTilt, func(int) bool { return true })
	for i, addr := range topo.grpcAddrs {
		if i == crashed {
			continue
		}
		at, err := promotedAt(ctx, addr)
		if err != nil {
			return result{}, err
		}
		r.commit = at.Sub(faultAt)
		break
	}
	if newLeader != nil {
		select {
		case l := <-newLeader:
			if l.err != nil {
				return result{}, l.err
			}
			r.elected = l.at.Sub(from)
		case <-ctx.Done():
			return result{}, fmt.Errorf("no new Raft leader: %w", ctx.Err())
		}
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

// The channels the bench times.
const (
	chanSdown      = "+sdown" // of the master only, see timedMessage
	chanOdown      = "+odown"
	chanSwitch     = "+switch-master"
	chanEnd        = "+failover-end"
	chanEndTimeout = "+failover-end-for-timeout" // just before a +failover-end that gave up waiting for replicas
	// A decider whose timer ran over 2 s late (its process stalled on a
	// loaded machine) or whose clock jumped stops acting for a while
	// (Sentinel: 30 s): such a run tells of the machine more than of the
	// system. Only redis-sentinel publishes it today.
	chanTilt = "+tilt"
)

var timedChannels = []string{chanSdown, chanOdown, chanSwitch, chanEnd, chanEndTimeout, chanTilt}

// timedMessage reports whether a message counts: +sdown and +odown only
// when they are about the master ("master <name> <ip> <port>..."), not
// a replica (payload "slave ..."), such as the old master once it is
// re-pointed.
func timedMessage(channel, payload string) bool {
	switch channel {
	case chanSdown, chanOdown:
		return strings.HasPrefix(payload, "master "+masterName+" ")
	}
	return true
}

// heard is one announcement: when the bench received it, and its payload.
// countLost keeps writing o.keepWriting on the new master, stops the
// writer, and counts the acknowledged writes the master the first
// +switch-master named lacks.
func countLost(ctx context.Context, o *options, ev *events, w *writer, stopWriting func(), counts func(int) bool) (sw heard, lost, acked int, err error) {
	select {
	case <-time.After(o.keepWriting):
	case <-ctx.Done():
		return heard{}, 0, 0, ctx.Err()
	}
	stopWriting()
	w.wait()
	sw, _ = ev.first(chanSwitch, counts)
	// <name> <oldip> <oldport> <newip> <newport>
	f := strings.Fields(sw.payload)
	if len(f) != 5 {
		return heard{}, 0, 0, fmt.Errorf("malformed +switch-master payload %q", sw.payload)
	}
	lost, acked, err = w.missingOn(ctx, net.JoinHostPort(f[3], f[4]))
	return sw, lost, acked, err
}

type heard struct {
	at      time.Time
	payload string
}

// events holds, for each Sentinel endpoint, the first message heard on
// each timed channel.
type events struct {
	mu         sync.Mutex
	byEndpoint []map[string]heard // by endpoint, then channel
	changed    chan struct{}      // closed and replaced at each new record
}

// listenEvents subscribes to the timed channels on every endpoint and
// records the first message of each. It returns once every subscription
// is confirmed, so no announcement can be missed. An endpoint's listener
// ends when it has heard every channel, or with ctx (the run's end).
func listenEvents(ctx context.Context, addrs []string) (*events, error) {
	e := &events{byEndpoint: make([]map[string]heard, len(addrs)), changed: make(chan struct{})}
	for i, addr := range addrs {
		e.byEndpoint[i] = map[string]heard{}
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		sub := c.Subscribe(ctx, timedChannels...)
		for range timedChannels {
			msg, err := sub.Receive(ctx)
			if _, ok := msg.(*redis.Subscription); err == nil && !ok {
				err = fmt.Errorf("got %T, want a subscription confirmation", msg)
			}
			if err != nil {
				_ = sub.Close()
				_ = c.Close()
				return nil, fmt.Errorf("subscribe on %s: %w", addr, err)
			}
		}
		go func() {
			defer c.Close()
			defer sub.Close()
			ch := sub.Channel()
			for !e.heardAll(i) {
				select {
				case msg, ok := <-ch:
					if !ok {
						return
					}
					if timedMessage(msg.Channel, msg.Payload) {
						e.record(i, msg.Channel, heard{at: time.Now(), payload: msg.Payload})
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return e, nil
}

func (e *events) record(endpoint int, channel string, h heard) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.byEndpoint[endpoint][channel]; ok {
		return
	}
	e.byEndpoint[endpoint][channel] = h
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *events) heardAll(endpoint int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.byEndpoint[endpoint]) == len(timedChannels)
}

// first is the earliest message on channel among the endpoints that count.
func (e *events) first(channel string, counts func(endpoint int) bool) (heard, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.firstLocked(channel, counts)
}

func (e *events) firstLocked(channel string, counts func(int) bool) (best heard, found bool) {
	for i, m := range e.byEndpoint {
		if h, ok := m[channel]; ok && counts(i) && (!found || h.at.Before(best.at)) {
			best, found = h, true
		}
	}
	return best, found
}

// wait returns when an endpoint that counts has published on channel,
// when check fails (checked every 50 ms), or when ctx ends.
func (e *events) wait(ctx context.Context, channel string, counts func(int) bool, check func() error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		e.mu.Lock()
		_, ok := e.firstLocked(channel, counts)
		changed := e.changed
		e.mu.Unlock()
		if ok {
			return nil
		}
		if err := check(); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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

// firstAckAfter is the outage: from the fault to the first write sent
// after it and acknowledged after received (the fault, but for DEBUG
// SLEEP later, see runOnce). A write sent after SIGKILL or SIGSTOP cannot
// be answered by the old master, so its answer came from the new one.
func (w *writer) firstAckAfter(fault, received time.Time) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.acks {
		if a.sent.After(fault) && !a.received.Before(received) {
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

// setupError is a run that failed before anything was measured: its
// topology did not come up (on a loaded machine a process can take longer
// than the bench waits). Such a run is tried again.
type setupError struct{ error }

func (e setupError) Unwrap() error { return e.error }
