package orchestrator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

const (
	historyOld = "1111111111111111111111111111111111111111"
	historyNew = "2222222222222222222222222222222222222222"
	noHistory  = "0000000000000000000000000000000000000000"
)

// withData gives every instance of newEnv a keyspace of 1000 keys and one
// replication history (historyOld), as a group in sync looks.
func (e *env) withData() {
	for _, a := range append([]string{addrM}, replicaAddrs...) {
		e.setInfo(a, func(in *probe.Info) {
			in.MasterReplID, in.MasterReplID2, in.SecondReplOffset = historyOld, noHistory, -1
			in.HasKeyspace, in.Keys = true, 1000
		})
	}
}

// restartMaster models the master restarting: a new run id, and either no
// persistence (empty, a new history at offset 0) or an RDB file (its keys
// back, its old history kept as the previous one). Either way the replicas
// lose their link while they retry the sync.
func (e *env) restartMaster(persistent bool) {
	e.setInfo(addrM, func(in *probe.Info) {
		in.RunID = "run-m-restarted"
		in.MasterReplID, in.MasterReplID2, in.SecondReplOffset = historyNew, noHistory, -1
		in.MasterReplOffset, in.Keys = 0, 0
		if persistent {
			in.MasterReplID2, in.SecondReplOffset = historyOld, 1001
			in.MasterReplOffset, in.Keys = 1000, 1000
		}
	})
	for _, a := range replicaAddrs {
		e.setInfo(a, func(in *probe.Info) {
			in.MasterLinkStatus, in.HasMasterLinkDownSince, in.MasterLinkDownSinceSeconds = probe.LinkStatusDown, true, 1
		})
	}
}

// resynced models a replica that took a full resync from the empty master.
func (e *env) resynced(addr string) {
	e.setInfo(addr, func(in *probe.Info) {
		in.MasterReplID, in.SlaveReplOffset, in.MasterReplOffset, in.Keys = historyNew, 0, 0, 0
		in.MasterLinkStatus, in.HasMasterLinkDownSince = probe.LinkStatusUp, false
	})
}

func eventsOf(m *fsmv1.Master, prefix string) []string {
	var out []string
	for _, ev := range m.GetEvents() {
		if strings.HasPrefix(ev.GetType(), prefix) {
			out = append(out, ev.GetType()+" "+ev.GetPayload())
		}
	}
	return out
}

