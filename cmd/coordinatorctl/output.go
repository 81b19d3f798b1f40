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
	"google.golang.org/protobuf/types/known/timestamppb"
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
	header := []string{"ID", "STATE", "LEADER", "TERM", "LAST", "APPLIED", "VOTER", "FORMAT", "VERSION", "RAFT", "GRPC"}
	if withErr {
		header = append(header, "ERROR")
	}
	t := newTable(w, header...)
	for _, n := range resp.GetNodes() {
		format := u64(uint64(max(n.GetLogFormat(), 1))) // a node from before formats understands format 1
		row := []string{n.GetId(), n.GetState(), n.GetLeaderId(), u64(n.GetTerm()), u64(n.GetLastIndex()),
			u64(n.GetAppliedIndex()), yesNo(n.GetVoter()), format, n.GetVersion(), n.GetRaftAddress(), n.GetGrpcAddress()}
		if n.GetState() == "unreachable" {
			// Its numbers are not known, and zeros would look like a fact.
			row[2], row[3], row[4], row[5], row[7], row[8] = "", "", "", "", "", ""
		}
		if withErr {
			row = append(row, oneLine(n.GetError()))
		}
		t.row(row...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if resp.GetClusterLogFormat() == 0 {
		return nil // a node from before log formats answered
	}
	var on, off []string
	for _, f := range resp.GetFeatures() {
		name := fmt.Sprintf("%s (format %d)", f.GetKind(), f.GetFormat())
		if f.GetEnabled() {
			on = append(on, name)
		} else {
			off = append(off, name)
		}
	}
	_, err := fmt.Fprintf(w, "\nlog format in use: %d (the newest every voter understands)\n", resp.GetClusterLogFormat())
	if err == nil && len(on) > 0 {
		_, err = fmt.Fprintf(w, "features on: %s\n", strings.Join(on, ", "))
	}
	if err == nil && len(off) > 0 {
		_, err = fmt.Fprintf(w, "features off until every voter is upgraded: %s\n", strings.Join(off, ", "))
	}
	return err
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
	t := newTable(w, "NAME", "ADDRESS", "EPOCH", "QUORUM", "DOWN-AFTER", "FAILOVER-TIMEOUT", "PARALLEL-SYNCS", "MAINTENANCE")
	for _, m := range resp.GetMasters() {
		s := m.GetSettings()
		t.row(m.GetName(), m.GetAddress(), u64(m.GetEpoch()), u64(uint64(s.GetQuorum())),
			s.GetDownAfter().AsDuration().String(), s.GetFailoverTimeout().AsDuration().String(),
			u64(uint64(s.GetParallelSyncs())), yesNo(s.GetMaintenance()))
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
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	masterRows(t, resp.GetMaster())
	t.row("index", u64(resp.GetIndex()))
	return t.flush()
}

func masterRows(t *table, m *coordinatorv1.Master) {
	s := m.GetSettings()
	pass := "unset"
	if s.GetAuthPassSet() {
		pass = "set"
	}
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
	if p := s.GetPingPeriod(); p != nil && p.AsDuration() > 0 {
		t.row("ping-period", millis(p.AsDuration()))
	} else {
		t.row("ping-period", "0 (automatic)")
	}
	t.row("master-reboot-down-after-period", millis(s.GetMasterRebootDownAfterPeriod().AsDuration()))
	// Hooks show only when set, so that the table of a master without any
	// is unchanged.
	for _, h := range [][2]string{{"notification-script", s.GetNotificationScript()},
		{"client-reconfig-script", s.GetClientReconfigScript()}, {"webhook-url", s.GetWebhookUrl()}} {
		if h[1] != "" {
			t.row(h[0], h[1])
		}
	}
	t.row("maintenance", yesNo(s.GetMaintenance()))
	if s.Fence != nil {
		t.row("fence", yesNo(s.GetFence()))
		t.row("fence-lag", strconv.FormatInt(int64(s.GetFenceLag().AsDuration()/time.Second), 10))
	}
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

// detailEvents is how many of the most recent events `master` shows; -o json
// has them all.
const detailEvents = 10

// renderMasterDetail is `master NAME`: the settings as renderMaster shows
// them, then what the cluster observed (replicas, each node's vote, the
// failover journal) and the latest events, one table each.
func renderMasterDetail(w io.Writer, resp *coordinatorv1.GetMasterDetailResponse) error {
	d := resp.GetDetail()
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	masterRows(t, d.GetMaster())
	t.row("odown", yesNo(d.GetOdown()))
	t.row("master-offset", strconv.FormatInt(d.GetMasterOffset(), 10))
	t.row("last-failover", timestamp(d.GetLastFailoverAt()))
	if f := d.GetFence(); f != nil {
		t.row("fence-set", fmt.Sprintf("min-replicas-to-write %d min-replicas-max-lag %d on %s (%s)", f.GetMinReplicas(),
			int64(f.GetMaxLag().AsDuration()/time.Second), f.GetAddress(), f.GetReason()))
	}
	t.row("index", u64(resp.GetIndex()))
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w, "REPLICA", "ROLE", "FOLLOWS", "LINK", "OFFSET", "LAG", "PRIORITY", "FLAGS")
	for _, r := range d.GetReplicas() {
		link := "up"
		if !r.GetMasterLinkUp() {
			link = "down " + r.GetMasterLinkDown().AsDuration().String()
		}
		t.row(r.GetAddress(), r.GetRole(), r.GetMasterAddress(), link, strconv.FormatInt(r.GetOffset(), 10),
			strconv.FormatInt(r.GetLag(), 10), strconv.Itoa(int(r.GetPriority())), replicaFlags(r))
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w, "NODE", "VOTE", "AT", "REASON")
	for _, v := range d.GetVotes() {
		vote := "up"
		if v.GetDown() {
			vote = "down"
		}
		t.row(v.GetNodeId(), vote, timestamp(v.GetAt()), v.GetReason())
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	if f := d.GetFailover(); f != nil {
		t = &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
		t.row("failover", f.GetPhase())
		t.row("reason", f.GetReason())
		t.row("candidate", f.GetCandidate())
		t.row("old-master", f.GetOldMaster())
		t.row("started", timestamp(f.GetStartedAt()))
		t.row("promoted", timestamp(f.GetPromotedAt()))
		if u := f.GetFenceWaitUntil(); u != nil {
			t.row("fence-wait", "until "+timestamp(u)+": "+f.GetFenceWaitReason())
		}
		for _, rc := range f.GetReconf() {
			t.row("reconf "+rc.GetAddress(), rc.GetPhase())
		}
		for _, rj := range f.GetRejected() {
			t.row("rejected "+rj.GetAddress(), rj.GetReason())
		}
	} else {
		t = &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
		t.row("failover", "none in progress")
	}
	if err := t.flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w, "TIME", "EVENT", "PAYLOAD")
	events := d.GetEvents()
	for _, e := range events[max(0, len(events)-detailEvents):] {
		t.row(timestamp(e.GetAt()), e.GetType(), e.GetPayload())
	}
	return t.flush()
}

func replicaFlags(r *coordinatorv1.Replica) string {
	var flags []string
	if r.GetSdown() {
		flags = append(flags, "s_down")
	}
	if r.GetDisconnected() {
		flags = append(flags, "disconnected")
	}
	if !r.GetAnnounced() {
		flags = append(flags, "not-announced")
	}
	return strings.Join(flags, ",")
}

// timestamp renders a time in UTC to the millisecond; unset is "-".
func timestamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
}
