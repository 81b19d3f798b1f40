package orchestrator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/failover"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// actionPoints bring a leader to the pass where it would send want.
var actionPoints = []struct {
	name     string
	settings func(*fsmv1.MasterSettings)
	setup    func(e *env)
	want     string // a trace pattern
}{
	{
		name:  "promote",
		setup: func(e *env) { e.beginAutomatic() },
		want:  promoteCmd(addrR2),
	},
	{
		name: "re-point replicas",
		setup: func(e *env) {
			e.beginAutomatic()
			e.tick(time.Second)
		},
		want: replicaOf(addrR1, addrR2),
	},
	{
		name: "hand over",
		setup: func(e *env) {
			e.step()
			e.beginHandover()
		},
		want: redisCmd(addrM, "CLIENT PAUSE * WRITE"),
	},
	{
		name: "hand over with FAILOVER TO",
		setup: func(e *env) {
			e.refusePause()
			e.step()
			e.beginHandover()
		},
		want: redisCmd(addrM, "FAILOVER TO 10.0.0.3 6379 TIMEOUT *"),
	},
	{
		name: "promote in a paused handover",
		setup: func(e *env) {
			e.startPausedHandover()
			e.setInfo(addrR2, func(in *probe.Info) { in.SlaveReplOffset = 1000 })
		},
		want: promoteCmd(addrR2),
	},
	{
		name:     "convert the old master",
		settings: func(s *fsmv1.MasterSettings) { s.DownAfterMs = 15000 },
		setup: func(e *env) {
			e.failedOver()
			e.clock.Advance(time.Minute)
			e.forget(addrM)
			e.revive(addrM) // a returning former master: converted at the next pass
		},
		want: replicaOf(addrM, addrR2),
	},
}

// Without confirmed leadership no Redis command is sent (INFO, an
// observation, may be); once it is confirmed again, the command goes out.
func TestNoRedisCommandWithoutLeadership(t *testing.T) {
	for _, tc := range actionPoints {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.settings)
			tc.setup(e)
			e.lead.fail(errors.New("node is not the leader"))
			from := e.mark()
			for range 3 {
				e.tick(time.Second)
			}
			if got := e.writes(from); len(got) != 0 {
				t.Fatalf("sent without leadership: %q\n%s", got, e.dump(from))
			}
			e.lead.fail(nil)
			from = e.mark()
			e.tickUntil(3, "sent", func() bool { return e.index(from, tc.want) >= 0 })
		})
	}
}

// In TILT the leader neither commits nor sends anything, not even INFO;
// when TILT ends it acts again.
func TestTilt(t *testing.T) {
	rows := append([]struct {
		name     string
		settings func(*fsmv1.MasterSettings)
		setup    func(e *env)
		want     string
	}{
		{
			name: "replica change to record",
			setup: func(e *env) {
				e.step()
				e.setInfo(addrR1, func(in *probe.Info) { in.ReplicaPriority = 50 })
			},
			want: "commit UpdateReplicas",
		},
		{
			name:  "ODOWN to judge",
			setup: func(e *env) { e.masterFails() },
			want:  "commit BeginFailover odown " + addrR2,
		},
	}, actionPoints...)
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.settings)
			tc.setup(e)
			entered := e.clock.Now()
			e.obs.setTilt(func(int) failover.Tilt { return failover.Tilt{EnteredAt: entered} })
			from := e.mark()
			e.step()
			if got := e.since(from, ""); len(got) != 0 {
				t.Fatalf("acted in TILT: %q", got)
			}
			e.obs.setTilt(nil)
			e.tickUntil(3, "acting", func() bool { return e.index(from, tc.want) >= 0 })
		})
	}
}

// TILT that begins while a pass runs stops the Redis command it reaches.
func TestTiltDuringPass(t *testing.T) {
	for _, tc := range actionPoints {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.settings)
			tc.setup(e)
			entered := e.clock.Now().Add(time.Second)
			// The pass starts out of TILT; every later question finds it.
			e.obs.setTilt(func(call int) failover.Tilt {
				if call == 1 {
					return failover.Tilt{}
				}
				return failover.Tilt{EnteredAt: entered}
			})
			from := e.mark()
			e.tick(time.Second)
			if got := e.writes(from); len(got) != 0 {
				t.Fatalf("sent in TILT: %q", got)
			}
			if e.obs.calls < 2 {
				t.Fatalf("TILT asked %d times", e.obs.calls)
			}
		})
	}
}