// An empty restart behind the replicas: in the pass that sees the new run
// id the leader reads every replica's INFO itself, then begins a failover
// with reason empty-restart to the best replica holding the data (r2,
// ranked as an automatic failover ranks, r4 excluded for priority 0),
// although the master answers PING and nobody voted it down. The failover
// re-points the old master and every other replica at once, whatever
// parallel-syncs says.
func TestEmptyRestartFailsOver(t *testing.T) {
	e := newEnv(t, nil)
	e.withData()
	e.step()
	e.tick(time.Second)
	from := e.mark()
	e.tick(time.Second)
	if got := e.since(from, "commit ", "redis "); len(got) != 0 {
		t.Fatalf("a master in sync needs nothing, got %q", got)
	}

	e.restartMaster(false)
	from = e.mark()
	e.tick(100 * time.Millisecond)
	e.inOrder(from, "commit UpdateReplicas", "redis "+addrR1+" INFO", "commit BeginFailover empty-restart "+addrR2)
	for _, a := range replicaAddrs {
		if e.count(from, redisCmd(a, "INFO")) != 1 {
			t.Fatalf("the leader did not read %s's INFO before deciding:\n%s", a, e.dump(from))
		}
	}
	if got := e.writes(from); len(got) != 0 {
		t.Fatalf("Redis commands in the pass that began the failover: %q", got)
	}
	m := e.master()
	f := m.GetFailover()
	if f.GetReason() != fsm.ReasonEmptyRestart || len(f.GetRejected()) != 1 || f.GetRejected()[0].GetAddress() != addrR4 {
		t.Fatalf("journal %v", f)
	}
	if m.GetVotes() != nil || m.GetOdown() {
		t.Fatalf("votes %v odown %v: the rule needs neither", m.GetVotes(), m.GetOdown())
	}
	want := []string{
		"+reboot master mymaster 10.0.0.1 6379",
		"+empty-restart master mymaster 10.0.0.1 6379 #run_id run-m-restarted #offset 0/900 #keys 0/1000",
	}
	if got := append(eventsOf(m, "+reboot"), eventsOf(m, "+empty-restart")...); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}

	from = e.mark()
	e.tick(100 * time.Millisecond)
	e.inOrder(from, promoteCmd(addrR2), "commit Promoted "+addrR2)
	from = e.mark()
	e.tick(100 * time.Millisecond)
	// parallel-syncs is 1, yet every instance is sent REPLICAOF in this one
	// pass, each after its own committed step; the old master too.
	var sends []string
	for _, a := range []string{addrM, addrR1, addrR3, addrR4} {
		e.inOrder(from, "commit ReplicaReconfigured "+a+" SENT", replicaOf(a, addrR2))
		sends = append(sends, replicaOf(a, addrR2))
	}
	if got := e.writes(from); !slices.Equal(got, sends) {
		t.Fatalf("writes %q, want %q", got, sends)
	}
	e.finishFailover()
	e.noRejections()
	m = e.master()
	o := m.GetLastFailover()
	if m.GetAddress() != addrR2 || o.GetReason() != fsm.ReasonEmptyRestart || o.GetResult() != fsm.ResultPromoted || o.GetOldMaster() != addrM {
		t.Fatalf("address %s, outcome %v", m.GetAddress(), o)
	}
	if in := e.info(addrM); in.Role != probe.RoleSlave || in.MasterPort != 6379 || in.MasterHost != "10.0.0.3" {
		t.Fatalf("the old master follows %s:%d as %s", in.MasterHost, in.MasterPort, in.Role)
	}
	// The new master's run id is on record: no +reboot for it.
	e.tick(time.Second)
	if got := eventsOf(e.master(), "+reboot"); len(got) != 1 {
		t.Fatalf("reboot events after the failover: %q", got)
	}
}

// A master restarted with its data (persistence: keys back, its old history
// kept as the previous one) is kept: +reboot, and nothing else.
func TestRestartWithDataKeepsTheMaster(t *testing.T) {
	e := newEnv(t, nil)
	e.withData()
	e.step()
	e.restartMaster(true)
	from := e.mark()
	for range 5 {
		e.tick(time.Second)
	}
	if got := e.since(from, "commit BeginFailover", "redis "+addrR1+" INFO"); len(got) != 0 {
		t.Fatalf("a master restarted with its data: %q", got)
	}
	if got := e.writes(from); len(got) != 0 {
		t.Fatalf("writes: %q", got)
	}
	if got := eventsOf(e.master(), "+reboot"); len(got) != 1 {
		t.Fatalf("reboot events %q", got)
	}
}

// A master restarted from its RDB file shows no key and a new history
// while it is still loading: it is left alone until the load ends, and then
// kept, since its keys are back.
func TestRestartStillLoadingKeepsTheMaster(t *testing.T) {
	e := newEnv(t, nil)
	e.withData()
	e.step()
	e.restartMaster(false)
	e.setInfo(addrM, func(in *probe.Info) { in.Loading = true })
	from := e.mark()
	for range 3 {
		e.tick(time.Second)
	}
	e.setInfo(addrM, func(in *probe.Info) {
		in.Loading, in.Keys = false, 1000
		in.MasterReplID2, in.SecondReplOffset, in.MasterReplOffset = historyOld, 1001, 1000
	})
	for range 3 {
		e.tick(time.Second)
	}
	if got := e.since(from, "commit BeginFailover"); len(got) != 0 || len(e.writes(from)) != 0 {
		t.Fatalf("a master loading its data: %q, writes %q", got, e.writes(from))
	}
}

