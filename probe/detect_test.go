package probe

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

// clockRun is one stretch of the SDOWN clock: FailingSince from set to
// cleared by a valid reply.
type clockRun struct{ from, to time.Time }

func (r clockRun) length() time.Duration { return r.to.Sub(r.from) }

// clockRecorder samples an instance's observation every millisecond or so
// and keeps every stretch of the SDOWN clock. A stretch that started and
// ended between two samples is a normal PING, far shorter than any limit
// checked here; an outage lasts hundreds of samples. Where a stretch's end
// is uncertain the later bound is kept, so lengths are never understated.
type clockRecorder struct {
	mu   sync.Mutex
	runs []clockRun
	cur  time.Time
	// errs lists the distinct PING errors the samples saw.
	errs []string
	stop chan struct{}
	done chan struct{}
}

func recordClock(w *Watcher, addr string) *clockRecorder {
	r := &clockRecorder{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
			if o, ok := w.Observation(addr); ok {
				r.sample(o)
			}
		}
	}()
	return r
}

func (r *clockRecorder) sample(o Observation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := o.LastPingErr; e != "" && (len(r.errs) == 0 || r.errs[len(r.errs)-1] != e) {
		r.errs = append(r.errs, e)
	}
	f := o.FailingSince
	if !r.cur.IsZero() && !f.Equal(r.cur) {
		// Cleared since the last sample: the reply that cleared it is
		// at or before the latest valid one.
		r.runs = append(r.runs, clockRun{r.cur, o.LastValidReply})
		r.cur = time.Time{}
	}
	if !f.IsZero() {
		r.cur = f
	}
}

// finish stops sampling and returns the stretches, with a stretch still
// running reported as running until now.
func (r *clockRecorder) finish() []clockRun {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	runs := r.runs
	if !r.cur.IsZero() {
		runs = append(runs, clockRun{r.cur, time.Now()})
	}
	return runs
}

// waitBack waits until the watcher has a valid reply from addr newer than
// after, and returns that observation.
func waitBack(t *testing.T, w *Watcher, addr string, after time.Time) Observation {
	t.Helper()
	return waitObs(t, w, addr, func(o Observation) error {
		if !o.LastValidReply.After(after) || !o.FailingSince.IsZero() {
			return errors.New("no valid reply since the instance came back")
		}
		return nil
	})
}

// TestWatcherShortOutageNeverReachesDownAfter: with down-after 1 s (and so
// the automatic period of 100 ms), an instance SIGKILLed and restarted on
// the same port a few hundred milliseconds later, or frozen for 300 ms,
// never has an SDOWN clock of down-after: the clock starts at the first
// failed contact after the fault, not at the last reply before it, and the
// instance is seen back at the next period, not after a dial backoff.
func TestWatcherShortOutageNeverReachesDownAfter(t *testing.T) {
	t.Parallel()
	const (
		downAfter = time.Second
		runs      = 5
		// maxOutage is the longest a kill and restart may take for the run
		// to count: the property holds for outages up to down-after minus a
		// period, and a loaded machine can take longer to start
		// redis-server, which is no fault of the probe.
		maxOutage = 600 * time.Millisecond
	)
	s := redistest.Start(t)
	cfg := fastConfig(t)
	cfg.PingPeriod = 0 // down-after/10
	w := newTestWatcher(t, cfg)
	target := Target{Addr: s.Addr(), DownAfter: downAfter}
	if period, _ := PingTiming(target, 0); period != 100*time.Millisecond {
		t.Fatalf("automatic period %v, want 100ms", period)
	}
	if err := w.SetTargets([]Target{target}); err != nil {
		t.Fatal(err)
	}
	waitObs(t, w, s.Addr(), healthy)

	faults := []struct {
		name  string
		fault func() (outage time.Duration)
	}{
		{"kill and restart", func() time.Duration {
			start := time.Now()
			s.Kill()
			time.Sleep(time.Until(start.Add(200 * time.Millisecond))) // the outage being tested
			s.Restart()
			return time.Since(start)
		}},
		{"freeze for 300ms", func() time.Duration {
			start := time.Now()
			s.Pause()
			time.Sleep(time.Until(start.Add(300 * time.Millisecond))) // the outage being tested
			s.Resume()
			return time.Since(start)
		}},
	}
	for _, f := range faults {
		counted := 0
		for attempt := 0; attempt < 2*runs && counted < runs; attempt++ {
			before := waitBack(t, w, s.Addr(), time.Time{})
			rec := recordClock(w, s.Addr())
			outage := f.fault()
			waitBack(t, w, s.Addr(), before.LastValidReply)
			clock := rec.finish()
			if outage > maxOutage {
				t.Logf("%s: run %d took %v, longer than %v on this machine; not counted", f.name, attempt, outage, maxOutage)
				continue
			}
			counted++
			var longest clockRun
			for _, r := range clock {
				if r.length() > longest.length() {
					longest = r
				}
			}
			t.Logf("%s: outage %v, longest SDOWN clock %v", f.name, outage.Round(time.Millisecond), longest.length().Round(time.Millisecond))
			if longest.length() >= downAfter {
				t.Fatalf("%s: the SDOWN clock ran %v (from %v to %v) for an outage of %v: down-after %v reached",
					f.name, longest.length(), longest.from, longest.to, outage, downAfter)
			}
			// The outage was seen: the clock ran for part of it, and it
			// started after the last valid reply before the fault.
			if longest.length() < outage/4 || !longest.from.After(before.LastValidReply) {
				t.Fatalf("%s: the clock stretch %v..%v does not match an outage of %v after the reply at %v",
					f.name, longest.from, longest.to, outage, before.LastValidReply)
			}
		}
		if counted < runs/2+1 {
			t.Fatalf("%s: only %d of the runs restarted redis-server within %v", f.name, counted, maxOutage)
		}
	}
}

