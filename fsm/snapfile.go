package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// The snapshot file (coordinatorctl snapshot save, coordinator --restore)
// is three parts:
//
//	raftinel-snapshot 1\n                  the magic line and the file format
//	{"index":...,"term":...,...}\n         SnapshotHeader as one line of JSON
//	<state_bytes bytes>                    coordinator.fsm.v1.State, protobuf binary
//
// state_sha256 in the header is the SHA-256 of the state bytes, in hex;
// nothing may follow them. The state holds every master's auth-pass in
// clear, as the Raft log and the data directory's snapshots do.
const snapshotMagic = "raftinel-snapshot 1"

// SnapshotHeader describes the state in a snapshot file.
type SnapshotHeader struct {
	// Index and Term are the Raft index and term of the last entry the
	// state reflects.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// LeaderID is the node that took the snapshot; TakenAt its clock then.
	LeaderID string    `json:"leader_id"`
	TakenAt  time.Time `json:"taken_at"`
	// LogFormat and Version are the leader binary's.
	LogFormat   uint32 `json:"log_format"`
	Version     string `json:"version,omitempty"`
	StateBytes  int64  `json:"state_bytes"`
	StateSHA256 string `json:"state_sha256"`
}

// SnapshotFile is a snapshot file read back and checked.
type SnapshotFile struct {
	Header SnapshotHeader
	State  *fsmv1.State
	// Raw is the state exactly as stored, which the checksum covers.
	Raw []byte
}

// WriteSnapshotFile writes a snapshot file of the state bytes; it fills
// StateBytes and StateSHA256 in the header itself.
func WriteSnapshotFile(w io.Writer, h SnapshotHeader, state []byte) error {
	sum := sha256.Sum256(state)
	h.StateBytes = int64(len(state))
	h.StateSHA256 = hex.EncodeToString(sum[:])
	head, err := json.Marshal(h)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(snapshotMagic + "\n")
	buf.Write(head)
	buf.WriteByte('\n')
	buf.Write(state)
	_, err = w.Write(buf.Bytes())
	return err
}

// maxSnapshotLine bounds the magic and header lines.
const maxSnapshotLine = 64 << 10

// Decode checks raw state bytes as ReadSnapshotFile checks a file's, for
// a snapshot at index.
func (f *SnapshotFile) Decode(raw []byte, index uint64) error {
	f.Raw = raw
	f.State = &fsmv1.State{}
	if err := proto.Unmarshal(raw, f.State); err != nil {
		return fmt.Errorf("decode state: %w", err)
	}
	if err := ValidateState(f.State); err != nil {
		return fmt.Errorf("state is invalid: %w", err)
	}
	if f.State.GetAppliedIndex() > index {
		return fmt.Errorf("state applied index %d is past the snapshot's index %d: the file is inconsistent", f.State.GetAppliedIndex(), index)
	}
	return nil
}

// ReadSnapshotFile reads a snapshot file and checks everything a restore
// relies on: the format, the length, the checksum, that the state decodes
// and that it holds every invariant Apply maintains.
func ReadSnapshotFile(r io.Reader) (*SnapshotFile, error) {
	br := bufio.NewReaderSize(r, maxSnapshotLine)
	line := func(what string) ([]byte, error) {
		b, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("%s line longer than %d bytes: not a Raftinel snapshot file", what, maxSnapshotLine)
			}
			return nil, fmt.Errorf("reading the %s line: %w: not a Raftinel snapshot file, or cut short", what, err)
		}
		return bytes.TrimSuffix(b, []byte("\n")), nil
	}
	magic, err := line("first")
	if err != nil {
		return nil, err
	}
	if string(magic) != snapshotMagic {
		return nil, fmt.Errorf("first line %q: not a Raftinel snapshot file (want %q)", truncate(string(magic), 40), snapshotMagic)
	}
	head, err := line("header")
	if err != nil {
		return nil, err
	}
	out := &SnapshotFile{}
	if err := json.Unmarshal(head, &out.Header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	h := out.Header
	if h.StateBytes < 0 || h.StateBytes > 1<<32 {
		return nil, fmt.Errorf("header: state_bytes %d out of range", h.StateBytes)
	}
	out.Raw = make([]byte, h.StateBytes)
	if _, err := io.ReadFull(br, out.Raw); err != nil {
		return nil, fmt.Errorf("the header announces %d bytes of state, the file holds fewer: cut short (%w)", h.StateBytes, err)
	}
	if n, _ := io.Copy(io.Discard, br); n > 0 {
		return nil, fmt.Errorf("%d bytes follow the %d bytes of state the header announces: the file is corrupt", n, h.StateBytes)
	}
	sum := sha256.Sum256(out.Raw)
	if got := hex.EncodeToString(sum[:]); got != h.StateSHA256 {
		return nil, fmt.Errorf("checksum mismatch: the header says SHA-256 %s, the state hashes to %s: the file is corrupt or was changed", truncate(h.StateSHA256, 64), got)
	}
	if err := out.Decode(out.Raw, h.Index); err != nil {
		return nil, err
	}
	if h.Index == 0 || h.Term == 0 {
		return nil, fmt.Errorf("header: index %d, term %d: both must be set", h.Index, h.Term)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
