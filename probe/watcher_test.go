package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

// testLogWriter routes the Watcher's log to t.Log, so it shows only when a
// test fails.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// fastConfig has short periods so that tests see many rounds quickly; the
// normal INFO period is an hour, so only the first INFO, FastInfo and the
// fast retries produce INFO.
func fastConfig(t testing.TB) WatcherConfig {
	return WatcherConfig{
		ClientName:     testClientName,
		Logger:         slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PingPeriod:     50 * time.Millisecond,
		InfoPeriod:     time.Hour,
		FastInfoPeriod: 50 * time.Millisecond,
		InfoTimeout:    2 * time.Second,
		DialTimeout:    time.Second,
	}
}

func newTestWatcher(t *testing.T, cfg WatcherConfig) *Watcher {
	t.Helper()
	w, err := NewWatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// waitObs polls the observation of addr until check accepts it.
func waitObs(t *testing.T, w *Watcher, addr string, check func(Observation) error) Observation {
	t.Helper()
	var last Observation
	testwait.For(t, 20*time.Second, "an observation of "+addr+" that passes the check", func() error {
		o, ok := w.Observation(addr)
		if !ok {
			return fmt.Errorf("no observation of %s", addr)
		}
		last = o
		if err := check(o); err != nil {
			return fmt.Errorf("%s: %w (observation %+v)", addr, err, o)
		}
		return nil
	})
	return last
}

func obs(t *testing.T, w *Watcher, addr string) Observation {
	t.Helper()
	o, ok := w.Observation(addr)
	if !ok {
		t.Fatalf("no observation of %s", addr)
	}
	return o
}

func healthy(o Observation) error {
	switch {
	case o.LastValidReply.IsZero() || o.LastPingErr != "" || !o.LinkUp:
		return errors.New("no valid PING reply yet")
	case o.Info == nil || o.InfoErr != "":
		return errors.New("no INFO yet")
	}
	return nil
}

// healthyCarryingInfo is healthy, with the INFO its PINGs carry
// (Target.ReplicationWithPing) read at least once.
func healthyCarryingInfo(o Observation) error {
	if err := healthy(o); err != nil {
		return err
	}
	if o.Replication == nil {
		return errors.New("no INFO carried by a PING yet")
	}
	return nil
}

func TestWatcherObservesMasterAndReplica(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()), redistest.ReplicaPriority(9))
	redistest.WaitReplicating(t, replica, master)
	_, masterPort := hostPort(t, master)
	_, replicaPort := hostPort(t, replica)

	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: master.Addr()}, {Addr: replica.Addr()}}); err != nil {
		t.Fatal(err)
	}
	mo := waitObs(t, w, master.Addr(), healthy)
	ro := waitObs(t, w, replica.Addr(), healthy)

	if mo.Info.Role != RoleMaster || len(mo.Info.ConnectedReplicas) != 1 || mo.Info.ConnectedReplicas[0].Port != replicaPort {
		t.Fatalf("master INFO = %+v", mo.Info)
	}
	if ro.Info.Role != RoleSlave || ro.Info.MasterPort != masterPort || !ro.Info.MasterLinkUp() || ro.Info.ReplicaPriority != 9 {
		t.Fatalf("replica INFO = %+v", ro.Info)
	}
	for _, o := range []Observation{mo, ro} {
		if o.Since.IsZero() || o.LastValidReply.Before(o.Since) || o.LastReply.Before(o.LastValidReply) ||
			o.LastPong.IsZero() || o.InfoAt.Before(o.Since) || o.RoleChangedAt.IsZero() || o.MasterAddrChangedAt.IsZero() {
			t.Fatalf("inconsistent times in %+v", o)
		}
	}
	select {
	case <-w.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("Changed never fired")
	}
	all := w.Observations()
	if len(all) != 2 || all[master.Addr()].Addr != master.Addr() {
		t.Fatalf("Observations = %v", all)
	}
	// Observations are copies: changing one changes nothing in the Watcher
	// (their Info is shared and read-only, documented on Observation.Info).
	mcopy := all[master.Addr()]
	mcopy.LastPingErr, mcopy.Info = "changed", nil
	all[master.Addr()] = mcopy
	if o := obs(t, w, master.Addr()); o.LastPingErr != "" || o.Info == nil || o.Info.ConnectedReplicas[0].Port != replicaPort {
		t.Fatal("Observations shares its Observation with the Watcher")
	}
	ctx := testCtx(t)
	c := newTestConn(t, master.Addr(), Auth{})
	if n := countClients(t, ctx, c, "name="+testClientName); n < 2 {
		t.Fatalf("%d named connections on the master, want the watcher's and ours", n)
	}
}