// TestWatcherRefusedClockStartsAtFirstRefusal: the clock of an instance
// killed between two PINGs is the start of the first refused attempt,
// after the kill, not the last valid reply before it.
func TestWatcherRefusedClockStartsAtFirstRefusal(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	w := newTestWatcher(t, fastConfig(t))
	// A long period, so the kill falls between two PINGs.
	if err := w.SetTargets([]Target{{Addr: s.Addr(), PingPeriod: 2 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	first := waitObs(t, w, s.Addr(), healthy)
	// Kill right after a PING was answered.
	before := waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.LastValidReply.After(first.LastValidReply) || !o.FailingSince.IsZero() {
			return errors.New("waiting for the next PING")
		}
		return nil
	})
	killed := time.Now()
	s.Kill()
	down := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LinkUp || !strings.Contains(o.LastPingErr, "refused") {
			return errors.New("no refused attempt yet")
		}
		return nil
	})
	if !down.LastValidReply.Equal(before.LastValidReply) {
		t.Fatalf("a valid reply at %v after the kill at %v", down.LastValidReply, killed)
	}
	if f := down.FailingSince; f.Before(killed) || f.After(down.LastPingAt) {
		t.Fatalf("clock %v: want the start of the first refused attempt, after the kill at %v and by its end at %v (last valid reply %v)",
			f, killed, down.LastPingAt, before.LastValidReply)
	}
}

// TestWatcherSeesRecoveryAtNextAttempt: after many refused dials (more than
// a go-redis pool's size, after which go-redis would stop dialing for a
// second), the first attempt after the instance is back gets its reply.
func TestWatcherSeesRecoveryAtNextAttempt(t *testing.T) {
	t.Parallel()
	const period = 300 * time.Millisecond
	s := redistest.Start(t)
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: s.Addr(), PingPeriod: period}}); err != nil {
		t.Fatal(err)
	}
	waitObs(t, w, s.Addr(), healthy)
	s.Kill()
	// attempts tracks every outcome the poll sees; with polls at most
	// testwait.MaxInterval apart and attempts a period apart, none is
	// missed.
	var attempts []Observation
	track := func(o Observation) {
		if n := len(attempts); n == 0 || o.LastPingAt.After(attempts[n-1].LastPingAt) {
			attempts = append(attempts, o)
		}
	}
	waitObs(t, w, s.Addr(), func(o Observation) error {
		track(o)
		refused := 0
		for _, a := range attempts {
			if strings.Contains(a.LastPingErr, "refused") {
				refused++
			}
		}
		if refused < 2*DefaultPoolSize {
			return fmt.Errorf("%d refused attempts so far", refused)
		}
		return nil
	})
	s.Restart()
	ready := time.Now()
	attempts = nil
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LastPingAt.After(ready) {
			track(o)
		}
		if !o.LastValidReply.After(ready) {
			return errors.New("not seen back yet")
		}
		return nil
	})
	// The first attempt after the restart succeeds; one more is allowed
	// for an attempt refused just before the server listened but recorded
	// after Restart returned.
	failed := 0
	for _, a := range attempts {
		if a.LastPingErr != "" {
			failed++
		}
	}
	if failed > 1 {
		t.Fatalf("%d failed attempts after the instance was back: %+v", failed, attempts)
	}
}

