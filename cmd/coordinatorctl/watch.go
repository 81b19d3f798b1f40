package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	raftinel "github.com/raftinel/raftinel/client"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/spf13/cobra"
)

// Streaming commands print one line per change as it comes: a fixed-width
// row (a table cannot be aligned before it ends), or with -o json one
// compact JSON object per line.

// timeFormat is UTC with milliseconds, the same width on every line.
const timeFormat = "2006-01-02T15:04:05.000Z"

// streamClient connects the Go client package, which hides reconnects,
// within --timeout.
func (a *app) streamClient(ctx context.Context) (*raftinel.Client, error) {
	addrs, err := parseAddrs(a.addr)
	if err != nil {
		return nil, err
	}
	opts, err := a.sec.dialOptions(addrs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(a.timeout))
	defer cancel()
	c, err := raftinel.NewWithConfig(ctx, raftinel.Config{Addrs: addrs, DialOptions: opts})
	if err != nil {
		return nil, fromCall(err)
	}
	return c, nil
}

// jsonLine writes v as one line of JSON.
func jsonLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// watchLine is watch's JSON object.
type watchLine struct {
	Time    time.Time `json:"time"`
	Name    string    `json:"name"`
	Address string    `json:"address"`
	Epoch   uint64    `json:"epoch"`
	Index   uint64    `json:"index"`
}

const watchRow = "%-24s  %-21s  %5s  %s\n"

func watchCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "watch NAME",
		Short: "Print a master's address now and at every change, until interrupted",
		Long: `watch prints the current address of a master, then a line at every change:
the time this command received it (UTC), the address, the epoch and the Raft
index. It prints the newest master it has, so an epoch replaced within moments
(before watch printed it) is not shown. When the node it streams from stops,
or ends the stream at its maximum stream age, watch goes on through another
node of --addr without printing an older epoch. It ends with exit code 3 when
the master is removed.`,
		Example: `  coordinatorctl watch mymaster
  coordinatorctl watch mymaster -o json | jq -r .address`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.streamClient(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			w := c.WatchMaster(ctx, args[0])
			defer w.Close()
			header := a.output != outputJSON
			for m := range w.Updates() {
				now := time.Now().UTC()
				if header {
					// Only once there is a row: a failure prints nothing on stdout.
					if _, err := fmt.Fprintf(a.stdout, watchRow, "TIME", "ADDRESS", "EPOCH", "INDEX"); err != nil {
						return err
					}
					header = false
				}
				if a.output == outputJSON {
					err = jsonLine(a.stdout, watchLine{Time: now, Name: m.Name, Address: m.Address, Epoch: m.Epoch, Index: m.Index})
				} else {
					_, err = fmt.Fprintf(a.stdout, watchRow, now.Format(timeFormat), m.Address, u64(m.Epoch), u64(m.Index))
				}
				if err != nil {
					return err
				}
			}
			return fromCall(w.Err())
		},
	}
}

const eventRow = "%-24s  %6s  %5s  %-34s  %s\n"

func printEventHeader(a *app) error {
	_, err := fmt.Fprintf(a.stdout, eventRow, "TIME", "SEQ", "EPOCH", "TYPE", "PAYLOAD")
	return err
}

func printEvent(a *app, e raftinel.Event) error {
	if a.output == outputJSON {
		return jsonLine(a.stdout, e)
	}
	payload := e.Payload
	if e.NodeID != "" {
		payload += " (node " + e.NodeID + ")"
	}
	if e.Actor != "" {
		payload += " (by " + e.Actor
		if e.ActorAddress != "" {
			payload += " from " + e.ActorAddress
		}
		payload += ")"
	}
	_, err := fmt.Fprintf(a.stdout, eventRow, e.Time.UTC().Format(timeFormat), u64(e.Seq), u64(e.Epoch), e.Type, payload)
	return err
}

