package main

import (
	"context"
	"fmt"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/spf13/cobra"
)

func checkFormatCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "check-format",
		Short: "Check that the cluster writes log format 2 entries (every voter upgraded)",
		Long: `check-format commits an entry that changes nothing but is of log format 2,
the first format after versioning. The leader writes a kind of entry only
once every voter advertises a format that includes it, so this fails (exit 1,
naming the voters still behind) until the last node of a rolling upgrade
runs the new binary, and succeeds after. 'coordinatorctl status' shows each
node's format and which features are on.`,
		Example: `  coordinatorctl check-format`,
		Args:    exactArgs(),
		RunE: a.runE(func(ctx context.Context, c *client, _ []string) error {
			var resp *coordinatorv1.CheckLogFormatResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.CheckLogFormat(ctx, &coordinatorv1.CheckLogFormatRequest{})
				return err
			})
			if err != nil {
				return err
			}
			return a.confirm(resp, fmt.Sprintf("the cluster writes log format %d entries (index %d)", resp.GetFormat(), resp.GetIndex()))
		}),
	}
}
