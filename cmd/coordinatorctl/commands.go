package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// exactArgs names the expected arguments in its complaint, which says more
// than cobra's "accepts 2 arg(s)".
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == len(names):
			return nil
		case len(names) == 0:
			return fmt.Errorf("%s takes no arguments, got %q", cmd.Name(), args)
		}
		return fmt.Errorf("want %s, got %d argument(s)", strings.Join(names, " "), len(args))
	}
}

func statusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every node's own view: state, leader, term and indexes",
		Long: `status asks one node for the cluster's status. That node asks every member
for its own view (briefly: a member that does not answer is shown as
unreachable, with the reason) and reports them all.`,
		Example: `  coordinatorctl status
  coordinatorctl status -o json --addr 127.0.0.1:7102`,
		Args: exactArgs(),
		RunE: a.runE(func(ctx context.Context, c *client, _ []string) error {
			var resp *coordinatorv1.StatusResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.Status(ctx, &coordinatorv1.StatusRequest{})
				return err
			})
			if err != nil {
				return err
			}
			return show(a, resp, renderStatus)
		}),
	}
}

func membersCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "members",
		Short:   "List the Raft configuration with each member's addresses",
		Example: `  coordinatorctl members`,
		Args:    exactArgs(),
		RunE: a.runE(func(ctx context.Context, c *client, _ []string) error {
			var resp *coordinatorv1.ListMembersResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.ListMembers(ctx, &coordinatorv1.ListMembersRequest{})
				return err
			})
			if err != nil {
				return err
			}
			return show(a, resp, renderMembers)
		}),
	}
}

func removeNodeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "remove-node ID",
		Short: "Remove a node from the cluster",
		Long: `remove-node takes a node out of the Raft configuration; the node may be the
leader, which then hands over. Stop the node's process afterwards: a removed
node that keeps running still answers reads, from a state that no longer
changes.`,
		Example: `  coordinatorctl remove-node n4`,
		Args:    exactArgs("ID"),
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			var resp *coordinatorv1.RemoveNodeResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.RemoveNode(ctx, &coordinatorv1.RemoveNodeRequest{Id: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			return a.confirm(resp, fmt.Sprintf("removed node %s from the cluster (index %d)", args[0], resp.GetIndex()))
		}),
	}
}

