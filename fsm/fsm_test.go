package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type applier struct {
	f     *FSM
	index uint64
}

// newApplier is a state machine of a cluster that has switched to this
// binary's newest log format.
func newApplier() *applier {
	f := New()
	f.state.LogFormat = LogFormat()
	return &applier{f: f}
}

func (a *applier) apply(t testing.TB, cmd *fsmv1.Command) error {
	t.Helper()
	if cmd.ProposedAtUnixNanos == 0 {
		cmd.ProposedAtUnixNanos = t0.Add(time.Duration(a.index) * time.Second).UnixNano()
	}
	data, err := Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	a.index++
	res := a.f.Apply(&raft.Log{Index: a.index, Data: data}).(*Result)
	if res.Index != a.index {
		t.Fatalf("result index %d, want %d", res.Index, a.index)
	}
	return res.Err
}

func monitor(name, addr string, quorum uint32) *fsmv1.Command {
	return &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
		Name: name, Address: addr, Settings: &fsmv1.MasterSettings{Quorum: quorum},
	}}}
}

func set(name string, kv ...string) *fsmv1.Command {
	c := &fsmv1.SetMasterOptions{Name: name}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Options = append(c.Options, &fsmv1.Option{Key: kv[i], Value: kv[i+1]})
	}
	return &fsmv1.Command{Kind: &fsmv1.Command_SetMasterOptions{SetMasterOptions: c}}
}

func remove(name string) *fsmv1.Command {
	return &fsmv1.Command{Kind: &fsmv1.Command_RemoveMaster{RemoveMaster: &fsmv1.RemoveMaster{Name: name}}}
}

func register(id, raftAddr, grpcAddr string) *fsmv1.Command {
	return &fsmv1.Command{Kind: &fsmv1.Command_RegisterNode{RegisterNode: &fsmv1.RegisterNode{Node: &fsmv1.Node{
		Id: id, RaftAddress: raftAddr, GrpcAddress: grpcAddr,
	}}}}
}

func kindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return 0
}

func reasonOf(err error) Reason {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Reason
	}
	return ""
}

// Every oneof member of Command must reach a handler: a kind added to the
// proto without one would panic on every node at once.
func TestEveryCommandKindHasAHandler(t *testing.T) {
	oneof := (&fsmv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("kind")
	fields := oneof.Fields()
	if fields.Len() == 0 {
		t.Fatal("Command has no kinds")
	}
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		t.Run(string(fd.Name()), func(t *testing.T) {
			cmd := &fsmv1.Command{}
			m := cmd.ProtoReflect()
			m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("kind %s panicked: %v", fd.Name(), r)
				}
			}()
			_, _ = applyCommand(&fsmv1.State{}, cmd)
		})
	}
}

func TestUndecodableEntryPanicsWithUpgradeHint(t *testing.T) {
	for name, data := range map[string][]byte{
		"garbage":      {0xff, 0xff, 0xff},
		"unknown kind": protowire(t, 999),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), "upgrade this binary") {
					t.Fatalf("recovered %v, want an upgrade panic", r)
				}
			}()
			New().Apply(&raft.Log{Index: 1, Data: data})
		})
	}
}

// protowire builds a Command carrying an unknown field, as a newer binary's
// command kind would look to this one.
func protowire(t *testing.T, field int) []byte {
	t.Helper()
	cmd := &fsmv1.Command{ProposedAtUnixNanos: 1}
	data, err := proto.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	tag := byte(field<<3|2) | 0x80
	return append(data, tag, byte(field>>4), 0)
}