func TestWatcherFrozenInstance(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	cfg := fastConfig(t)
	cfg.PingPeriod = time.Second
	w := newTestWatcher(t, cfg)
	// down-after below the PING period sets the period, as in Sentinel.
	const period = 100 * time.Millisecond
	if err := w.SetTargets([]Target{{Addr: s.Addr(), DownAfter: period}}); err != nil {
		t.Fatal(err)
	}
	waitObs(t, w, s.Addr(), healthy)

	s.Pause()
	frozen := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LastPingErr == "" {
			return errors.New("PING still valid")
		}
		return nil
	})
	// Several more PINGs must time out without moving LastValidReply.
	later := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LastPingAt.Before(frozen.LastPingAt.Add(5 * period)) {
			return errors.New("not enough PINGs yet")
		}
		return nil
	})
	if !later.LastValidReply.Equal(frozen.LastValidReply) || !later.LastReply.Equal(frozen.LastReply) {
		t.Fatalf("replies recorded from a frozen server: %v -> %v", frozen.LastValidReply, later.LastValidReply)
	}
	if later.LinkUp || later.LastPingErr == "" {
		t.Fatalf("frozen server observed as %+v", later)
	}
	// The SDOWN clock is the first PING that went unanswered, sent after
	// the last valid reply, and timeouts do not restart it.
	if p := later.FailingSince; p.IsZero() || p.Before(frozen.LastValidReply) || !p.Equal(frozen.FailingSince) {
		t.Fatalf("failing since %v (at the first timeout %v), last valid reply %v", p, frozen.FailingSince, frozen.LastValidReply)
	}

	s.Resume()
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.LastValidReply.After(frozen.LastValidReply) || o.LastPingErr != "" || !o.LinkUp || !o.FailingSince.IsZero() {
			return errors.New("no valid reply since SIGCONT")
		}
		return nil
	})
}

// A PING answered more than LateReply after it was sent leaves
// LinkFailedAt, though no PING timed out and the link never went down: a
// reader that did not look while it waited still learns of the stall.
func TestWatcherRecordsLateReply(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	w := newTestWatcher(t, fastConfig(t))
	// The PING timeout is half of down-after, far above the stall below.
	if err := w.SetTargets([]Target{{Addr: s.Addr(), DownAfter: 10 * time.Second, PingPeriod: 50 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if o := waitObs(t, w, s.Addr(), healthy); !o.LinkFailedAt.IsZero() {
		t.Fatalf("late reply recorded from a healthy server: %v", o.LinkFailedAt)
	}
	s.Pause()
	stalled := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.FailingSince.IsZero() || time.Since(o.FailingSince) <= LateReply+50*time.Millisecond {
			return errors.New("no PING waiting for longer than LateReply yet")
		}
		return nil
	})
	if !stalled.LinkUp || !stalled.LinkFailedAt.IsZero() {
		t.Fatalf("while the PING waits: link up %v, late reply %v; want up, none yet", stalled.LinkUp, stalled.LinkFailedAt)
	}
	s.Resume()
	o := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LinkFailedAt.IsZero() || !o.FailingSince.IsZero() {
			return errors.New("no late reply recorded yet")
		}
		return nil
	})
	if !o.LinkUp || o.LastPingErr != "" || o.LinkFailedAt.Before(stalled.FailingSince.Add(LateReply)) {
		t.Fatalf("after the stall: %+v", o)
	}
	if l, ok := w.Gens([]string{s.Addr()}).Link(0); !ok || !l.LinkFailedAt.Equal(o.LinkFailedAt) {
		t.Fatalf("Link's late reply %v, the observation's %v", l.LinkFailedAt, o.LinkFailedAt)
	}
}

func TestWatcherKilledAndRestartedInstance(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	cfg := fastConfig(t)
	cfg.InfoPeriod = 100 * time.Millisecond
	w := newTestWatcher(t, cfg)
	if err := w.SetTargets([]Target{{Addr: s.Addr()}}); err != nil {
		t.Fatal(err)
	}
	before := waitObs(t, w, s.Addr(), healthy)
	runID := before.Info.RunID

	s.Kill()
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LinkUp || !strings.Contains(o.LastPingErr, "refused") || o.InfoErr == "" {
			return errors.New("not yet seen down")
		}
		return nil
	})
	// The clock is the first refused attempt, after the last valid reply,
	// and later refusals do not move it.
	down := obs(t, w, s.Addr())
	if down.FailingSince.IsZero() || !down.FailingSince.After(before.LastValidReply) {
		t.Fatalf("refused since %v, last valid reply %v", down.FailingSince, before.LastValidReply)
	}
	if !before.LinkFailedAt.IsZero() || down.LinkFailedAt.Before(down.FailingSince) {
		t.Fatalf("link failed at %v before the kill and %v after it, refused since %v", before.LinkFailedAt, down.LinkFailedAt, down.FailingSince)
	}
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.LastPingAt.After(down.LastPingAt) {
			return errors.New("no later PING attempt yet")
		}
		if !o.FailingSince.Equal(down.FailingSince) {
			return fmt.Errorf("a later refusal moved the clock from %v to %v", down.FailingSince, o.FailingSince)
		}
		return nil
	})
	if o := obs(t, w, s.Addr()); o.Info == nil || o.Info.RunID != runID {
		t.Fatalf("the last good INFO must stay while INFO fails: %+v", o)
	}

	s.Restart()
	after := waitObs(t, w, s.Addr(), func(o Observation) error {
		if err := healthy(o); err != nil {
			return err
		}
		if o.Info.RunID == runID {
			return errors.New("INFO still shows the old run id")
		}
		return nil
	})
	if after.RebootedAt.IsZero() || after.RebootedAt.Before(before.InfoAt) || after.RebootedAt.After(after.InfoAt) {
		t.Fatalf("RebootedAt %v: want the time of the first INFO with the new run id (last %v, previous %v)",
			after.RebootedAt, after.InfoAt, before.InfoAt)
	}
}

