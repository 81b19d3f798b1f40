package sentinel

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
)

// The clock ticks while commands read it and stops a tick after they stop,
// and a command after that reads the time afresh: an idle connection's
// idle time keeps counting from its last command.
func TestClockTicksOnlyWhileCommandsRead(t *testing.T) {
	_, s := startFake(t, Config{})
	idle := dial(t, s.Addr())
	idle.do("CLIENT", "SETNAME", "idle")
	testwait.Until(t, 5*time.Second, "the clock to stop", func() bool { return !s.clockRunning.Load() })
	stopped := time.Now()
	testwait.Until(t, 5*time.Second, "1.1 s to pass", func() bool { return time.Since(stopped) > 1100*time.Millisecond })
	if got := s.now(); got < stopped.Add(1100*time.Millisecond).UnixNano() {
		t.Errorf("a read after the clock stopped gave a time %v before the present", time.Since(time.Unix(0, got)))
	}
	other := dial(t, s.Addr())
	list, _ := other.value("CLIENT", "LIST").(string)
	var idleSecs = -1
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, "name=idle ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "idle="); ok {
				idleSecs, _ = strconv.Atoi(v)
			}
		}
	}
	if idleSecs < 1 {
		t.Errorf("idle connection shows idle=%d in CLIENT LIST, want at least 1:\n%s", idleSecs, list)
	}
}