func monitorCmd(a *app) *cobra.Command {
	var (
		quorum          uint32
		downAfter       msDuration
		failoverTimeout msDuration
		parallelSyncs   positiveUint32
		authUser        string
		authPass        string
		maxLag          int64
		pingPeriod      msDuration
		rebootDownAfter msDuration
		maintenance     bool
		fence           string
		fenceLag        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "monitor NAME HOST:PORT --quorum N",
		Short: "Start monitoring a master",
		Long: `monitor starts monitoring the Redis master at HOST:PORT under NAME, like
SENTINEL MONITOR. Settings left out take Sentinel's defaults (down-after 30s,
failover-timeout 3m, parallel-syncs 1, no lag limit, no
master-reboot-down-after-period); change them later with
'coordinatorctl set'. The server checks every value.`,
		Example: `  coordinatorctl monitor mymaster 127.0.0.1:6379 --quorum 2
  coordinatorctl monitor cache 10.0.0.5:6380 --quorum 2 --down-after 5s --failover-timeout 1m --auth-pass "$REDIS_PASS"`,
		Args: exactArgs("NAME", "HOST:PORT"),
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			req := &coordinatorv1.MonitorRequest{
				Name:    args[0],
				Address: args[1],
				Settings: &coordinatorv1.MasterSettings{
					Quorum:        quorum,
					ParallelSyncs: parallelSyncs.n,
					AuthUser:      authUser,
					AuthPass:      authPass,
					MaxLagBytes:   maxLag,
					Maintenance:   maintenance,
				},
			}
			if downAfter.set {
				req.Settings.DownAfter = durationpb.New(downAfter.d)
			}
			if failoverTimeout.set {
				req.Settings.FailoverTimeout = durationpb.New(failoverTimeout.d)
			}
			if pingPeriod.set {
				req.Settings.PingPeriod = durationpb.New(pingPeriod.d)
			}
			if rebootDownAfter.set {
				req.Settings.MasterRebootDownAfterPeriod = durationpb.New(rebootDownAfter.d)
			}
			switch fence {
			case "yes":
				req.Settings.Fence = proto.Bool(true)
			case "no":
				req.Settings.Fence = proto.Bool(false)
			default:
				return usageErrorf("--fence %q: want yes or no", fence)
			}
			if fenceLag != 0 {
				req.Settings.FenceLag = durationpb.New(fenceLag)
			}
			var resp *coordinatorv1.MonitorResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.Monitor(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return a.confirm(resp, fmt.Sprintf("monitoring %s at %s (index %d)", args[0], args[1], resp.GetIndex()))
		}),
	}
	f := cmd.Flags()
	f.Uint32Var(&quorum, "quorum", 0, "nodes that must see the master down to agree it is down (required)")
	f.Var(&downAfter, "down-after", "how long without a valid reply makes the master down for a node, e.g. 5s (default 30s)")
	f.Var(&failoverTimeout, "failover-timeout", "bound on each failover step, e.g. 1m (default 3m)")
	f.Var(&parallelSyncs, "parallel-syncs", "replicas re-pointed at once after a failover (default 1)")
	f.StringVar(&authUser, "auth-user", "", "user for AUTH to the master and its replicas")
	f.StringVar(&authPass, "auth-pass", "", "password for AUTH to the master and its replicas (reads never show it)")
	f.Int64Var(&maxLag, "max-lag", 0, "bytes of replication lag beyond which a replica is never promoted automatically (0: no limit)")
	f.Var(&pingPeriod, "ping-period", "how often every node PINGs the master and its replicas, e.g. 100ms (default: each node's --ping-period, or down-after/10 within 50ms and 1s)")
	f.Var(&rebootDownAfter, "master-reboot-down-after-period", "after a restart of the master, how long it may answer only LOADING or MASTERDOWN before it is down, e.g. 30s (default off)")
	f.BoolVar(&maintenance, "maintenance", false, "start in maintenance: no automatic failover or repair until 'set NAME maintenance no'")
	f.StringVar(&fence, "fence", "yes", "yes: keep min-replicas-to-write on the master equal to its good replicas, and announce a promotion only once the old master can no longer acknowledge writes; no: leave min-replicas-to-write at 0")
	f.DurationVar(&fenceLag, "fence-lag", 0, "min-replicas-max-lag set on the master, whole seconds, e.g. 2s (default 2s)")
	_ = cmd.MarkFlagRequired("quorum")
	return cmd
}

func removeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "remove NAME",
		Short:   "Stop monitoring a master",
		Example: `  coordinatorctl remove mymaster`,
		Args:    exactArgs("NAME"),
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			var resp *coordinatorv1.RemoveResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.Remove(ctx, &coordinatorv1.RemoveRequest{Name: args[0]})
				return err
			})
			if err != nil {
				return err
			}
			return a.confirm(resp, fmt.Sprintf("removed %s (index %d)", args[0], resp.GetIndex()))
		}),
	}
}

func setCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "set NAME KEY VALUE [KEY VALUE...]",
		Short: "Change settings of a master, all or nothing",
		Long: `set changes settings of a master, like SENTINEL SET, except that either every
option applies or none does. Options, with Sentinel's names:

  quorum                   1 or more
  down-after-milliseconds  milliseconds (1500) or a Go duration (1.5s); 100ms to 24h
  failover-timeout         milliseconds or a Go duration; 100ms to 24h
  parallel-syncs           1 or more
  auth-user, auth-pass     credentials for the master and its replicas
  max-lag                  bytes; 0 means no limit
  ping-period              how often every node PINGs the master and its
                           replicas: milliseconds or a Go duration, 10ms to
                           24h (capped by down-after); 0 means each node's
                           --ping-period, or down-after/10 within 50ms and 1s
  master-reboot-down-after-period
                           milliseconds or a Go duration; 0 (the default) turns
                           it off. After a restart of the master (a new run id),
                           this long with only LOADING or MASTERDOWN replies to
                           PING, no PONG, makes the master down.
  notification-script      absolute path of a script run with <event-type>
                           <event-description> for every warning-level event
  client-reconfig-script   absolute path of a script run with <master-name>
                           <role> <state> <from-ip> <from-port> <to-ip>
                           <to-port> at every promotion
  webhook-url              http:// or https:// URL every event is POSTed to
                           as JSON; an empty value removes a hook
  maintenance              yes or no: yes suspends automatic failovers and
                           topology repairs of the master (detection goes
                           on); a manual failover then needs --force.
  fence                    yes (the default) or no: whether Raftinel keeps
                           min-replicas-to-write on the master and waits for
                           the old master's fence before announcing a promotion
  fence-lag                min-replicas-max-lag set on the master, whole
                           seconds (2 or 2s); 1 to 60, default 2

Scripts are refused unless every node runs with --allow-script-reconfig and
has the file, executable; the error names the node that does not.
The server checks the names and values.`,
		Example: `  coordinatorctl set mymaster quorum 3
  coordinatorctl set mymaster down-after-milliseconds 5000 failover-timeout 1m
  coordinatorctl set mymaster ping-period 100ms
  coordinatorctl set mymaster client-reconfig-script /etc/raftinel/haproxy-reconfig.sh
  coordinatorctl set mymaster maintenance yes`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("want NAME KEY VALUE [KEY VALUE...], got no argument")
			}
			_, err := optionPairs(args[1:])
			return err
		},
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			pairs, err := optionPairs(args[1:])
			if err != nil {
				return usageErrorf("%v", err)
			}
			req := &coordinatorv1.SetRequest{Name: args[0]}
			for _, p := range pairs {
				req.Options = append(req.Options, &coordinatorv1.Option{Key: p[0], Value: p[1]})
			}
			var resp *coordinatorv1.SetResponse
			err = c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.Set(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return a.confirm(resp, fmt.Sprintf("%s: set %s (index %d)", args[0], describeOptions(pairs), resp.GetIndex()))
		}),
	}
}

// minIndexFlag adds --min-index to a read: without it a follower answers
// from whatever it has applied, which can be older than a write the
// operator just made through another node.
func minIndexFlag(cmd *cobra.Command, p *uint64) {
	cmd.Flags().Uint64Var(p, "min-index", 0, "wait (within --timeout) until the node has applied this Raft index, e.g. the index a write printed")
}

func consistency(minIndex uint64) *coordinatorv1.ReadConsistency {
	if minIndex == 0 {
		return nil
	}
	return &coordinatorv1.ReadConsistency{MinIndex: minIndex}
}

func mastersCmd(a *app) *cobra.Command {
	var minIndex uint64
	cmd := &cobra.Command{
		Use:   "masters",
		Short: "List every monitored master",
		Long: `masters lists the monitored masters as the node asked knows them. A node that
is behind shows an older state; the JSON form carries the Raft index it
reflects. --min-index makes it wait until it has caught up with a write.`,
		Example: `  coordinatorctl masters
  coordinatorctl masters -o json
  coordinatorctl masters --addr 127.0.0.1:7103 --min-index 12`,
		Args: exactArgs(),
		RunE: a.runE(func(ctx context.Context, c *client, _ []string) error {
			var resp *coordinatorv1.ListMastersResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.ListMasters(ctx, &coordinatorv1.ListMastersRequest{Consistency: consistency(minIndex)})
				return err
			})
			if err != nil {
				return err
			}
			return show(a, resp, renderMasters)
		}),
	}
	minIndexFlag(cmd, &minIndex)
	return cmd
}

func masterCmd(a *app) *cobra.Command {
	var minIndex uint64
	cmd := &cobra.Command{
		Use:   "master NAME",
		Short: "Show one master: settings, replicas, votes, failover journal and latest events",
		Long: `master shows one master with every setting under the name 'set' takes, then
what the cluster observed: each replica (role, the master it follows, link,
offset, lag behind the master, priority, flags), each node's down vote, the
failover in progress if any, and the latest events (-o json has every
stored event). The password is never shown, only whether one is set. Like
'masters', the node asked answers from its own state; --min-index makes it
catch up first.`,
		Example: `  coordinatorctl master mymaster
  coordinatorctl master mymaster -o json
  coordinatorctl master mymaster --min-index 12`,
		Args: exactArgs("NAME"),
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			var resp *coordinatorv1.GetMasterDetailResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.GetMasterDetail(ctx, &coordinatorv1.GetMasterDetailRequest{Name: args[0], Consistency: consistency(minIndex)})
				return err
			})
			if err != nil {
				return err
			}
			return show(a, resp, renderMasterDetail)
		}),
	}
	minIndexFlag(cmd, &minIndex)
	return cmd
}
