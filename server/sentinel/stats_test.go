package sentinel

import (
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
)

func TestStatsCountClientsSubscribersAndCommands(t *testing.T) {
	_, s := startFake(t, Config{})
	before := s.Stats()
	if before.Clients != 0 || before.Subscribers != 0 {
		t.Fatalf("before any client: %+v", before)
	}
	// Every name of the table is reported from the start, so the set of
	// names never grows.
	for _, name := range []string{"ping", "sentinel|get-master-addr-by-name", "client|setname", UnknownCommand} {
		if n, ok := before.Commands[name]; !ok || n != 0 {
			t.Fatalf("Commands[%q] = %d, %v before any command", name, n, ok)
		}
	}

	a, b := dial(t, s.Addr()), dial(t, s.Addr())
	a.do("PING")
	a.do("ping", "x")
	a.do("PING", "a", "b") // wrong arity still counts as a PING received
	a.do("SENTINEL", "get-master-addr-by-name", "mymaster")
	a.do("SENTINEL", "nope")
	a.do("FOO")
	b.send("SUBSCRIBE", "+switch-master")
	b.read()

	got := s.Stats()
	if got.Clients != 2 || got.Subscribers != 1 {
		t.Fatalf("clients %d subscribers %d, want 2 and 1", got.Clients, got.Subscribers)
	}
	for name, want := range map[string]uint64{"ping": 3, "sentinel|get-master-addr-by-name": 1, "subscribe": 1, UnknownCommand: 2, "sentinel": 0} {
		if got.Commands[name] != want {
			t.Errorf("Commands[%q] = %d, want %d", name, got.Commands[name], want)
		}
	}
	if len(got.Commands) != len(before.Commands) {
		t.Fatalf("%d command names, %d before", len(got.Commands), len(before.Commands))
	}

	_ = b.nc.Close()
	testwait.Until(t, 5*time.Second, "the closed subscriber forgotten", func() bool {
		st := s.Stats()
		return st.Clients == 1 && st.Subscribers == 0
	})
}
