package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestMaxStreamAgeFlag(t *testing.T) {
	base := []string{"--id", "n1", "--data-dir", t.TempDir()}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"--max-stream-age", "soon"}, want: `--max-stream-age "soon": want a positive duration such as 10m`},
		{args: []string{"--max-stream-age", "0s"}, want: `--max-stream-age "0s"`},
		{env: "-1s", want: `--max-stream-age "-1s"`},
	} {
		if tc.env != "" {
			t.Setenv("COORDINATOR_MAX_STREAM_AGE", tc.env)
		}
		var stderr bytes.Buffer
		if code := run(append(base, tc.args...), &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v (env %q): exit %d, stderr %q; want 1 and %q", tc.args, tc.env, code, stderr.String(), tc.want)
		}
	}
}

func TestMaxStreamAgeHelp(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "COORDINATOR_MAX_STREAM_AGE") ||
		!strings.Contains(stderr.String(), `(default "10m0s")`) {
		t.Errorf("--help: exit %d, no max-stream-age with its default and variable in %q", code, stderr.String())
	}
}
