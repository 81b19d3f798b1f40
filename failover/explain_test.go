package failover

import (
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	exMaster = "10.0.0.1:6379"
	exR1     = "10.0.0.2:6379"
	exR2     = "10.0.0.3:6379"
)

// healthyReplica is a replica every rule accepts at now.
func healthyReplica(addr string, priority int, offset int64, now time.Time) Candidate {
	return Candidate{Addr: addr, Probe: Probe{Since: now.Add(-time.Minute), LastValidReply: now, LinkUp: true,
		InfoAt: now, Role: RoleReplica, MasterLinkUp: true, Priority: priority, Offset: offset, RunID: "run-" + addr}}
}

// downInput is a master that is objectively down with two fresh votes of a
// quorum of 2 for 3 s, both replicas eligible (r1 ranks first on offset).
func downInput() ExplainInput {
	now := at(time.Minute)
	return ExplainInput{
		Now: now, MasterAddr: exMaster, Quorum: 2, VoteFreshness: 5 * time.Second,
		Votes: []ExplainVote{
			{Node: "n1", Address: exMaster, Down: true, At: now.Add(-time.Second), Reason: "no valid reply"},
			{Node: "n2", Address: exMaster, Down: true, At: now.Add(-2 * time.Second)},
			{Node: "n3", Address: exMaster, Down: false, At: now.Add(-3 * time.Second)},
		},
		ODownSince: now.Add(-3 * time.Second), FailoverTimeout: 10 * time.Second,
		MasterDownAt: now.Add(-4 * time.Second), MasterSDown: true,
		Selection: Selection{Now: now, DownAfter: time.Second, MasterOffset: 1000, MasterSDownSince: now.Add(-4 * time.Second),
			Replicas: []Candidate{healthyReplica(exR2, 100, 900, now), healthyReplica(exR1, 100, 1000, now)}},
	}
}

func upInput() ExplainInput {
	in := downInput()
	in.Votes = nil
	in.ODownSince, in.MasterDownAt, in.MasterSDown, in.Selection.MasterSDownSince = time.Time{}, time.Time{}, false, time.Time{}
	return in
}

func codes(ex Explanation) []string {
	var out []string
	for _, c := range ex.Blocking {
		out = append(out, c.Code)
	}
	return out
}

