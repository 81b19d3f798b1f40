package failover

import (
	"flag"
	"os"
	"testing"
	"time"
)

// TestMain raises rapid's default number of checks: the decisions are cheap
// and the rule boundaries are narrow targets. -rapid.checks or RAPID_CHECKS
// still override it.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "rapid.checks" })
	if !explicit {
		if err := flag.Set("rapid.checks", "2000"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// t0 is an arbitrary fixed instant; tests express every time relative to it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

const ms = time.Millisecond
