package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"google.golang.org/grpc"

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

func snapshotCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save a live backup of the cluster's state, or inspect one",
		Long: `snapshot save asks the leader for a snapshot of the replicated state (every
master, its settings, epoch, replicas and failover journal, and the
members) at a committed index, and writes it to FILE with its index, term
and SHA-256. snapshot inspect reads such a file and checks it.

Restore a file into a NEW cluster with 'coordinator --restore FILE' on the
first node (an empty data directory); the others then join it.

The file holds every master's auth-pass in clear, as the Raft log does: it
is written with mode 0600; keep it as you keep the data directories.`,
		Example: `  coordinatorctl snapshot save backup.snap
  coordinatorctl snapshot inspect backup.snap`,
	}
	cmd.AddCommand(snapshotSaveCmd(a), snapshotInspectCmd(a))
	return cmd
}

func snapshotSaveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Write a snapshot of the cluster's state, taken by the leader, to FILE",
		Long: `save asks the leader for a snapshot (any node forwards the request) and
writes it to FILE, mode 0600. FILE must not exist. The leader takes the
snapshot through Raft, as it does on its own from time to time; failovers
go on meanwhile.`,
		Example: `  coordinatorctl snapshot save backup-$(date +%F).snap`,
		Args:    exactArgs("FILE"),
		RunE: a.runE(func(ctx context.Context, c *client, args []string) error {
			path := args[0]
			if _, err := os.Lstat(path); err == nil {
				return &exitError{code: exitInvalid, err: fmt.Errorf("%s exists: choose another name or remove it first", path)}
			}
			var resp *coordinatorv1.SnapshotSaveResponse
			err := c.call(ctx, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) (err error) {
				resp, err = api.SnapshotSave(ctx, &coordinatorv1.SnapshotSaveRequest{}, grpc.MaxCallRecvMsgSize(maxSnapshotReply))
				return err
			})
			if err != nil {
				return err
			}
			if sum := sha256.Sum256(resp.GetState()); !bytes.Equal(sum[:], resp.GetSha256()) {
				return &exitError{code: exitFailure, err: fmt.Errorf("the snapshot from %s was damaged on the way (SHA-256 mismatch): try again", resp.GetLeaderId())}
			}
			h := fsm.SnapshotHeader{Index: resp.GetIndex(), Term: resp.GetTerm(), LeaderID: resp.GetLeaderId(),
				TakenAt: time.Unix(0, resp.GetTakenAtUnixNanos()).UTC(), LogFormat: resp.GetLogFormat(), Version: resp.GetVersion()}
			if err := writeSnapshotFile(path, h, resp.GetState()); err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			return a.confirm(resp, fmt.Sprintf("saved the state at index %d (term %d, %d bytes, SHA-256 %x) from leader %s to %s",
				resp.GetIndex(), resp.GetTerm(), len(resp.GetState()), resp.GetSha256(), resp.GetLeaderId(), path))
		}),
	}
}

// maxSnapshotReply is the largest snapshot save accepts.
const maxSnapshotReply = 1 << 30

// writeSnapshotFile writes the file under a temporary name in the same
// directory, syncs it and renames it into place, so a crash never leaves a
// half-written backup under the final name.
func writeSnapshotFile(path string, h fsm.SnapshotHeader, state []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := fsm.WriteSnapshotFile(tmp, h, state); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil { // unlike rename, never replaces a file
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func snapshotInspectCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check a snapshot file and show its index, checksum, masters and epochs",
		Long: `inspect reads a snapshot file without contacting the cluster: it checks the
format, the length and the SHA-256, decodes the state and checks it as a
restore would, then prints the header, the members and every master with
its address and epoch. A damaged file is refused with the reason (exit 4).`,
		Example: `  coordinatorctl snapshot inspect backup.snap`,
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			defer f.Close()
			snap, err := fsm.ReadSnapshotFile(f)
			if err != nil {
				return &exitError{code: exitInvalid, err: fmt.Errorf("%s: %w", args[0], err)}
			}
			return renderSnapshot(a.stdout, args[0], snap)
		},
	}
}

func renderSnapshot(w io.Writer, path string, snap *fsm.SnapshotFile) error {
	h := snap.Header
	st := snap.State
	var nodes []string
	for id := range st.GetNodes() {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	fmt.Fprintf(w, "file:        %s\n", path)
	fmt.Fprintf(w, "index:       %d (term %d; last command applied %d)\n", h.Index, h.Term, st.GetAppliedIndex())
	fmt.Fprintf(w, "taken:       %s by %s (log format %d, version %s)\n", h.TakenAt.Format(time.RFC3339), h.LeaderID, h.LogFormat, h.Version)
	fmt.Fprintf(w, "state:       %d bytes, SHA-256 %s: checksum ok\n", h.StateBytes, h.StateSHA256)
	fmt.Fprintf(w, "members:     %s\n", strings.Join(nodes, ", "))
	fmt.Fprintf(w, "masters:     %d\n\n", len(st.GetMasters()))
	t := newTable(w, "NAME", "ADDRESS", "EPOCH", "QUORUM", "DOWN-AFTER", "REPLICAS", "FAILOVER")
	names := make([]string, 0, len(st.GetMasters()))
	for name := range st.GetMasters() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := st.GetMasters()[name]
		failover := ""
		if m.GetFailover() != nil {
			failover = "in progress (" + strings.ToLower(strings.TrimPrefix(m.GetFailover().GetPhase().String(), "FAILOVER_PHASE_")) + ")"
		}
		t.row(name, m.GetAddress(), u64(m.GetEpoch()), u64(uint64(m.GetSettings().GetQuorum())),
			millis(time.Duration(m.GetSettings().GetDownAfterMs())*time.Millisecond), strconv.Itoa(len(m.GetReplicas())), failover)
	}
	return t.flush()
}
