package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/spf13/cobra"
)

func explainCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "explain NAME",
		Short: "Say what the leader would do now for a master, and why",
		Long: `explain asks the leader what it would do now for a master, and why:
each node's vote against the quorum (a vote counts when it is down, about
the current master and at most 5s old), TILT, maintenance, the anti-flap
wait (2 x failover-timeout after the last attempt), a failover in progress,
and each replica's eligibility with the rule that excludes it and the
ranking (priority, then offset, then run id).

The decision is one of: none (the master is not objectively down), failover
(one begins now), continue (one is in progress), blocked (one is due but
held back). "blocking" lists every condition that holds a failover back,
the deciding one first. Any node answers: a follower asks the leader, and
when none can be reached it says so (no-leader) and shows its own view.`,
		Example: `  coordinatorctl explain mymaster
  coordinatorctl explain mymaster -o json`,
		Args: exactArgs("NAME"),
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			resp, err := callExplain(ctx, c, &coordinatorv1.ExplainRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return show(a, resp, renderExplain)
		}),
	}
}

func callExplain(ctx context.Context, c *client, req *coordinatorv1.ExplainRequest) (*coordinatorv1.ExplainResponse, error) {
	var resp *coordinatorv1.ExplainResponse
	err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
		resp, err = api.Explain(ctx, req)
		return err
	})
	return resp, err
}

func age(d time.Duration) string { return d.Round(time.Millisecond).String() }

// renderExplain shows the decision first, then the evidence: votes,
// replicas (ranked), and the failover in progress.
func renderExplain(w io.Writer, r *coordinatorv1.ExplainResponse) error {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row("master", fmt.Sprintf("%s at %s, epoch %d", r.GetMaster(), r.GetAddress(), r.GetEpoch()))
	view := "leader " + r.GetNodeId()
	if !r.GetFromLeader() {
		view = "node " + r.GetNodeId() + " (not the leader's view)"
	}
	t.row("view", fmt.Sprintf("%s, index %d, at %s", view, r.GetIndex(), timestamp(r.GetAt())))
	t.row("decision", r.GetAction()+": "+oneLine(r.GetSummary()))
	for _, c := range r.GetBlocking() {
		t.row("blocking", c.GetCode()+": "+oneLine(c.GetDetail()))
	}
	for _, n := range r.GetNotes() {
		t.row("note", oneLine(n))
	}
	t.row("candidate", r.GetCandidate())
	t.row("down-votes", fmt.Sprintf("%d of quorum %d (committed odown: %s)", r.GetDownVotes(), r.GetQuorum(), yesNo(r.GetOdown())))
	tilt := "no"
	if r.GetTilt() {
		tilt = "yes, until " + timestamp(r.GetTiltUntil())
	}
	t.row("tilt", tilt)
	t.row("maintenance", yesNo(r.GetMaintenance()))
	t.row("last-failover", timestamp(r.GetLastFailoverAt()))
	wait := "none"
	if d := r.GetAntiFlapWait(); d != nil {
		wait = age(d.AsDuration())
	}
	t.row("anti-flap-wait", wait)
	if f := r.GetFailover(); f != nil {
		t.row("failover", fmt.Sprintf("%s (%s), candidate %s, started %s", f.GetPhase(), f.GetReason(), f.GetCandidate(), timestamp(f.GetStartedAt())))
	} else {
		t.row("failover", "none in progress")
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w, "NODE", "VOTE", "COUNTED", "AGE", "ABOUT", "REASON")
	for _, v := range r.GetVotes() {
		vote := "up"
		if v.GetDown() {
			vote = "down"
		}
		t.row(v.GetNodeId(), vote, yesNo(v.GetCounted()), age(v.GetAge().AsDuration()), v.GetAddress(), oneLine(v.GetReason()))
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	return renderRanking(w, r)
}

// renderRanking is the replica table: eligible ones best first, then the
// excluded ones with the rule that excluded each.
func renderRanking(w io.Writer, r *coordinatorv1.ExplainResponse) error {
	t := newTable(w, "RANK", "REPLICA", "PRIORITY", "OFFSET", "LAG", "RUN-ID", "EXCLUDED")
	for _, rep := range r.GetReplicas() {
		rank := ""
		if rep.GetEligible() {
			rank = strconv.Itoa(int(rep.GetRank()))
		}
		t.row(rank, rep.GetAddress(), strconv.Itoa(int(rep.GetPriority())), strconv.FormatInt(rep.GetOffset(), 10),
			strconv.FormatInt(rep.GetLag(), 10), rep.GetRunId(), oneLine(rep.GetReason()))
	}
	return t.flush()
}

// renderPlan is failover --dry-run: what the request would do, then the
// ranking it chose from.
func renderPlan(w io.Writer, r *coordinatorv1.ExplainResponse) error {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row("master", fmt.Sprintf("%s at %s, epoch %d", r.GetMaster(), r.GetAddress(), r.GetEpoch()))
	mode := "forced (a plain promotion; writes acknowledged meanwhile can be lost)"
	if r.GetCoordinated() {
		mode = "coordinated (FAILOVER TO: no acknowledged write lost)"
	}
	t.row("mode", mode)
	t.row("promote", r.GetCandidate())
	t.row("plan", oneLine(r.GetSummary()))
	for _, c := range r.GetBlocking() {
		t.row("blocking", c.GetCode()+": "+oneLine(c.GetDetail()))
	}
	for _, n := range r.GetNotes() {
		t.row("note", oneLine(n))
	}
	t.row("maintenance", yesNo(r.GetMaintenance()))
	view := "leader " + r.GetNodeId()
	if !r.GetFromLeader() {
		view = "node " + r.GetNodeId() + " (not the leader's view)"
	}
	t.row("view", view)
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return renderRanking(w, r)
}