// A master restarted empty whose replicas already resynced from it: nothing
// is left to save, so nothing happens (the leader does not even look
// closer, because the probe's view shows no replica at risk).
func TestEmptyRestartTooLate(t *testing.T) {
	e := newEnv(t, nil)
	e.withData()
	e.step()
	e.restartMaster(false)
	for _, a := range replicaAddrs {
		e.resynced(a)
	}
	from := e.mark()
	for range 5 {
		e.tick(time.Second)
	}
	if got := e.since(from, "commit BeginFailover", "redis "+addrR1+" INFO"); len(got) != 0 {
		t.Fatalf("after the replicas resynced: %q", got)
	}
	if e.master().GetAddress() != addrM {
		t.Fatal("failed over")
	}
}

// The probe's INFO of the replicas can predate the restart. When it shows
// them at risk but the leader's own INFO shows they already resynced, the
// leader decides on its own reading and keeps the master.
func TestEmptyRestartDecidesOnFreshInfo(t *testing.T) {
	e := newEnv(t, nil)
	e.withData()
	e.step()
	e.restartMaster(false)
	e.refresh()
	stale := e.obs.Observations() // the replicas still hold data here
	for _, a := range replicaAddrs {
		e.resynced(a)
	}
	e.refresh()
	e.obs.mu.Lock()
	for _, a := range replicaAddrs {
		e.obs.obs[a] = stale[a]
	}
	e.obs.mu.Unlock()
	from := e.mark()
	e.leader.Step(e.fsm.State())
	if e.count(from, redisCmd(addrR2, "INFO")) != 1 {
		t.Fatalf("the leader did not check the replicas:\n%s", e.dump(from))
	}
	if got := e.since(from, "commit BeginFailover"); len(got) != 0 || e.inFailover() {
		t.Fatalf("failed over on stale INFO: %q", got)
	}
}

// The ranking uses the leader's fresh INFO: r3 was behind r2 in the
// probe's view (800 against 900) but had caught up before the restart (950)
// and wins. A replica that does not answer the leader's INFO is judged on
// the probe's view: then r2 wins.
func TestEmptyRestartFreshOffsetsRank(t *testing.T) {
	for _, tc := range []struct {
		name     string
		r3Answer bool
		winner   string
	}{{"r3 answers", true, addrR3}, {"r3 does not answer", false, addrR2}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.withData()
			e.step()
			e.restartMaster(false)
			e.refresh()
			e.setInfo(addrR3, func(in *probe.Info) { in.SlaveReplOffset = 950 })
			if !tc.r3Answer {
				e.redis.setHook(addrR3, "INFO", func(context.Context) error { return errors.New("i/o timeout") })
			}
			from := e.mark()
			e.leader.Step(e.fsm.State())
			e.inOrder(from, "commit BeginFailover empty-restart "+tc.winner)
		})
	}
}

// ProbeOf carries what the reboot rule and the empty-restart decision read,
// and MasterProbe the group's master-reboot-down-after-period.
func TestProbeOfRebootFields(t *testing.T) {
	now := t0
	o := probe.Observation{Since: now.Add(-time.Hour), LastPong: now.Add(-time.Minute), RebootedAt: now.Add(-time.Second),
		Info: &probe.Info{Role: probe.RoleMaster, MasterReplID: historyNew, MasterReplID2: historyOld, SecondReplOffset: 7,
			HasKeyspace: true, Keys: 3, MasterReplOffset: 9, Loading: true}, InfoAt: now}
	p := MasterProbe(ProbeOf(o, true), &fsmv1.Master{Settings: &fsmv1.MasterSettings{MasterRebootDownAfterPeriodMs: 5000}})
	if !p.LastPong.Equal(o.LastPong) || !p.RebootedAt.Equal(o.RebootedAt) || p.RebootDownAfter != 5*time.Second ||
		p.ReplID != historyNew || p.ReplID2 != historyOld || p.ReplID2Offset != 7 || !p.KeysKnown || p.Keys != 3 || p.Offset != 9 || !p.Loading {
		t.Fatalf("probe %+v", p)
	}
}
