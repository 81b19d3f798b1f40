package fsm

import (
	"strconv"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/proto"
)

// View copies only what changed since the view before: after every kind
// of change it equals the state, a master the change did not touch is the
// same record (by pointer) as in the view before, and one it did is not.
func TestViewSharesUnchangedMasters(t *testing.T) {
	a := newApplier()
	check := func(what string) *fsmv1.State {
		t.Helper()
		v := a.f.View()
		if !proto.Equal(v, a.f.State()) {
			t.Fatalf("after %s the view differs from the state:\n%v\n%v", what, v, a.f.State())
		}
		if a.f.View() != v {
			t.Fatalf("after %s a second View without a change made a new copy", what)
		}
		return v
	}
	must(t, a, register("n1", "127.0.0.1:7001", "127.0.0.1:8001"))
	must(t, a, monitor("one", mAddr, 2))
	must(t, a, monitor("two", "127.0.0.1:7379", 2))
	before := check("monitoring two masters")

	vote := cmdOf(&fsmv1.ReportVote{Master: "one", NodeId: "n1", Address: mAddr, Down: true, Reason: "test"})
	must(t, a, vote)
	after := check("a vote on one")
	if after.Masters["two"] != before.Masters["two"] {
		t.Fatal("a vote on one copied two")
	}
	if after.Masters["one"] == before.Masters["one"] {
		t.Fatal("the vote on one is not in a new copy of one")
	}

	// A rejected command changes only the applied index.
	if err := a.apply(t, cmdOf(&fsmv1.ReportVote{Master: "nosuch", NodeId: "n1", Address: mAddr, Down: true})); err == nil {
		t.Fatal("a vote on an unknown master was accepted")
	}
	rejected := check("a rejected command")
	if rejected.Masters["one"] != after.Masters["one"] || rejected.GetAppliedIndex() != a.index {
		t.Fatal("a rejected command copied a master, or the view missed its index")
	}

	must(t, a, set("two", "quorum", "1"))
	must(t, a, remove("one"))
	gone := check("a setting of two and the removal of one")
	if _, ok := gone.Masters["one"]; ok {
		t.Fatal("the removed master is still in the view")
	}
	must(t, a, register("n2", "127.0.0.1:7002", "127.0.0.1:8002"))
	check("a node registered")
	must(t, a, cmdOf(&fsmv1.FormatProbe{Format: LogFormat()}))
	check("a format probe")
}

// View builds a new state from the state's fields by name; a field added
// to State must be added there too, or views would lose it.
func TestViewCopiesEveryStateField(t *testing.T) {
	fields := (&fsmv1.State{}).ProtoReflect().Descriptor().Fields()
	var names []string
	for i := range fields.Len() {
		names = append(names, string(fields.Get(i).Name()))
	}
	want := []string{"nodes", "masters", "applied_index", "last_event_seq", "log_format"}
	if len(names) != len(want) {
		t.Fatalf("State has fields %v; View copies %v: update FSM.View", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("State has fields %v; View copies %v: update FSM.View", names, want)
		}
	}
}

// BenchmarkViewAfterOneChange: a view after one master's vote, with a
// thousand masters, against copying the whole state (what View did before
// it shared unchanged masters).
//
//	go test -run '^$' -bench ViewAfterOneChange -benchmem ./fsm/
func BenchmarkViewAfterOneChange(b *testing.B) {
	a := newApplier()
	must(b, a, register("n1", "127.0.0.1:7001", "127.0.0.1:8001"))
	for i := range 1000 {
		name := "m" + strconv.Itoa(i)
		must(b, a, monitor(name, "127.0.0.1:"+strconv.Itoa(10000+i), 2))
		must(b, a, cmdOf(&fsmv1.UpdateReplicas{Master: name, Replicas: []*fsmv1.Replica{
			{Address: "127.0.0.2:" + strconv.Itoa(10000+i), Role: "slave", Priority: 100},
			{Address: "127.0.0.3:" + strconv.Itoa(10000+i), Role: "slave", Priority: 100},
		}}))
	}
	a.f.View()
	vote := func(i int) {
		must(b, a, cmdOf(&fsmv1.ReportVote{Master: "m" + strconv.Itoa(i%1000), NodeId: "n1",
			Address: "127.0.0.1:" + strconv.Itoa(10000+i%1000), Down: i%2 == 0, Reason: "bench"}))
	}
	b.Run("shared", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			vote(i)
			a.f.View()
		}
	})
	b.Run("whole-copy", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			vote(i)
			a.f.mu.RLock()
			_ = proto.Clone(a.f.state)
			a.f.mu.RUnlock()
		}
	})
}
