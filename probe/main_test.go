package probe

import (
	"log/slog"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// Failed dials to killed servers are expected here; the Watcher's own
	// log (routed to t.Log) already records what matters.
	RouteGoRedisLog(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}
