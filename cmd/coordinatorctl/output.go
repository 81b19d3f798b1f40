package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// writeJSON prints a response message as the proto3 JSON mapping with the
// .proto field names, every field present. protojson deliberately varies its
// whitespace between runs, so the result is re-indented to give scripts
// and diffs byte-stable output.
func writeJSON(w io.Writer, m proto.Message) error {
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// table is a small helper over tabwriter that remembers the first write
// error, so renderers read as a list of rows.
type table struct {
	tw  *tabwriter.Writer
	err error
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	if t.err != nil {
		return
	}
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	_, t.err = fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	if t.err != nil {
		return t.err
	}
	return t.tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

func renderStatus(w io.Writer, resp *coordinatorv1.StatusResponse) error {
	withErr := false
	for _, n := range resp.GetNodes() {
		withErr = withErr || n.GetError() != ""
	}
	header := []string{"ID", "STATE", "LEADER", "TERM", "LAST", "APPLIED", "VOTER", "RAFT", "GRPC"}
	if withErr {
		header = append(header, "ERROR")
	}
	t := newTable(w, header...)
	for _, n := range resp.GetNodes() {
		row := []string{n.GetId(), n.GetState(), n.GetLeaderId(), u64(n.GetTerm()), u64(n.GetLastIndex()),
			u64(n.GetAppliedIndex()), yesNo(n.GetVoter()), n.GetRaftAddress(), n.GetGrpcAddress()}
		if n.GetState() == "unreachable" {
			// Its numbers are not known, and zeros would look like a fact.
			row[2], row[3], row[4], row[5] = "", "", "", ""
		}
		if withErr {
			row = append(row, oneLine(n.GetError()))
		}
		t.row(row...)
	}
	return t.flush()
}

func renderMembers(w io.Writer, resp *coordinatorv1.ListMembersResponse) error {
	t := newTable(w, "ID", "VOTER", "LEADER", "RAFT", "GRPC", "SENTINEL")
	for _, m := range resp.GetMembers() {
		leader := ""
		if m.GetId() == resp.GetLeaderId() {
			leader = "yes"
		}
		t.row(m.GetId(), yesNo(m.GetVoter()), leader, m.GetRaftAddress(), m.GetGrpcAddress(), m.GetSentinelAddress())
	}
	return t.flush()
}

func renderMasters(w io.Writer, resp *coordinatorv1.ListMastersResponse) error {
	t := newTable(w, "NAME", "ADDRESS", "EPOCH", "QUORUM", "DOWN-AFTER", "FAILOVER-TIMEOUT", "PARALLEL-SYNCS")
	for _, m := range resp.GetMasters() {
		s := m.GetSettings()
		t.row(m.GetName(), m.GetAddress(), u64(m.GetEpoch()), u64(uint64(s.GetQuorum())),
			s.GetDownAfter().AsDuration().String(), s.GetFailoverTimeout().AsDuration().String(),
			u64(uint64(s.GetParallelSyncs())))
	}
	return t.flush()
}

// millis shows a time setting the way `set` takes it, with the readable
// form beside it.
func millis(d time.Duration) string {
	return fmt.Sprintf("%d (%v)", d.Milliseconds(), d)
}

// renderMaster lists one master with its settings under the option names
// `set` uses, so what is shown can be pasted back.
func renderMaster(w io.Writer, resp *coordinatorv1.GetMasterResponse) error {
	m := resp.GetMaster()
	s := m.GetSettings()
	pass := "unset"
	if s.GetAuthPassSet() {
		pass = "set"
	}
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row("name", m.GetName())
	t.row("address", m.GetAddress())
	t.row("epoch", u64(m.GetEpoch()))
	t.row("quorum", u64(uint64(s.GetQuorum())))
	t.row("down-after-milliseconds", millis(s.GetDownAfter().AsDuration()))
	t.row("failover-timeout", millis(s.GetFailoverTimeout().AsDuration()))
	t.row("parallel-syncs", u64(uint64(s.GetParallelSyncs())))
	t.row("auth-user", s.GetAuthUser())
	t.row("auth-pass", pass)
	t.row("max-lag", strconv.FormatInt(s.GetMaxLagBytes(), 10))
	t.row("index", u64(resp.GetIndex()))
	return t.flush()
}

// describeOptions is the confirmation line's list of what `set` changed;
// a password never reaches the terminal.
func describeOptions(pairs [][2]string) string {
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		v := p[1]
		if strings.EqualFold(p[0], "auth-pass") {
			v = "(hidden)"
		}
		parts[i] = p[0] + " " + v
	}
	return strings.Join(parts, ", ")
}