// Every blocking reason of the automatic decision, alone and together,
// with the action and the first condition the leader's order gives.
func TestExplainAutomatic(t *testing.T) {
	cases := []struct {
		name      string
		edit      func(in *ExplainInput)
		action    string
		blocking  []string
		candidate string
		summary   string
	}{
		{name: "failover begins", action: ActionFailover, candidate: exR1, summary: "a failover to " + exR1 + " begins now"},
		{name: "healthy master", edit: func(in *ExplainInput) { *in = upInput() }, action: ActionNone,
			blocking: []string{BlockNotODown}, candidate: exR1, summary: "not objectively down: nothing to do"},
		{name: "one vote short of the quorum", edit: func(in *ExplainInput) { in.Votes[1].Down = false; in.ODownSince = time.Time{} },
			action: ActionNone, blocking: []string{BlockNotODown}, candidate: exR1, summary: "not objectively down yet: no failover"},
		{name: "a stale vote does not count", edit: func(in *ExplainInput) { in.Votes[1].At = in.Now.Add(-6 * time.Second) },
			action: ActionNone, blocking: []string{BlockNotODown}, candidate: exR1},
		{name: "a vote about another address does not count", edit: func(in *ExplainInput) { in.Votes[0].Address = exR2 },
			action: ActionNone, blocking: []string{BlockNotODown}, candidate: exR1},
		{name: "tilt", edit: func(in *ExplainInput) { in.Tilt = Tilt{EnteredAt: in.Now.Add(-time.Second)} },
			action: ActionBlocked, blocking: []string{BlockTilt}, candidate: exR1, summary: "TILT until"},
		{name: "maintenance", edit: func(in *ExplainInput) { in.Maintenance = true },
			action: ActionBlocked, blocking: []string{BlockMaintenance}, candidate: exR1, summary: "maintenance"},
		{name: "anti-flap", edit: func(in *ExplainInput) { in.LastFailoverAt = in.Now.Add(-5 * time.Second) },
			action: ActionBlocked, blocking: []string{BlockAntiFlap}, candidate: exR1, summary: "the next may begin in 15s"},
		{name: "anti-flap over at exactly 2 x failover-timeout", edit: func(in *ExplainInput) { in.LastFailoverAt = in.Now.Add(-20 * time.Second) },
			action: ActionFailover, candidate: exR1},
		{name: "offsets settling", edit: func(in *ExplainInput) {
			in.ODownSince = in.Now.Add(-time.Second)
			in.Selection.Replicas[0].Probe.InfoAt = in.Now.Add(-5 * time.Second)
		}, action: ActionBlocked, blocking: []string{BlockOffsetsSettling}, candidate: exR1},
		{name: "offsets settled by the wait", edit: func(in *ExplainInput) {
			in.ODownSince = in.Now.Add(-OffsetSettleWait)
			in.Selection.Replicas[0].Probe.InfoAt = in.Now.Add(-5 * time.Second)
		}, action: ActionFailover, candidate: exR1},
		{name: "no good replica", edit: func(in *ExplainInput) {
			in.Selection.Replicas[0].Probe.Priority = 0
			in.Selection.Replicas[1].SDown = true
		}, action: ActionBlocked, blocking: []string{BlockNoGoodReplica},
			summary: exR1 + " sdown, " + exR2 + " priority 0"},
		{name: "no replica at all", edit: func(in *ExplainInput) { in.Selection.Replicas = nil },
			action: ActionBlocked, blocking: []string{BlockNoGoodReplica}, summary: "no known replica"},
		{name: "in progress", edit: func(in *ExplainInput) { in.InProgress = "promoting, candidate " + exR1 },
			action: ActionContinue, candidate: exR1, summary: "in progress (promoting"},
		{name: "in progress during tilt", edit: func(in *ExplainInput) {
			in.InProgress = "promoting, candidate " + exR1
			in.Tilt = Tilt{EnteredAt: in.Now}
		}, action: ActionBlocked, blocking: []string{BlockTilt}, candidate: exR1},
		{name: "everything at once, in the leader's order", edit: func(in *ExplainInput) {
			in.Tilt = Tilt{EnteredAt: in.Now.Add(-time.Second)}
			in.Maintenance = true
			in.LastFailoverAt = in.Now.Add(-time.Second)
			in.Selection.Replicas = nil
		}, action: ActionBlocked, blocking: []string{BlockTilt, BlockMaintenance, BlockAntiFlap, BlockNoGoodReplica}},
		{name: "maintenance on a healthy master", edit: func(in *ExplainInput) { *in = upInput(); in.Maintenance = true },
			action: ActionNone, blocking: []string{BlockNotODown, BlockMaintenance}, candidate: exR1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := downInput()
			if tc.edit != nil {
				tc.edit(&in)
			}
			ex := Explain(in)
			if ex.Action != tc.action || !slices.Equal(codes(ex), tc.blocking) || ex.Candidate != tc.candidate ||
				!strings.Contains(ex.Summary, tc.summary) {
				t.Fatalf("got action %q blocking %q candidate %q summary %q; want %q %q %q containing %q",
					ex.Action, codes(ex), ex.Candidate, ex.Summary, tc.action, tc.blocking, tc.candidate, tc.summary)
			}
		})
	}
}

func TestExplainVotesAndRanking(t *testing.T) {
	in := downInput()
	in.Votes[1].At = in.Now.Add(-6 * time.Second) // stale
	in.Selection.Replicas = append(in.Selection.Replicas, healthyReplica("10.0.0.4:6379", 0, 1000, in.Now))
	ex := Explain(in)
	if ex.DownVotes != 1 || ex.Quorum != 2 || ex.ODown {
		t.Fatalf("votes %d/%d odown %v", ex.DownVotes, ex.Quorum, ex.ODown)
	}
	var counted []bool
	for _, v := range ex.Votes {
		counted = append(counted, v.Counted)
	}
	if !slices.Equal(counted, []bool{true, false, false}) || ex.Votes[1].Age != 6*time.Second {
		t.Fatalf("votes %+v", ex.Votes)
	}
	want := []ReplicaLine{
		{Addr: exR1, Eligible: true, Rank: 1, Priority: 100, Offset: 1000, RunID: "run-" + exR1},
		{Addr: exR2, Eligible: true, Rank: 2, Priority: 100, Offset: 900, Lag: 100, RunID: "run-" + exR2},
		{Addr: "10.0.0.4:6379", Reason: "priority 0", Offset: 1000, RunID: "run-10.0.0.4:6379"},
	}
	if !slices.Equal(ex.Replicas, want) {
		t.Fatalf("replicas\n%+v\nwant\n%+v", ex.Replicas, want)
	}
}