func TestMonitorValidation(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		name    string
		cmd     *fsmv1.Command
		wantErr Kind
		msg     string
	}{
		{"ok", monitor("mymaster", "127.0.0.1:6379", 2), 0, ""},
		{"hostname ok", monitor("m.y-_1", "redis-a.example:6380", 1), 0, ""},
		{"ipv6 ok", monitor("v6", "[::1]:6379", 1), 0, ""},
		{"empty name", monitor("", "127.0.0.1:6379", 2), Invalid, "name is empty"},
		{"long name", monitor(long, "127.0.0.1:6379", 2), Invalid, "longer than 64"},
		{"bad char", monitor("my master", "127.0.0.1:6379", 2), Invalid, "may only contain"},
		{"no port", monitor("m", "127.0.0.1", 2), Invalid, "not host:port"},
		{"port 0", monitor("m", "127.0.0.1:0", 2), Invalid, "invalid port"},
		{"port too big", monitor("m", "127.0.0.1:65536", 2), Invalid, "invalid port"},
		{"port not a number", monitor("m", "127.0.0.1:x", 2), Invalid, "invalid port"},
		{"empty host", monitor("m", ":6379", 2), Invalid, "no valid host"},
		{"quorum 0", monitor("m", "127.0.0.1:6379", 0), Invalid, "quorum must be 1 or greater"},
		{"down-after too small", &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
			Name: "m", Address: "127.0.0.1:6379", Settings: &fsmv1.MasterSettings{Quorum: 1, DownAfterMs: 99},
		}}}, Invalid, "down-after-milliseconds must be between 100"},
		{"negative failover-timeout", &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
			Name: "m", Address: "127.0.0.1:6379", Settings: &fsmv1.MasterSettings{Quorum: 1, FailoverTimeoutMs: -5},
		}}}, Invalid, "failover-timeout must be between"},
		{"negative max-lag", &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
			Name: "m", Address: "127.0.0.1:6379", Settings: &fsmv1.MasterSettings{Quorum: 1, MaxLagBytes: -1},
		}}}, Invalid, "max-lag"},
		{"ping-period too small", &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
			Name: "m", Address: "127.0.0.1:6379", Settings: &fsmv1.MasterSettings{Quorum: 1, PingPeriodMs: 9},
		}}}, Invalid, "ping-period must be between 10 and 86400000 milliseconds, got 9 (or 0 for automatic)"},
		{"negative master-reboot-down-after-period", &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
			Name: "m", Address: "127.0.0.1:6379", Settings: &fsmv1.MasterSettings{Quorum: 1, MasterRebootDownAfterPeriodMs: -1},
		}}}, Invalid, "master-reboot-down-after-period must be 0 (off)"},
		{"master-reboot-down-after-period kept", &fsmv1.Command{Kind: &fsmv1.Command_MonitorMaster{MonitorMaster: &fsmv1.MonitorMaster{
			Name: "m", Address: "127.0.0.1:6379", Settings: &fsmv1.MasterSettings{Quorum: 1, MasterRebootDownAfterPeriodMs: 5000},
		}}}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier()
			err := a.apply(t, tc.cmd)
			if kindOf(err) != tc.wantErr {
				t.Fatalf("err = %v (kind %v), want kind %v", err, kindOf(err), tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.msg)
			}
			if err != nil && len(a.f.State().Masters) != 0 {
				t.Fatal("a rejected monitor changed the state")
			}
		})
	}
}