// A server restarted faster than a PING period is seen at once: the PING
// that finds the old connection closed makes a new one, and a new
// connection makes the Watcher read INFO again without waiting for the INFO
// period (an hour here), so the new run id and the empty keyspace show.
func TestWatcherReadsInfoAfterReconnect(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	ctx := context.Background()
	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: s.Addr()}}); err != nil {
		t.Fatal(err)
	}
	before := waitObs(t, w, s.Addr(), func(o Observation) error {
		if err := healthy(o); err != nil {
			return err
		}
		if !o.Info.HasKeyspace || o.Info.Keys != 1 || o.Info.MasterReplID == "" {
			return fmt.Errorf("keyspace %v keys %d replid %q", o.Info.HasKeyspace, o.Info.Keys, o.Info.MasterReplID)
		}
		return nil
	})
	s.Restart() // no persistence: it comes back empty, with a new history
	after := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.Info == nil || o.Info.RunID == before.Info.RunID {
			return errors.New("INFO still shows the old run id")
		}
		return nil
	})
	if after.RebootedAt.IsZero() || !after.Info.HasKeyspace || after.Info.Keys != 0 || after.Info.MasterReplID == before.Info.MasterReplID {
		t.Fatalf("after the restart: rebooted at %v, keyspace %v keys %d replid %q (was %q)", after.RebootedAt,
			after.Info.HasKeyspace, after.Info.Keys, after.Info.MasterReplID, before.Info.MasterReplID)
	}
}

func TestWatcherFastInfo(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	cfg := fastConfig(t)
	cfg.PingPeriod = 20 * time.Millisecond
	w := newTestWatcher(t, cfg)
	if err := w.SetTargets([]Target{{Addr: s.Addr()}}); err != nil {
		t.Fatal(err)
	}
	first := waitObs(t, w, s.Addr(), healthy)

	// With the hour-long normal period, no second INFO comes while many
	// fast periods pass (the PING loop serves as the clock).
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LastPingAt.Before(first.InfoAt.Add(10 * cfg.FastInfoPeriod)) {
			return errors.New("waiting for time to pass")
		}
		return nil
	})
	if o := obs(t, w, s.Addr()); !o.InfoAt.Equal(first.InfoAt) {
		t.Fatalf("INFO polled again without FastInfo: %v -> %v", first.InfoAt, o.InfoAt)
	}

	conns := watcherConns(t, s)
	if len(conns) != 2 {
		t.Fatalf("the watcher holds connections %v, want one for PING and one for INFO", conns)
	}
	if err := w.SetTargets([]Target{{Addr: s.Addr(), FastInfo: true}}); err != nil {
		t.Fatal(err)
	}
	// The INFO loop is asleep for an hour; the new setting must wake it.
	second := waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.InfoAt.After(first.InfoAt) {
			return errors.New("no new INFO")
		}
		return nil
	})
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.InfoAt.After(second.InfoAt.Add(3 * cfg.FastInfoPeriod)) {
			return errors.New("INFO not repeating at the fast period")
		}
		return nil
	})
	o := obs(t, w, s.Addr())
	if after := watcherConns(t, s); !slices.Equal(after, conns) || !o.Since.Equal(first.Since) {
		t.Fatalf("changing FastInfo replaced the connections (%v, then %v) or restarted the observation", conns, after)
	}
}

// RefreshInfo reads INFO at once, however long the INFO period, and only
// of the instances named.
func TestWatcherRefreshInfo(t *testing.T) {
	t.Parallel()
	s, other := redistest.Start(t), redistest.Start(t)
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: s.Addr()}, {Addr: other.Addr()}}); err != nil {
		t.Fatal(err)
	}
	first := waitObs(t, w, s.Addr(), healthy)
	untouched := waitObs(t, w, other.Addr(), healthy)
	w.RefreshInfo(s.Addr(), "127.0.0.1:1")
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.InfoAt.After(first.InfoAt) {
			return errors.New("no new INFO")
		}
		return nil
	})
	if o := obs(t, w, other.Addr()); !o.InfoAt.Equal(untouched.InfoAt) {
		t.Fatalf("INFO of an instance not named was read again: %v -> %v", untouched.InfoAt, o.InfoAt)
	}
}

// watcherConns lists, sorted, the ids of the connections named
// testClientName on s (the Watcher's, and those of any test Conn).
func watcherConns(t *testing.T, s *redistest.Server) []string {
	t.Helper()
	list, err := s.Client().ClientList(testCtx(t)).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		fields := strings.Fields(line)
		if slices.Contains(fields, "name="+testClientName) {
			ids = append(ids, fields[0])
		}
	}
	slices.Sort(ids)
	return ids
}