// Every refusal of a manual failover (BeginManual's), and what a plan
// accepts.
func TestExplainManual(t *testing.T) {
	cases := []struct {
		name        string
		up          bool
		edit        func(in *ExplainInput)
		req         ManualRequest
		action      string
		blocking    []string
		candidate   string
		coordinated bool
		notes       int
	}{
		{name: "coordinated, best replica", up: true, req: ManualRequest{Handover: 5 * time.Second},
			action: ActionFailover, candidate: exR1, coordinated: true},
		{name: "named replica", up: true, req: ManualRequest{To: exR2, Force: true}, action: ActionFailover, candidate: exR2},
		{name: "no ODOWN and no anti-flap wait needed", up: true, edit: func(in *ExplainInput) { in.LastFailoverAt = in.Now },
			req: ManualRequest{Force: true}, action: ActionFailover, candidate: exR1},
		{name: "in progress", up: true, edit: func(in *ExplainInput) { in.InProgress = "handover" },
			req: ManualRequest{Force: true}, action: ActionBlocked, blocking: []string{BlockInProgress}, candidate: exR1},
		{name: "maintenance", up: true, edit: func(in *ExplainInput) { in.Maintenance = true },
			req: ManualRequest{Handover: time.Second}, action: ActionBlocked, blocking: []string{BlockMaintenance}, candidate: exR1, coordinated: true},
		{name: "maintenance, forced", up: true, edit: func(in *ExplainInput) { in.Maintenance = true },
			req: ManualRequest{Force: true}, action: ActionFailover, candidate: exR1},
		{name: "catch-up time too long", up: true, req: ManualRequest{Handover: 11 * time.Second},
			action: ActionBlocked, blocking: []string{BlockTimeoutTooLong}, candidate: exR1, coordinated: true},
		{name: "coordinated with the master down", req: ManualRequest{Handover: time.Second},
			action: ActionBlocked, blocking: []string{BlockMasterDown}, candidate: exR1, coordinated: true},
		{name: "forced with the master down", req: ManualRequest{Force: true}, action: ActionFailover, candidate: exR1},
		{name: "named replica rejected", up: true, edit: func(in *ExplainInput) { in.Selection.Replicas[0].Probe.Priority = 0 },
			req: ManualRequest{To: exR2, Force: true}, action: ActionBlocked, blocking: []string{BlockReplicaRejected}},
		{name: "named replica unknown", up: true, req: ManualRequest{To: "10.9.9.9:1", Force: true},
			action: ActionBlocked, blocking: []string{BlockUnknownReplica}},
		{name: "named replica is the master", up: true, req: ManualRequest{To: exMaster, Force: true},
			action: ActionBlocked, blocking: []string{BlockUnknownReplica}},
		{name: "no good replica", up: true, edit: func(in *ExplainInput) { in.Selection.Replicas = in.Selection.Replicas[:0] },
			req: ManualRequest{Force: true}, action: ActionBlocked, blocking: []string{BlockNoGoodReplica}},
		{name: "tilt delays, refuses nothing", up: true, edit: func(in *ExplainInput) { in.Tilt = Tilt{EnteredAt: in.Now} },
			req: ManualRequest{Force: true}, action: ActionFailover, candidate: exR1, notes: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := downInput()
			if tc.up {
				in = upInput()
			}
			if tc.edit != nil {
				tc.edit(&in)
			}
			in.Manual = &tc.req
			ex := Explain(in)
			if ex.Action != tc.action || !slices.Equal(codes(ex), tc.blocking) || ex.Candidate != tc.candidate ||
				ex.Coordinated != tc.coordinated || len(ex.Notes) != tc.notes {
				t.Fatalf("got action %q blocking %q candidate %q coordinated %v notes %q (%s)",
					ex.Action, codes(ex), ex.Candidate, ex.Coordinated, ex.Notes, ex.Summary)
			}
		})
	}
}
