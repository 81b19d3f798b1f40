// Package testbin finds the external programs that tests run
// (redis-server, prometheus, promtool): from an environment variable that
// names the file, or on PATH. A missing program skips the test, except
// under CI=true, where it fails it, so that CI never passes by skipping.
//
// testbin only looks; it starts nothing and imports no project package.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of program name: $env when set, else the one on
// PATH. install says how to get it, for the message when it is missing.
func Require(tb testing.TB, env, name, install string) string {
	tb.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			missing(tb, fmt.Sprintf("%s=%q: %v", env, p, err))
		}
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		missing(tb, fmt.Sprintf("%s not found on PATH (%s): %v", name, install, err))
	}
	return p
}

func missing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatal(why + " (CI=true, so this is a failure, not a skip)")
	}
	tb.Skip(why)
}