func TestWatcherRemovalStopsProbing(t *testing.T) {
	t.Parallel()
	kept := redistest.Start(t)
	removed := redistest.Start(t)
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: kept.Addr()}, {Addr: removed.Addr()}}); err != nil {
		t.Fatal(err)
	}
	waitObs(t, w, kept.Addr(), healthy)
	waitObs(t, w, removed.Addr(), healthy)

	if err := w.SetTargets([]Target{{Addr: kept.Addr()}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.Observation(removed.Addr()); ok {
		t.Fatal("a removed target is still observed")
	}
	if got := w.Observations(); len(got) != 1 {
		t.Fatalf("Observations = %v", got)
	}
	ctx := testCtx(t)
	c := newTestConn(t, removed.Addr(), Auth{})
	testwait.Until(t, 10*time.Second, "the watcher's connection to a removed target to close", func() bool {
		return countClients(t, ctx, c, "name="+testClientName) == 1 // ours only
	})

	// SetTargets returned after the loops ended, so no PING can arrive
	// any more, however long we watch the other target.
	pingsBefore := pingCalls(t, ctx, removed)
	start := obs(t, w, kept.Addr()).LastPingAt
	waitObs(t, w, kept.Addr(), func(o Observation) error {
		if o.LastPingAt.Before(start.Add(10 * 50 * time.Millisecond)) {
			return errors.New("waiting for time to pass")
		}
		return nil
	})
	if after := pingCalls(t, ctx, removed); after != pingsBefore {
		t.Fatalf("the removed target received %d more PINGs", after-pingsBefore)
	}
}

func pingCalls(t *testing.T, ctx context.Context, s *redistest.Server) int {
	t.Helper()
	f, err := s.Info(ctx, "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	stat := f["cmdstat_ping"] // calls=N,usec=...
	calls, _, _ := strings.Cut(strings.TrimPrefix(stat, "calls="), ",")
	n, err := strconv.Atoi(calls)
	if err != nil {
		t.Fatalf("cmdstat_ping %q: %v", stat, err)
	}
	return n
}

func TestWatcherSeesRoleChange(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: replica.Addr(), FastInfo: true}}); err != nil {
		t.Fatal(err)
	}
	before := waitObs(t, w, replica.Addr(), healthy)
	if before.Info.Role != RoleSlave {
		t.Fatalf("replica observed as %+v", before.Info)
	}
	// Drain the notifications of the first observations.
	for len(w.Changed()) > 0 {
		<-w.Changed()
	}

	if _, err := newTestConn(t, replica.Addr(), Auth{}).Promote(testCtx(t), PromoteOptions{}); err != nil {
		t.Fatal(err)
	}
	after := waitObs(t, w, replica.Addr(), func(o Observation) error {
		if o.Info == nil || o.Info.Role != RoleMaster {
			return errors.New("role change not seen")
		}
		return nil
	})
	if !after.RoleChangedAt.After(before.RoleChangedAt) || !after.MasterAddrChangedAt.After(before.MasterAddrChangedAt) {
		t.Fatalf("change times did not move: %+v -> %+v", before, after)
	}
	select {
	case <-w.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("Changed did not fire for a role change")
	}
}

func TestWatcherAuthChangeReconnects(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.RequirePass("pw"))
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: s.Addr()}}); err != nil {
		t.Fatal(err)
	}
	first := waitObs(t, w, s.Addr(), func(o Observation) error {
		if !strings.HasPrefix(o.LastPingErr, "NOAUTH") || !o.LinkUp || o.InfoErr == "" {
			return errors.New("NOAUTH not seen yet")
		}
		return nil
	})
	if !first.LastValidReply.IsZero() || first.LastReply.IsZero() {
		t.Fatalf("NOAUTH must count as a reply but not a valid one: %+v", first)
	}

	if err := w.SetTargets([]Target{{Addr: s.Addr(), Auth: Auth{Pass: "pw"}}}); err != nil {
		t.Fatal(err)
	}
	o := waitObs(t, w, s.Addr(), healthy)
	if !o.Since.Equal(first.Since) {
		t.Fatal("an auth change restarted the observation")
	}
}

func TestWatcherUsesInjectedClock(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	base := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	realStart := time.Now()
	cfg := fastConfig(t)
	cfg.Now = func() time.Time { return base.Add(time.Since(realStart)) }
	w := newTestWatcher(t, cfg)
	if err := w.SetTargets([]Target{{Addr: s.Addr()}}); err != nil {
		t.Fatal(err)
	}
	o := waitObs(t, w, s.Addr(), healthy)
	for name, ts := range map[string]time.Time{
		"Since": o.Since, "LastPingAt": o.LastPingAt, "LastValidReply": o.LastValidReply,
		"InfoAt": o.InfoAt, "RoleChangedAt": o.RoleChangedAt,
	} {
		if ts.Before(base) {
			t.Errorf("%s = %v does not come from the injected clock", name, ts)
		}
	}
}