func eventsCmd(a *app) *cobra.Command {
	var follow, replay bool
	cmd := &cobra.Command{
		Use:   "events [NAME]",
		Short: "Print the Sentinel events of one master or all, stored or as they happen",
		Long: `events prints Sentinel's events (+sdown, +odown, +switch-master, ...) with
their exact Sentinel payload: the time the leader stamped, the sequence
number, the master's epoch, the event type and the payload.

Without --follow it prints the stored history (the latest events of each
master, oldest first) and exits. With --follow it prints events as the node
applies them, until interrupted, going on through another node of --addr
without a gap or a repeat when the node stops; --replay prints the stored
history first.

With -o json every event is one JSON object per line: seq, time (RFC 3339),
type, payload, master, epoch and node_id (for +sdown and -sdown).`,
		Example: `  coordinatorctl events mymaster
  coordinatorctl events --follow
  coordinatorctl events mymaster --follow --replay -o json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("want at most one master NAME, got %d arguments", len(args))
			}
			if replay && !follow {
				return errors.New("--replay goes with --follow: without --follow events prints the stored history only")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			master := ""
			if len(args) == 1 {
				master = args[0]
			}
			if follow {
				return followEvents(cmd.Context(), a, master, replay)
			}
			return a.runE(func(ctx context.Context, c *client, _ []string) error {
				return storedEvents(ctx, a, c, master)
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "print events as they happen, until interrupted")
	cmd.Flags().BoolVar(&replay, "replay", false, "with --follow, print the stored history first")
	return cmd
}

func followEvents(ctx context.Context, a *app, master string, replay bool) error {
	c, err := a.streamClient(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	header := a.output != outputJSON
	err = c.WatchEvents(ctx, raftinel.EventsOptions{Master: master, Replay: replay}, func(e raftinel.Event) error {
		if header {
			if err := printEventHeader(a); err != nil {
				return err
			}
			header = false
		}
		return printEvent(a, e)
	})
	return fromCall(err)
}

// storedEvents prints the history every master keeps, merged in sequence
// order. One node answers all the reads, so they come from one state as
// far as a node's state moves on between two reads.
func storedEvents(ctx context.Context, a *app, c *client, master string) error {
	names := []string{master}
	if master == "" {
		var list *coordinatorv1.ListMastersResponse
		err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
			list, err = api.ListMasters(ctx, &coordinatorv1.ListMastersRequest{})
			return err
		})
		if err != nil {
			return err
		}
		names = names[:0]
		for _, m := range list.GetMasters() {
			names = append(names, m.GetName())
		}
	}
	var events []raftinel.Event
	for _, name := range names {
		var resp *coordinatorv1.GetMasterDetailResponse
		err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
			resp, err = api.GetMasterDetail(ctx, &coordinatorv1.GetMasterDetailRequest{Name: name})
			return err
		})
		var ee *exitError
		if master == "" && errors.As(err, &ee) && ee.code == exitNotFound {
			continue // removed since the list was read
		}
		if err != nil {
			return err
		}
		for _, e := range resp.GetDetail().GetEvents() {
			events = append(events, raftinel.Event{Seq: e.GetSeq(), Time: e.GetAt().AsTime(), Type: e.GetType(),
				Payload: e.GetPayload(), Master: e.GetMaster(), Epoch: e.GetEpoch(), NodeID: e.GetNodeId(),
				Actor: e.GetActor(), ActorAddress: e.GetActorAddress()})
		}
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Seq < events[j].Seq })
	if a.output != outputJSON {
		if err := printEventHeader(a); err != nil {
			return err
		}
	}
	for _, e := range events {
		if err := printEvent(a, e); err != nil {
			return err
		}
	}
	return nil
}

func transferLeadershipCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leadership [ID]",
		Short: "Hand Raft leadership to another voter",
		Long: `transfer-leadership asks the leader to hand over to the voter ID, or without
ID to the most up to date voter, with Raft's leadership transfer: the target
catches up and starts an election at once, so writes pause for about one
round trip instead of an election timeout. Use it before maintenance of the
leader's machine.`,
		Example: `  coordinatorctl transfer-leadership
  coordinatorctl transfer-leadership n2`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("want at most one node ID, got %d arguments", len(args))
			}
			return nil
		},
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			req := &coordinatorv1.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.Id = args[0]
			}
			var resp *coordinatorv1.TransferLeadershipResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.TransferLeadership(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			line := fmt.Sprintf("leadership moved from %s to %s", resp.GetPreviousLeaderId(), resp.GetLeaderId())
			if resp.GetLeaderId() == "" {
				line = fmt.Sprintf("%s handed leadership over; the new leader was not known yet (see 'coordinatorctl status')", resp.GetPreviousLeaderId())
			}
			return a.confirm(resp, line)
		}),
	}
}