// Stop cancels the command in flight at once (not at its actionTimeout),
// and a stopped leader's Step does nothing.
func TestStop(t *testing.T) {
	e := newEnv(t, nil)
	e.beginAutomatic()
	entered := make(chan struct{})
	seen := make(chan error, 1)
	var once sync.Once
	e.redis.setHook(addrR2, "PROMOTE", func(ctx context.Context) error {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		seen <- ctx.Err()
		return ctx.Err()
	})
	l := e.leader
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-entered
		l.Stop()
	}()
	from := e.mark()
	// Step returns once Stop cancels the REPLICAOF NO ONE: it would hang
	// here otherwise, or, past actionTimeout, see DeadlineExceeded.
	e.tick(time.Second)
	<-stopped
	if err := <-seen; !errors.Is(err, context.Canceled) {
		t.Fatalf("the command ended with %v, want context.Canceled from Stop", err)
	}
	if got := e.since(from, "commit "); len(got) != 0 {
		t.Fatalf("committed after Stop: %q", got)
	}

	// Stopped: nothing, in any state.
	e.redis.setHook(addrR2, "PROMOTE", nil)
	from = e.mark()
	e.tick(time.Second)
	e.tick(time.Minute)
	if got := e.since(from, ""); len(got) != 0 {
		t.Fatalf("a stopped leader acted: %q", got)
	}
}

func TestOffsetRefreshKeepsOffsetCommitsBounded(t *testing.T) {
	for _, tc := range []struct {
		masters int
		want    time.Duration
	}{
		{0, observeRefresh},
		{1, observeRefresh},
		{100, observeRefresh},
		{300, 30 * time.Second},
		{1000, 100 * time.Second},
	} {
		got := offsetRefresh(tc.masters)
		if got != tc.want {
			t.Errorf("offsetRefresh(%d) = %v, want %v", tc.masters, got, tc.want)
		}
		if rate := float64(tc.masters) / got.Seconds(); rate > offsetCommitsPerSecond {
			t.Errorf("%d masters refreshed every %v: %.1f entries/s, above %d", tc.masters, got, rate, offsetCommitsPerSecond)
		}
	}
}

// Offsets that move, with nothing else changing, are committed only for a
// master with max-lag, whose ranking reads the committed master offset;
// for every other master they stay off the log (each node displays its own
// probe's).
func TestOffsetsAloneAreCommittedOnlyWithMaxLag(t *testing.T) {
	for _, tc := range []struct {
		name   string
		maxLag int64
		want   bool
	}{
		{"no max-lag", 0, false},
		{"max-lag", 1 << 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(s *fsmv1.MasterSettings) { s.MaxLagBytes = tc.maxLag })
			e.step()
			from := e.mark()
			for i := range 30 {
				off := int64(2000 + 100*i)
				e.setInfo(addrM, func(in *probe.Info) { in.MasterReplOffset = off })
				for _, a := range replicaAddrs {
					e.setInfo(a, func(in *probe.Info) { in.SlaveReplOffset = off })
				}
				e.tick(time.Second)
			}
			got := e.count(from, "commit UpdateReplicas*")
			if (got > 0) != tc.want {
				t.Fatalf("%d offset-only UpdateReplicas commits in 30 s with max-lag %d, want some: %v\n%s", got, tc.maxLag, tc.want, e.dump(from))
			}
			if tc.want && got > 3 {
				t.Fatalf("%d offset-only commits in 30 s, want at most one per %v", got, observeRefresh)
			}
			// A change that matters is committed at once, with the offsets
			// of the moment.
			from = e.mark()
			e.setInfo(addrR1, func(in *probe.Info) { in.ReplicaPriority = 50 })
			e.tick(100 * time.Millisecond)
			if got := e.count(from, "commit UpdateReplicas*"); got != 1 {
				t.Fatalf("priority change: %d UpdateReplicas commits, want 1\n%s", got, e.dump(from))
			}
			if r := e.master().GetReplicas()[0]; r.GetPriority() != 50 || r.GetOffset() != 2000+100*29 {
				t.Fatalf("committed %s: priority %d offset %d, want 50 and %d", r.GetAddress(), r.GetPriority(), r.GetOffset(), 2000+100*29)
			}
		})
	}
}