func TestWatcherValidation(t *testing.T) {
	if _, err := NewWatcher(WatcherConfig{ClientName: "bad name"}); err == nil {
		t.Fatal("NewWatcher accepted a client name with a space")
	}
	w := newTestWatcher(t, fastConfig(t))
	for _, targets := range [][]Target{
		{{Addr: "no-port"}},
		{{Addr: "127.0.0.1:1", DownAfter: -time.Second}},
		{{Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:1"}},
	} {
		if err := w.SetTargets(targets); err == nil {
			t.Errorf("SetTargets(%+v) accepted", targets)
		}
	}
	if got := w.Observations(); len(got) != 0 {
		t.Fatalf("a rejected SetTargets changed the targets: %v", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.SetTargets(nil); !errors.Is(err, ErrWatcherClosed) {
		t.Fatalf("SetTargets after Close = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWatcherNotifyCoalesces(t *testing.T) {
	w, err := NewWatcher(WatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w.notify()
	w.notify()
	<-w.Changed()
	select {
	case <-w.Changed():
		t.Fatal("two notifications queued")
	default:
	}
}

func TestPeriods(t *testing.T) {
	w, err := NewWatcher(WatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		target Target
		info   *Info
		infoEr string
		infoP  time.Duration
	}{
		{Target{}, nil, "", 10 * time.Second},
		{Target{DownAfter: 5 * time.Second, FastInfo: true}, nil, "", time.Second},
		{Target{}, &Info{HasMasterLinkDownSince: true}, "", time.Second},
		{Target{}, &Info{}, "i/o timeout", time.Second},
	} {
		in := &instance{target: tc.target, obs: Observation{Info: tc.info, InfoErr: tc.infoEr}}
		if got := w.infoPeriod(in); got != tc.infoP {
			t.Errorf("%+v info %+v err %q: info period %v, want %v", tc.target, tc.info, tc.infoEr, got, tc.infoP)
		}
	}
}

func TestPingTiming(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name            string
		target          Target
		nodeDefault     time.Duration
		period, timeout time.Duration
	}{
		{"down-after/10", Target{DownAfter: time.Second}, 0, 100 * ms, 500 * ms},
		{"no down-after: Sentinel's 30s", Target{}, 0, time.Second, 15 * time.Second},
		{"long down-after: at most 1s", Target{DownAfter: time.Minute}, 0, time.Second, 30 * time.Second},
		{"short down-after: at least 50ms", Target{DownAfter: 100 * ms}, 0, 50 * ms, 100 * ms},
		{"node default", Target{DownAfter: time.Second}, 200 * ms, 200 * ms, 500 * ms},
		{"target's own beats the node's", Target{DownAfter: time.Second, PingPeriod: 20 * ms}, 200 * ms, 20 * ms, 500 * ms},
		{"capped by down-after", Target{DownAfter: 300 * ms, PingPeriod: time.Second}, 0, 300 * ms, 600 * ms},
		{"never below 10ms", Target{DownAfter: time.Second, PingPeriod: ms}, 0, MinPingPeriod, 500 * ms},
		{"never below 10ms, even by down-after", Target{DownAfter: time.Microsecond}, 0, MinPingPeriod, 20 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			period, timeout := PingTiming(tc.target, tc.nodeDefault)
			if period != tc.period || timeout != tc.timeout {
				t.Fatalf("PingTiming = %v, %v; want %v, %v", period, timeout, tc.period, tc.timeout)
			}
			if timeout <= period {
				t.Fatalf("the PING deadline %v is not longer than the period %v", timeout, period)
			}
		})
	}
}

func TestDecisionFieldsDiffer(t *testing.T) {
	base := Info{Role: RoleMaster, RunID: "a", ConnectedReplicas: []ReplicaInfo{
		{IP: "10.0.0.1", Port: 1, State: "online", Offset: 5},
		{IP: "10.0.0.2", Port: 2, State: "online", Offset: 5},
	}}
	same := base.Clone()
	same.MasterReplOffset = 99
	same.ConnectedReplicas[0], same.ConnectedReplicas[1] = same.ConnectedReplicas[1], same.ConnectedReplicas[0]
	same.ConnectedReplicas[0].Offset, same.ConnectedReplicas[0].Lag = 77, 3
	if decisionFieldsDiffer(&base, &same) {
		t.Fatal("offsets, lags or replica order counted as a decision change")
	}
	for name, change := range map[string]func(*Info){
		"role":          func(i *Info) { i.Role = RoleSlave },
		"run id":        func(i *Info) { i.RunID = "b" },
		"master":        func(i *Info) { i.MasterPort = 7 },
		"link":          func(i *Info) { i.MasterLinkStatus = LinkStatusDown },
		"link since":    func(i *Info) { i.HasMasterLinkDownSince = true },
		"priority":      func(i *Info) { i.ReplicaPriority = 5 },
		"announced":     func(i *Info) { i.ReplicaAnnounced = true },
		"failover":      func(i *Info) { i.MasterFailoverState = "waiting-for-sync" },
		"replica state": func(i *Info) { i.ConnectedReplicas[0].State = "wait_bgsave" },
		"replica gone":  func(i *Info) { i.ConnectedReplicas = i.ConnectedReplicas[:1] },
	} {
		c := base.Clone()
		change(&c)
		if !decisionFieldsDiffer(&base, &c) {
			t.Errorf("%s change not seen", name)
		}
	}
}

// pingRecorder collects what OnPingReply reports.
type pingRecorder struct {
	mu   sync.Mutex
	rtts map[string][]time.Duration
}

func (p *pingRecorder) record(addr string, rtt time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rtts[addr] = append(p.rtts[addr], rtt)
}

func (p *pingRecorder) count(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.rtts[addr])
}

func TestWatcherReportsPingRoundTrips(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	rec := &pingRecorder{rtts: map[string][]time.Duration{}}
	cfg := fastConfig(t)
	cfg.OnPingReply = rec.record
	w := newTestWatcher(t, cfg)
	if err := w.SetTargets([]Target{{Addr: s.Addr()}}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "three PING round trips reported", func() bool { return rec.count(s.Addr()) >= 3 })
	rec.mu.Lock()
	for _, rtt := range rec.rtts[s.Addr()] {
		// Each is one PING on 127.0.0.1, within the PING's deadline.
		if rtt <= 0 || rtt > cfg.PingPeriod {
			t.Errorf("round trip %v, want within (0, %v]", rtt, cfg.PingPeriod)
		}
	}
	rec.mu.Unlock()

	// A refused connection is no reply: nothing is reported for it.
	s.Kill()
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LinkUp {
			return errors.New("not yet seen down")
		}
		return nil
	})
	// The loop reports a reply before it sends the next PING, so every
	// reply is counted by the time a failed PING is observed.
	n := rec.count(s.Addr())
	down := obs(t, w, s.Addr())
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.LastPingAt.After(down.LastPingAt.Add(2 * cfg.PingPeriod)) {
			return errors.New("not enough PINGs since")
		}
		return nil
	})
	if got := rec.count(s.Addr()); got != n {
		t.Fatalf("%d round trips reported for a dead instance", got-n)
	}
}