// TestWatcherClientKillIsNoFailedContact: CLIENT KILL TYPE normal, which
// every failover step sends to the instances it reconfigures, closes the
// Watcher's connections; the next PING redials at once and no contact
// counts as failed.
func TestWatcherClientKillIsNoFailedContact(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	cfg := fastConfig(t)
	cfg.PingPeriod = 20 * time.Millisecond
	w := newTestWatcher(t, cfg)
	if err := w.SetTargets([]Target{{Addr: s.Addr(), DownAfter: time.Second}}); err != nil {
		t.Fatal(err)
	}
	before := waitObs(t, w, s.Addr(), healthy)
	ctx := testCtx(t)
	rec := recordClock(w, s.Addr())
	for i := range 10 {
		// Let the PING connection open again (INFO comes once an hour
		// here), then kill it.
		last := waitObs(t, w, s.Addr(), func(o Observation) error {
			if len(watcherConns(t, s)) == 0 || !o.LastValidReply.After(before.LastValidReply) {
				return errors.New("connections not open again yet")
			}
			return nil
		})
		before = last
		if err := s.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "normal").Err(); err != nil {
			t.Fatalf("CLIENT KILL %d: %v", i, err)
		}
		o := waitObs(t, w, s.Addr(), func(o Observation) error {
			if !o.LastPingAt.After(last.LastPingAt.Add(2 * cfg.PingPeriod)) {
				return errors.New("waiting for PINGs after the kill")
			}
			return nil
		})
		if o.LastPingErr != "" || !o.LinkUp || o.LastValidReply.Before(last.LastValidReply) {
			t.Fatalf("after CLIENT KILL %d: %+v", i, o)
		}
	}
	runs := rec.finish()
	if len(rec.errs) != 0 {
		t.Fatalf("PINGs failed around CLIENT KILL: %q", rec.errs)
	}
	for _, r := range runs {
		if r.length() > 500*time.Millisecond {
			t.Fatalf("an SDOWN clock of %v around CLIENT KILL", r.length())
		}
	}
}

// TestWatcherSeesAClosedConnectionAtOnce: an instance killed just after a
// PING was answered closes the Watcher's connection at once (its kernel
// does), and the next contact, refused, is made then, not a period later:
// the SDOWN clock starts at the failure.
func TestWatcherSeesAClosedConnectionAtOnce(t *testing.T) {
	t.Parallel()
	const period = 10 * time.Second
	s := redistest.Start(t)
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: s.Addr(), PingPeriod: period}}); err != nil {
		t.Fatal(err)
	}
	before := waitObs(t, w, s.Addr(), healthy)
	killed := time.Now()
	s.Kill()
	down := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LinkUp || !strings.Contains(o.LastPingErr, "refused") {
			return errors.New("no refused attempt yet")
		}
		return nil
	})
	if f := down.FailingSince; f.Before(killed) || f.Sub(killed) > period/2 {
		t.Fatalf("clock started %v after the kill (last valid reply %v before it): want the first contact after the closed connection, well within the %v period",
			f.Sub(killed), killed.Sub(before.LastValidReply), period)
	}
}

// TestWatcherEarlyContactsAreBounded: a server that closes every
// connection after answering makes the Watcher contact it early at most
// once per period, not in a loop.
func TestWatcherEarlyContactsAreBounded(t *testing.T) {
	t.Parallel()
	const period = 200 * time.Millisecond
	f := startFakeRedis(t, func(args []string) string {
		if strings.EqualFold(args[0], "PING") {
			return "+PONG\r\n" + hangUpAfter
		}
		return "-ERR not here\r\n"
	})
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: f.Addr(), PingPeriod: period}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pings := func() int {
		n := 0
		for _, c := range f.received() {
			if strings.EqualFold(c[0], "PING") {
				n++
			}
		}
		return n
	}
	testwait.For(t, 10*time.Second, "ten PINGs", func() error {
		if n := pings(); n < 10 {
			return fmt.Errorf("%d PINGs so far", n)
		}
		return nil
	})
	// At most two contacts per period (the scheduled one and one early),
	// with a period of slack at each end.
	elapsed := time.Since(start)
	if n, most := pings(), 2*int(elapsed/period)+4; n > most {
		t.Fatalf("%d PINGs in %v at a %v period: want at most %d", n, elapsed, period, most)
	}
	if o := obs(t, w, f.Addr()); o.LastPingErr != "" {
		t.Fatalf("a server that answers every PING counted as failing: %+v", o)
	}
}