func TestMonitorDefaultsAndDuplicates(t *testing.T) {
	a := newApplier()
	if err := a.apply(t, monitor("mymaster", "127.0.0.1:6379", 2)); err != nil {
		t.Fatal(err)
	}
	m, idx, ok := a.f.Master("mymaster")
	if !ok || idx != 1 {
		t.Fatalf("master missing or index %d", idx)
	}
	s := m.GetSettings()
	if s.DownAfterMs != 30000 || s.FailoverTimeoutMs != 180000 || s.ParallelSyncs != 1 || s.Quorum != 2 {
		t.Fatalf("defaults not applied: %v", s)
	}
	if m.MonitoredAtUnixNanos != t0.UnixNano() {
		t.Fatalf("monitored_at %d, want the proposed time %d", m.MonitoredAtUnixNanos, t0.UnixNano())
	}
	err := a.apply(t, monitor("mymaster", "127.0.0.1:6380", 1))
	if kindOf(err) != AlreadyExists || !strings.Contains(err.Error(), "Duplicate master name") {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestSetOptions(t *testing.T) {
	tests := []struct {
		name  string
		kv    []string
		want  func(*fsmv1.MasterSettings) bool
		error string
	}{
		{"quorum", []string{"quorum", "3"}, func(s *fsmv1.MasterSettings) bool { return s.Quorum == 3 }, ""},
		{"down-after ms", []string{"down-after-milliseconds", "1500"}, func(s *fsmv1.MasterSettings) bool { return s.DownAfterMs == 1500 }, ""},
		{"down-after duration", []string{"down-after-milliseconds", "1.5s"}, func(s *fsmv1.MasterSettings) bool { return s.DownAfterMs == 1500 }, ""},
		{"case-insensitive key", []string{"Failover-Timeout", "10s"}, func(s *fsmv1.MasterSettings) bool { return s.FailoverTimeoutMs == 10000 }, ""},
		{"parallel-syncs", []string{"parallel-syncs", "4"}, func(s *fsmv1.MasterSettings) bool { return s.ParallelSyncs == 4 }, ""},
		{"auth", []string{"auth-user", "u", "auth-pass", "p"}, func(s *fsmv1.MasterSettings) bool { return s.AuthUser == "u" && s.AuthPass == "p" }, ""},
		{"max-lag", []string{"max-lag", "1048576"}, func(s *fsmv1.MasterSettings) bool { return s.MaxLagBytes == 1048576 }, ""},
		{"ping-period ms", []string{"ping-period", "50"}, func(s *fsmv1.MasterSettings) bool { return s.PingPeriodMs == 50 }, ""},
		{"ping-period duration", []string{"ping-period", "250ms"}, func(s *fsmv1.MasterSettings) bool { return s.PingPeriodMs == 250 }, ""},
		{"ping-period automatic", []string{"ping-period", "200", "ping-period", "0"}, func(s *fsmv1.MasterSettings) bool { return s.PingPeriodMs == 0 }, ""},
		{"ping-period above down-after", []string{"ping-period", "1m"}, func(s *fsmv1.MasterSettings) bool { return s.PingPeriodMs == 60000 }, ""},
		{"ping-period too small", []string{"ping-period", "5ms"}, nil, "ping-period must be between 10 and"},
		{"ping-period negative", []string{"ping-period", "-1"}, nil, "ping-period must be between 10 and"},
		{"ping-period word", []string{"ping-period", "often"}, nil, "Invalid argument 'often' for SENTINEL SET 'ping-period'"},
		{"master-reboot-down-after-period ms", []string{"master-reboot-down-after-period", "5000"},
			func(s *fsmv1.MasterSettings) bool { return s.MasterRebootDownAfterPeriodMs == 5000 }, ""},
		{"master-reboot-down-after-period duration", []string{"master-reboot-down-after-period", "2.5s"},
			func(s *fsmv1.MasterSettings) bool { return s.MasterRebootDownAfterPeriodMs == 2500 }, ""},
		{"master-reboot-down-after-period off", []string{"master-reboot-down-after-period", "0"},
			func(s *fsmv1.MasterSettings) bool { return s.MasterRebootDownAfterPeriodMs == 0 }, ""},
		{"master-reboot-down-after-period negative", []string{"master-reboot-down-after-period", "-1"}, nil,
			"Invalid argument '-1' for SENTINEL SET 'master-reboot-down-after-period'"},
		{"master-reboot-down-after-period word", []string{"master-reboot-down-after-period", "soon"}, nil,
			"Invalid argument 'soon' for SENTINEL SET 'master-reboot-down-after-period'"},
		{"master-reboot-down-after-period too long", []string{"master-reboot-down-after-period", "25h"}, nil,
			"master-reboot-down-after-period must be 0 (off) to 86400000 milliseconds, got 90000000"},
		{"master-reboot-down-after-period overflow", []string{"master-reboot-down-after-period", "9223372036854775807"}, nil,
			"master-reboot-down-after-period must be 0 (off) to 86400000 milliseconds"},
		{"maintenance yes", []string{"maintenance", "yes"}, func(s *fsmv1.MasterSettings) bool { return s.Maintenance }, ""},
		{"maintenance YES then no", []string{"maintenance", "YES", "maintenance", "no"}, func(s *fsmv1.MasterSettings) bool { return !s.Maintenance }, ""},
		{"maintenance word", []string{"maintenance", "on"}, nil, "Invalid argument 'on' for SENTINEL SET 'maintenance'"},
		{"fence no", []string{"fence", "no"}, func(s *fsmv1.MasterSettings) bool { return s.FenceOff }, ""},
		{"fence yes", []string{"fence", "no", "fence", "YES"}, func(s *fsmv1.MasterSettings) bool { return !s.FenceOff }, ""},
		{"fence word", []string{"fence", "maybe"}, nil, "Invalid argument 'maybe' for SENTINEL SET 'fence': want yes or no"},
		{"fence-lag seconds", []string{"fence-lag", "5"}, func(s *fsmv1.MasterSettings) bool { return s.FenceLagS == 5 }, ""},
		{"fence-lag duration", []string{"fence-lag", "3s"}, func(s *fsmv1.MasterSettings) bool { return s.FenceLagS == 3 }, ""},
		{"fence-lag fraction", []string{"fence-lag", "1500ms"}, nil, "Redis counts the lag in whole seconds"},
		{"fence-lag zero", []string{"fence-lag", "0"}, nil, "fence-lag must be 1 to 60 whole seconds"},
		{"fence-lag too long", []string{"fence-lag", "61"}, nil, "fence-lag must be 1 to 60 whole seconds"},
		{"fence-lag word", []string{"fence-lag", "soon"}, nil, "want whole seconds"},
		{"negative quorum", []string{"quorum", "-20"}, nil, "Invalid argument '-20' for SENTINEL SET 'quorum'"},
		{"word", []string{"down-after-milliseconds", "abc"}, nil, "Invalid argument 'abc' for SENTINEL SET 'down-after-milliseconds'"},
		{"sub-millisecond", []string{"down-after-milliseconds", "1500us"}, nil, "Invalid argument"},
		{"too small", []string{"down-after-milliseconds", "50"}, nil, "must be between 100"},
		{"unknown", []string{"rename-command", "PING PONG"}, nil, "Unknown option or number of arguments for SENTINEL SET 'rename-command'"},
		{"atomic", []string{"quorum", "5", "parallel-syncs", "0"}, nil, "Invalid argument '0' for SENTINEL SET 'parallel-syncs'"},
		{"nothing", nil, nil, "no option"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier()
			if err := a.apply(t, monitor("m", "127.0.0.1:6379", 2)); err != nil {
				t.Fatal(err)
			}
			before := a.f.State()
			err := a.apply(t, set("m", tc.kv...))
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("err = %v, want %q", err, tc.error)
				}
				after := a.f.State()
				after.AppliedIndex = before.AppliedIndex
				if !proto.Equal(before, after) {
					t.Fatal("a rejected set changed the state")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, _, _ := a.f.Master("m")
			if !tc.want(m.Settings) {
				t.Fatalf("settings %v", m.Settings)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	a := newApplier()
	for _, cmd := range []*fsmv1.Command{remove("nope"), set("nope", "quorum", "1"),
		{Kind: &fsmv1.Command_ResetMaster{ResetMaster: &fsmv1.ResetMaster{Name: "nope"}}},
		{Kind: &fsmv1.Command_ReportVote{ReportVote: &fsmv1.ReportVote{Master: "nope", NodeId: "n1", Address: "127.0.0.1:1"}}},
		{Kind: &fsmv1.Command_AbortFailover{AbortFailover: &fsmv1.AbortFailover{Master: "nope"}}}} {
		err := a.apply(t, cmd)
		if kindOf(err) != NotFound || reasonOf(err) != ReasonUnknownMaster || err.Error() != `unknown master "nope"` {
			t.Fatalf("%v: err = %v", cmd, err)
		}
	}
	// A node is no master: NotFound says enough.
	err := a.apply(t, &fsmv1.Command{Kind: &fsmv1.Command_DeregisterNode{DeregisterNode: &fsmv1.DeregisterNode{Id: "n9"}}})
	if kindOf(err) != NotFound || reasonOf(err) != "" || !strings.Contains(err.Error(), "unknown node") {
		t.Fatalf("deregister unknown node: err = %v", err)
	}
}

func TestRegisterNode(t *testing.T) {
	a := newApplier()
	if err := a.apply(t, register("n1", "127.0.0.1:7001", "127.0.0.1:8001")); err != nil {
		t.Fatal(err)
	}
	// Re-registering updates the addresses and keeps the first time.
	if err := a.apply(t, register("n1", "127.0.0.1:7001", "127.0.0.1:9001")); err != nil {
		t.Fatal(err)
	}
	n, ok := a.f.Node("n1")
	if !ok || n.GrpcAddress != "127.0.0.1:9001" || n.RegisteredAtUnixNanos != t0.UnixNano() {
		t.Fatalf("node %v", n)
	}
	err := a.apply(t, register("n2", "127.0.0.1:7001", "127.0.0.1:8002"))
	if kindOf(err) != AlreadyExists {
		t.Fatalf("two nodes on one raft address: %v", err)
	}
	if err := a.apply(t, register("bad id", "127.0.0.1:7003", "127.0.0.1:8003")); kindOf(err) != Invalid {
		t.Fatalf("bad id: %v", err)
	}
}

// genCommand draws any command, valid or not, so replays cover rejections.
func genCommand(t *rapid.T) *fsmv1.Command {
	name := rapid.SampledFrom([]string{"a", "b", "c", "bad name"}).Draw(t, "name")
	addr := rapid.SampledFrom([]string{"127.0.0.1:6379", "10.0.0.1:6380", "host:0"}).Draw(t, "addr")
	var cmd *fsmv1.Command
	replica := rapid.SampledFrom([]string{"127.0.0.1:6380", "127.0.0.1:6381", "127.0.0.1:6379"}).Draw(t, "replica")
	epoch := uint64(rapid.IntRange(0, 2).Draw(t, "epoch"))
	switch rapid.IntRange(0, 12).Draw(t, "kind") {
	case 0:
		cmd = monitor(name, addr, uint32(rapid.IntRange(0, 3).Draw(t, "quorum")))
	case 1:
		cmd = remove(name)
	case 2:
		key := rapid.SampledFrom(append([]string{"bogus"}, OptionKeys...)).Draw(t, "key")
		val := rapid.SampledFrom([]string{"0", "1", "2", "150", "2s", "x", "-1"}).Draw(t, "val")
		cmd = set(name, key, val)
	case 3:
		id := rapid.SampledFrom([]string{"n1", "n2", "n3"}).Draw(t, "id")
		cmd = register(id, addr, "127.0.0.1:9000")
	case 4:
		id := rapid.SampledFrom([]string{"n1", "n2", "n3"}).Draw(t, "id")
		cmd = &fsmv1.Command{Kind: &fsmv1.Command_DeregisterNode{DeregisterNode: &fsmv1.DeregisterNode{Id: id}}}
	case 5:
		cmd = cmdOf(&fsmv1.ReportVote{Master: name, NodeId: "n1", Address: addr, Down: rapid.Bool().Draw(t, "down")})
	case 6:
		cmd = cmdOf(&fsmv1.UpdateReplicas{Master: name, ExpectedEpoch: epoch, Replicas: []*fsmv1.Replica{
			{Address: replica, Sdown: rapid.Bool().Draw(t, "sdown"), RunId: rapid.SampledFrom([]string{"", "a", "b"}).Draw(t, "run")}}})
	case 7:
		cmd = cmdOf(&fsmv1.BeginFailover{Master: name, ExpectedEpoch: epoch, Reason: "odown",
			Candidate: rapid.SampledFrom([]string{"", replica}).Draw(t, "candidate")})
	case 8:
		cmd = cmdOf(&fsmv1.Promoted{Master: name, ExpectedEpoch: epoch, Address: replica})
	case 9:
		cmd = cmdOf(&fsmv1.ReplicaReconfigured{Master: name, ExpectedEpoch: epoch, Address: replica,
			Phase: fsmv1.ReconfPhase(rapid.IntRange(0, 4).Draw(t, "phase"))})
	case 10:
		cmd = cmdOf(&fsmv1.FinishFailover{Master: name, ExpectedEpoch: epoch})
	case 11:
		cmd = cmdOf(&fsmv1.BeginFailover{Master: name, ExpectedEpoch: epoch, Reason: "manual", Candidate: replica,
			Coordinated: true, HandoverTimeoutMs: int64(rapid.IntRange(0, 200000).Draw(t, "handover"))})
	case 12:
		cmd = cmdOf(&fsmv1.AbortFailover{Master: name, ExpectedEpoch: epoch, Event: EventHandoverTimeout, Reason: "late"})
	}
	cmd.ProposedAtUnixNanos = rapid.Int64Range(1, 1<<62).Draw(t, "at")
	return cmd
}

// Replaying one log on two fresh state machines, or restoring a snapshot
// taken midway and replaying the rest, gives equal states.
func TestReplayIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cmds := rapid.SliceOfN(rapid.Custom(genCommand), 1, 40).Draw(t, "cmds")
		cut := rapid.IntRange(0, len(cmds)).Draw(t, "cut")
		logs := make([]*raft.Log, len(cmds))
		for i, c := range cmds {
			data, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			logs[i] = &raft.Log{Index: uint64(i + 1), Data: data}
		}
		one, two, restored := New(), New(), New()
		var results []error
		for i, l := range logs {
			r1 := one.Apply(l).(*Result)
			r2 := two.Apply(l).(*Result)
			if fmt.Sprint(r1.Err) != fmt.Sprint(r2.Err) {
				t.Fatalf("entry %d: results differ: %v vs %v", i, r1.Err, r2.Err)
			}
			results = append(results, r1.Err)
			if i+1 == cut {
				copyState(t, one, restored)
			}
		}
		if cut == 0 {
			copyState(t, New(), restored)
		}
		for _, l := range logs[cut:] {
			restored.Apply(l)
		}
		if !proto.Equal(one.State(), two.State()) {
			t.Fatal("two replays differ")
		}
		if !proto.Equal(one.State(), restored.State()) {
			t.Fatalf("snapshot at %d then replay differs", cut)
		}
		_ = results
	})
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func copyState(t interface{ Fatal(...any) }, from, to *FSM) {
	snap, err := from.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if err := to.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotRoundTripAndWake(t *testing.T) {
	a := newApplier()
	for _, c := range []*fsmv1.Command{monitor("a", "127.0.0.1:6379", 2), monitor("b", "127.0.0.1:6380", 1),
		register("n1", "127.0.0.1:7001", "127.0.0.1:8001"), set("a", "quorum", "3")} {
		if err := a.apply(t, c); err != nil {
			t.Fatal(err)
		}
	}
	other := New()
	ch, _ := other.Changed()
	copyState(t, a.f, other)
	select {
	case <-ch:
	default:
		t.Fatal("restore did not wake watchers")
	}
	if !proto.Equal(a.f.State(), other.State()) {
		t.Fatal("restored state differs")
	}
	if other.AppliedIndex() != 4 {
		t.Fatalf("restored index %d", other.AppliedIndex())
	}
}

func TestRestoreRejectsInvalidSnapshot(t *testing.T) {
	bad := &fsmv1.State{Masters: map[string]*fsmv1.Master{"x": {Name: "y", Address: "127.0.0.1:1"}}}
	data, _ := proto.Marshal(bad)
	f := New()
	if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
		t.Fatal("invalid snapshot restored")
	}
	if err := f.Restore(io.NopCloser(bytes.NewReader([]byte{0xff, 0x01}))); err == nil {
		t.Fatal("garbage restored")
	}
	if len(f.State().Masters) != 0 {
		t.Fatal("failed restore changed the state")
	}
}

type failingSink struct{ memSink }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPersistCancelsOnError(t *testing.T) {
	snap, _ := New().Snapshot()
	sink := &failingSink{}
	if err := snap.Persist(sink); err == nil || !sink.cancelled {
		t.Fatalf("err %v cancelled %v", err, sink.cancelled)
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range []*fsmv1.Command{monitor("m", "127.0.0.1:6379", 2), set("m", "quorum", "2"), remove("m"),
		register("n1", "127.0.0.1:1", "127.0.0.1:2")} {
		data, _ := Encode(c)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must apply without panicking.
		st := &fsmv1.State{}
		_, _ = applyCommand(st, cmd)
		if err := ValidateState(st); err != nil {
			t.Fatalf("apply produced an invalid state: %v", err)
		}
	})
}