// Gen stays the same while only PING times move, and changes with every
// INFO and with the link going down and up again.
func TestWatcherGen(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	cfg := fastConfig(t)
	w := newTestWatcher(t, cfg)
	if err := w.SetTargets([]Target{{Addr: s.Addr(), DownAfter: time.Second}}); err != nil {
		t.Fatal(err)
	}
	first := waitObs(t, w, s.Addr(), healthy)
	if first.Gen == 0 {
		t.Fatal("an observation with Gen 0")
	}
	// INFO every hour: several PINGs (every 50 ms) and the same Gen.
	later := waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.LastPingAt.After(first.LastPingAt.Add(150 * time.Millisecond)) {
			return errors.New("not enough PINGs yet")
		}
		return nil
	})
	if later.InfoAt.Equal(first.InfoAt) && later.Gen != first.Gen {
		t.Fatalf("PINGs alone changed Gen from %d to %d", first.Gen, later.Gen)
	}

	// The fast INFO period: a new INFO, a new Gen.
	if err := w.SetTargets([]Target{{Addr: s.Addr(), DownAfter: time.Second, FastInfo: true}}); err != nil {
		t.Fatal(err)
	}
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.InfoAt.After(later.InfoAt) {
			return errors.New("no new INFO yet")
		}
		if o.Gen == later.Gen {
			return fmt.Errorf("a new INFO at %v kept Gen %d", o.InfoAt, o.Gen)
		}
		return nil
	})
	if err := w.SetTargets([]Target{{Addr: s.Addr(), DownAfter: time.Second}}); err != nil {
		t.Fatal(err)
	}

	// Frozen: the PING times out, the link goes down, Gen changes.
	before := obs(t, w, s.Addr())
	s.Pause()
	down := waitObs(t, w, s.Addr(), func(o Observation) error {
		if o.LinkUp {
			return errors.New("link still up")
		}
		return nil
	})
	if down.Gen == before.Gen {
		t.Fatalf("the link went down with the same Gen %d", down.Gen)
	}
	s.Resume()
	waitObs(t, w, s.Addr(), func(o Observation) error {
		if !o.LinkUp {
			return errors.New("link still down")
		}
		if o.Gen == down.Gen {
			return fmt.Errorf("the link came back with the same Gen %d", o.Gen)
		}
		return nil
	})
}

