package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// failoverWaitMargin is added to the longest a failover can take (the
// catch-up time and twice failover-timeout: promotion, then re-pointing)
// for the call's deadline.
const failoverWaitMargin = 15 * time.Second

func failoverCmd(a *app) *cobra.Command {
	var (
		to      string
		force   bool
		timeout msDuration
		dryRun  bool
	)
	cmd := &cobra.Command{
		Use:   "failover NAME [--to HOST:PORT] [--force] [--timeout DUR] [--dry-run]",
		Short: "Hand a master over to one of its replicas and wait for the outcome",
		Long: `failover promotes a replica of a master that may well be healthy, and waits
until the failover has ended (the old master then follows the new one).

By default it is coordinated, so that no acknowledged write is lost: the old
master pauses writes (CLIENT PAUSE WRITE) only until the replica has every
one, then the replica is promoted and the old master follows it; the pause
lasts tens of milliseconds. A server that cannot pause writes is handed over
with Redis's FAILOVER TO instead (the "handover" row says which was used).
If the replica has not caught up within
--timeout the failover is rolled back: the old master keeps serving and the
epoch does not change.

--force promotes at once without waiting for the replica, like an automatic
failover (and SENTINEL FAILOVER): writes the old master acknowledged
meanwhile can be lost. It is the way to fail over a master that is down.

Without --to the leader picks the replica by Sentinel's rules; a replica
named with --to must pass the same rules.

In this command --timeout is the catch-up time (default 5s, at most the
master's failover-timeout); the call itself waits as long as the failover
may take. An aborted failover prints its outcome and exits with code 5.

A master in maintenance ('set NAME maintenance yes') refuses a failover
that is not forced.

--dry-run prints the plan without acting: the replica that would be
promoted, coordinated or forced, and every condition that would refuse
the request (see 'coordinatorctl explain').`,
		Example: `  coordinatorctl failover mymaster
  coordinatorctl failover mymaster --to 10.0.0.6:6379 --timeout 10s
  coordinatorctl failover mymaster --force -o json
  coordinatorctl failover mymaster --dry-run`,
		Args: exactArgs("NAME"),
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			if to != "" {
				if addrs, err := parseAddrs(to); err != nil || len(addrs) != 1 {
					return usageErrorf("--to: %q is not one host:port", to)
				}
			}
			if force && timeout.set {
				return usageErrorf("--timeout is the catch-up time of a coordinated failover; --force does not wait for the replica")
			}
			req := &coordinatorv1.FailoverRequest{Name: args[0], To: to, Force: force}
			if timeout.set {
				req.Timeout = durationpb.New(timeout.d)
			}
			if dryRun {
				resp, err := callExplain(ctx, c, &coordinatorv1.ExplainRequest{Name: args[0],
					Manual: &coordinatorv1.ExplainManual{To: to, Force: force, Timeout: req.Timeout}})
				if err != nil {
					return err
				}
				return show(a, resp, renderPlan)
			}
			wait, err := failoverWait(ctx, c, args[0], timeout)
			if err != nil {
				return err
			}
			var resp *coordinatorv1.FailoverResponse
			c.timeout = wait
			err = c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.Failover(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if err := show(a, resp, func(w io.Writer, r *coordinatorv1.FailoverResponse) error { return renderFailover(w, args[0], r) }); err != nil {
				return err
			}
			if out := resp.GetOutcome(); out.GetResult() != "promoted" {
				return &exitError{code: exitAborted, err: fmt.Errorf("failover of %s aborted: %s %s", args[0], out.GetEvent(), out.GetDetail())}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "host:port of the replica to promote (default: the best by Sentinel's rules)")
	f.BoolVar(&force, "force", false, "promote at once, without waiting for the replica to catch up (may lose writes)")
	f.Var(&timeout, "timeout", "how long the replica may take to catch up, e.g. 10s (default 5s)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan (the replica, coordinated or forced, what would refuse it) without acting")
	return cmd
}

// failoverWait is the deadline of the Failover call: long enough for the
// whole failover, read from the master's failover-timeout, and never
// shorter than the global --timeout.
func failoverWait(ctx context.Context, c *client, name string, catchUp msDuration) (time.Duration, error) {
	var m *coordinatorv1.GetMasterResponse
	err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
		m, err = api.GetMaster(ctx, &coordinatorv1.GetMasterRequest{Name: name})
		return err
	})
	if err != nil {
		return 0, err
	}
	wait := 2*m.GetMaster().GetSettings().GetFailoverTimeout().AsDuration() + failoverWaitMargin
	if catchUp.set {
		wait += catchUp.d
	}
	return max(wait, c.timeout), nil
}

// renderFailover shows the outcome as name/value rows, like 'master'.
func renderFailover(w io.Writer, name string, resp *coordinatorv1.FailoverResponse) error {
	o := resp.GetOutcome()
	mode := "forced"
	if o.GetCoordinated() {
		mode = "coordinated"
	}
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row("master", name)
	t.row("result", o.GetResult())
	t.row("mode", mode)
	t.row("handover", o.GetHandover())
	t.row("old-master", o.GetOldMaster())
	t.row("candidate", o.GetCandidate())
	t.row("new-master", o.GetNewMaster())
	t.row("epoch", u64(o.GetEpoch()))
	t.row("event", o.GetEvent())
	t.row("detail", oneLine(o.GetDetail()))
	t.row("started", when(o.GetStartedAt()))
	t.row("finished", when(o.GetFinishedAt()))
	t.row("took", took(o.GetStartedAt(), o.GetFinishedAt()))
	t.row("index", u64(resp.GetIndex()))
	return t.flush()
}

func when(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339Nano)
}

func took(from, to *timestamppb.Timestamp) string {
	if from == nil || to == nil {
		return ""
	}
	return to.AsTime().Sub(from.AsTime()).Round(time.Millisecond).String()
}