// A target with ReplicationWithPing gets INFO replication with every
// PING, as of the PING's send time, without changing Gen; the
// flag turned off drops it.
func TestWatcherReplicationWithPing(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	replica := redistest.Start(t, redistest.ReplicaOf(master.Addr()))
	redistest.WaitReplicating(t, replica, master)
	_, replicaPort := hostPort(t, replica)

	w := newTestWatcher(t, fastConfig(t))
	target := Target{Addr: master.Addr(), ReplicationWithPing: true}
	if err := w.SetTargets([]Target{target}); err != nil {
		t.Fatal(err)
	}
	first := waitObs(t, w, master.Addr(), healthyCarryingInfo)
	r := first.Replication
	if r.Role != RoleMaster || r.Loading || len(r.ConnectedReplicas) != 1 || r.ConnectedReplicas[0].Port != replicaPort ||
		r.ConnectedReplicas[0].State != "online" || r.RunID != "" {
		t.Fatalf("INFO with the PING = %+v", r)
	}
	if first.ReplicationAt.Before(first.Since) || first.ReplicationAt.After(first.LastPingAt) {
		t.Fatalf("ReplicationAt %v outside [Since %v, LastPingAt %v]", first.ReplicationAt, first.Since, first.LastPingAt)
	}
	// Between two PINGs carrying INFO, Gen stays unless an INFO read of
	// the INFO loop's own came between them (the first PING on a new
	// connection asks for one, which may land after first): such pairs
	// are passed over.
	prev := first
	for i := 0; ; i++ {
		later := waitObs(t, w, master.Addr(), func(o Observation) error {
			if !o.ReplicationAt.After(prev.ReplicationAt) {
				return errors.New("no later PING with INFO yet")
			}
			return nil
		})
		if later.InfoAt.Equal(prev.InfoAt) {
			if later.Gen != prev.Gen {
				t.Errorf("Gen %d -> %d with only PINGs and their INFO", prev.Gen, later.Gen)
			}
			break
		}
		if i == 20 {
			t.Fatal("an INFO read came between every two PINGs")
		}
		prev = later
	}

	target.ReplicationWithPing = false
	if err := w.SetTargets([]Target{target}); err != nil {
		t.Fatal(err)
	}
	off := obs(t, w, master.Addr())
	if off.Replication != nil || !off.ReplicationAt.IsZero() {
		t.Fatalf("INFO kept after the flag was turned off: %+v", off)
	}
	waitObs(t, w, master.Addr(), func(o Observation) error {
		if !o.LastPingAt.After(off.LastPingAt) {
			return errors.New("no PING since")
		}
		if o.Replication != nil {
			return errors.New("a PING without the flag carried INFO")
		}
		return nil
	})
}

// A server that refuses INFO (an ACL user without it, say) leaves the PING
// valid and no INFO with it.
func TestWatcherReplicationWithPingRefused(t *testing.T) {
	t.Parallel()
	f := startFakeRedis(t, func(args []string) string {
		if strings.EqualFold(args[0], "PING") {
			return "+PONG\r\n"
		}
		return "-NOPERM this user has no permissions to run the 'info' command\r\n"
	})
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: f.Addr(), ReplicationWithPing: true}}); err != nil {
		t.Fatal(err)
	}
	o := waitObs(t, w, f.Addr(), func(o Observation) error {
		if o.LastPong.IsZero() {
			return errors.New("no PONG yet")
		}
		return nil
	})
	if o.LastPingErr != "" || !o.FailingSince.IsZero() || o.Replication != nil {
		t.Fatalf("observation %+v", o)
	}
}

func TestWatcherGensFollowObservations(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	w := newTestWatcher(t, fastConfig(t))
	if err := w.SetTargets([]Target{{Addr: s.Addr(), ReplicationWithPing: true}}); err != nil {
		t.Fatal(err)
	}
	unwatched := "127.0.0.1:1"
	gens := w.Gens([]string{s.Addr(), unwatched})
	o := waitObs(t, w, s.Addr(), healthyCarryingInfo)
	// Read after the observation: the ChangeGen may only have moved on
	// since, and the Link only be newer.
	if g := gens.ChangeGen(0); g < o.ChangeGen {
		t.Fatalf("ChangeGen(0) = %d, older than the observation's %d", g, o.ChangeGen)
	}
	if g := gens.ChangeGen(1); g != 0 {
		t.Fatalf("ChangeGen of an address not watched = %d, want 0", g)
	}
	l, ok := gens.Link(0)
	if !ok || !l.Up || l.LastPingAt.Before(o.LastPingAt) || l.Replication == nil || l.ReplicationAt.Before(o.ReplicationAt) ||
		l.Replication.Role != RoleMaster {
		t.Fatalf("Link(0) = %+v, %v; want up, pinged no earlier than %v, a master's INFO carried no earlier than %v",
			l, ok, o.LastPingAt, o.ReplicationAt)
	}
	if _, ok := gens.Link(1); ok {
		t.Fatal("Link of an address not watched is ok")
	}
	// An INFO read that shows nothing new keeps the ChangeGen.
	w.RefreshInfo(s.Addr())
	after := waitObs(t, w, s.Addr(), func(a Observation) error {
		if a.Gen == o.Gen || !a.InfoAt.After(o.InfoAt) {
			return errors.New("no new INFO read yet")
		}
		return nil
	})
	if after.ChangeGen != o.ChangeGen || gens.ChangeGen(0) != o.ChangeGen {
		t.Fatalf("ChangeGen %d -> %d (reader %d) after an INFO read that showed nothing new", o.ChangeGen, after.ChangeGen, gens.ChangeGen(0))
	}
	// Without ReplicationWithPing, no INFO is carried any more, from the
	// moment SetTargets returns (a PING in flight that carries one is not
	// recorded as such).
	if err := w.SetTargets([]Target{{Addr: s.Addr()}}); err != nil {
		t.Fatal(err)
	}
	if l, ok := gens.Link(0); !ok || l.Replication != nil || !l.ReplicationAt.IsZero() {
		t.Fatalf("Link(0) = %+v, %v after ReplicationWithPing was turned off; want up, no INFO carried", l, ok)
	}
	// A change the decisions read (another role) gives a new ChangeGen.
	if err := s.Client().ReplicaOf(testCtx(t), "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	w.RefreshInfo(s.Addr())
	testwait.For(t, 5*time.Second, "a new ChangeGen after a role change", func() error {
		if g := gens.ChangeGen(0); g == o.ChangeGen {
			return fmt.Errorf("ChangeGen still %d", g)
		}
		return nil
	})
	if now, _ := w.Observation(s.Addr()); now.Info == nil || now.Info.Role != RoleSlave || gens.ChangeGen(0) < now.ChangeGen {
		t.Fatalf("after the role change: observation %+v, reader's ChangeGen %d", now, gens.ChangeGen(0))
	}
	// No longer watched: 0, as the reader must never match an old one.
	if err := w.SetTargets(nil); err != nil {
		t.Fatal(err)
	}
	if g := gens.ChangeGen(0); g != 0 {
		t.Fatalf("ChangeGen of a removed instance = %d, want 0", g)
	}
	if _, ok := gens.Link(0); ok {
		t.Fatal("Link of a removed instance is ok")
	}
}

func TestNextContact(t *testing.T) {
	base := time.Unix(1000, 0)
	w := &Watcher{base: base}
	ms := time.Millisecond
	for _, tc := range []struct {
		started, period time.Duration
		aligned         bool
		want            time.Duration // from base
	}{
		// On the grid (a tenth of the period, at most MaxGrid): the phase
		// the loop started at stays.
		{300 * ms, time.Second, false, 1300 * ms},
		{340 * ms, time.Second, false, 1300 * ms},
		{360 * ms, time.Second, false, 1400 * ms},
		{10 * ms, 200 * ms, false, 220 * ms},
		// Aligned: the period's own multiples. From an unaligned start the
		// first period is shorter or longer by up to half of it...
		{300 * ms, time.Second, true, time.Second},
		{600 * ms, time.Second, true, 2 * time.Second},
		// ...then a timer's delay is absorbed at every contact.
		{2*time.Second + 4*ms, time.Second, true, 3 * time.Second},
		{2*time.Second + 49*ms, time.Second, true, 3 * time.Second},
		{430 * ms, 200 * ms, true, 600 * ms},
		{0, 0, true, 0}, // no period: at once
	} {
		got := w.nextContact(base.Add(tc.started), tc.period, tc.aligned).Sub(base)
		if got != tc.want {
			t.Errorf("nextContact(base + %v, %v, aligned %v) = base + %v, want base + %v", tc.started, tc.period, tc.aligned, got, tc.want)
		}
	}
}

func TestBetweenBursts(t *testing.T) {
	base := time.Unix(1000, 0)
	w := &Watcher{base: base}
	half := MaxGrid / 2
	ms := time.Millisecond
	for _, tc := range []struct {
		at, every, want time.Duration // at and want from base
	}{
		{0, MaxGrid, half},
		{half - 1, MaxGrid, half},
		{half, MaxGrid, half},
		{half + 1, MaxGrid, MaxGrid + half},
		{MaxGrid, MaxGrid, MaxGrid + half},
		{7*MaxGrid + half, MaxGrid, 7*MaxGrid + half},
		{7*MaxGrid + half + time.Nanosecond, MaxGrid, 8*MaxGrid + half},
		{0, 0, half}, // no period is the grid's
		{0, time.Second, half},
		{half + 1, time.Second, time.Second + half},
		{time.Second + half, time.Second, time.Second + half},
		{3*time.Second + 2*MaxGrid, time.Second, 4*time.Second + half},
		// A period under the grid keeps its length.
		{half + 1, 25 * ms, half + 25*ms},
		{MaxGrid + half, 25 * ms, MaxGrid + half},
		{MaxGrid + half + 1, 25 * ms, MaxGrid + half + 25*ms},
	} {
		got := w.BetweenBursts(base.Add(tc.at), tc.every).Sub(base)
		if got != tc.want {
			t.Errorf("BetweenBursts(base + %v, %v) = base + %v, want base + %v", tc.at, tc.every, got, tc.want)
		}
		if tc.every%MaxGrid != 0 {
			continue
		}
		// The contacts start on the grid, half a grid away on each side.
		if got := w.onGrid(base.Add(tc.want), time.Second).Sub(base.Add(tc.want)); got.Abs() != half {
			t.Errorf("base + %v is %v from the nearest point of the 1 s period's grid, want %v", tc.want, got.Abs(), half)
		}
	}
}
