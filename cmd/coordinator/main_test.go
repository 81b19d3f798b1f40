package main

import (
	"bytes"
	"os"
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

func TestEmptyBootstrap(t *testing.T) {
	base := []string{"--id", "n1", "--data-dir", t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		env  *string // nil: COORDINATOR_BOOTSTRAP unset
		want string
	}{
		{name: "empty flag", args: []string{"--bootstrap="}, want: "--bootstrap is empty: want id=host:port,..."},
		{name: "empty flag, separate value", args: []string{"--bootstrap", ""}, want: "--bootstrap is empty: want id=host:port,..."},
		{name: "blank flag", args: []string{"--bootstrap", " "}, want: "--bootstrap is empty: want id=host:port,..."},
		{name: "empty variable", env: new(""), want: "--bootstrap (from COORDINATOR_BOOTSTRAP) is empty: want id=host:port,..."},
		{name: "empty flag over a good variable", args: []string{"--bootstrap="}, env: new("n1=127.0.0.1:7000"), want: "--bootstrap is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv("COORDINATOR_BOOTSTRAP", *tc.env)
			}
			var stderr bytes.Buffer
			code := run(append(base, tc.args...), &stderr)
			if code != 1 || !strings.HasPrefix(stderr.String(), "coordinator: ") || !strings.Contains(stderr.String(), tc.want) ||
				strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("%q: exit %d, stderr %q; want exit 1 and one line with %q", tc.args, code, stderr.String(), tc.want)
			}
		})
	}
}

func TestMetricsAddrFlag(t *testing.T) {
	base := []string{"--id", "n1", "--data-dir", t.TempDir()}
	var stderr bytes.Buffer
	if code := run(append(base, "--metrics-addr", "localhost"), &stderr); code != 1 ||
		!strings.Contains(stderr.String(), `--metrics-addr: address "localhost" is not host:port`) {
		t.Errorf("bad --metrics-addr: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	t.Setenv("COORDINATOR_METRICS_ADDR", "nohost:x")
	if code := run(base, &stderr); code != 1 || !strings.Contains(stderr.String(), "--metrics-addr") {
		t.Errorf("bad COORDINATOR_METRICS_ADDR: exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"--help"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "COORDINATOR_METRICS_ADDR") {
		t.Errorf("--help: exit %d, no --metrics-addr with its variable in %q", code, stderr.String())
	}
}

func TestPingPeriodFlag(t *testing.T) {
	base := []string{"--id", "n1", "--data-dir", t.TempDir()}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"--ping-period", "often"}, want: `--ping-period "often": want 0 (automatic) or a duration such as 100ms`},
		{args: []string{"--ping-period", "-1s"}, want: `--ping-period "-1s"`},
		{args: []string{"--ping-period", "5ms"}, want: "--ping-period 5ms: want 0 (down-after/10, within 50ms and 1s) or 10ms to 24h0m0s"},
		{env: "1ms", want: "--ping-period 1ms"},
	} {
		if tc.env != "" {
			t.Setenv("COORDINATOR_PING_PERIOD", tc.env)
		}
		var stderr bytes.Buffer
		if code := run(append(base, tc.args...), &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v (env %q): exit %d, stderr %q; want 1 and %q", tc.args, tc.env, code, stderr.String(), tc.want)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "COORDINATOR_PING_PERIOD") ||
		!strings.Contains(stderr.String(), "down-after/10") {
		t.Errorf("--help: exit %d, no ping-period with its variable in %q", code, stderr.String())
	}
}

func TestRestoreAndRecoverFlags(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--id", "n1", "--data-dir", dir + "/data", "--raft-addr", "127.0.0.1:7001", "--sentinel-addr", "127.0.0.1:0"}
	missing := dir + "/none.snap"
	junk := dir + "/junk.snap"
	if err := os.WriteFile(junk, []byte("not a snapshot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--restore", missing}, want: "--restore: open " + missing},
		{args: []string{"--restore", junk}, want: "not a Raftinel snapshot file"},
		{args: []string{"--recover", "--join", "127.0.0.1:7100"}, want: "--restore and --recover start a one-node cluster"},
		{args: []string{"--recover", "--bootstrap", "n1=127.0.0.1:7001"}, want: "leave out --bootstrap and --join"},
		{args: []string{"--recover"}, want: "holds no Raft state"},
		{env: map[string]string{"COORDINATOR_RECOVER": "maybe"}, want: `COORDINATOR_RECOVER="maybe": want true or false`},
	} {
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		var stderr bytes.Buffer
		if code := run(append(base, tc.args...), &stderr); code == 0 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %v: exit %d, stderr %q; want a failure with %q", tc.args, tc.env, code, stderr.String(), tc.want)
		}
		for k := range tc.env {
			os.Unsetenv(k)
		}
	}
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "COORDINATOR_RESTORE") ||
		!strings.Contains(stderr.String(), "COORDINATOR_RECOVER") {
		t.Errorf("--help: exit %d, no --restore or --recover with their variables in %q", code, stderr.String())
	}
}

func TestRedisTLSFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("not.pem", "hello\n")
	missing := dir + "/missing.pem"
	base := []string{"--id", "n1", "--data-dir", t.TempDir(), "--grpc-addr", "127.0.0.1:1", "--sentinel-addr", "", "--raft-addr", "127.0.0.1:1"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "cert without key", args: []string{"--redis-tls-ca", notPEM, "--redis-tls-cert", notPEM},
			want: "--redis-tls-cert " + notPEM + " is given without --redis-tls-key"},
		{name: "key without cert", args: []string{"--redis-tls-ca", notPEM, "--redis-tls-key", notPEM},
			want: "--redis-tls-key " + notPEM + " is given without --redis-tls-cert"},
		{name: "cert without CA", args: []string{"--redis-tls-cert", notPEM, "--redis-tls-key", notPEM},
			want: "need --redis-tls-ca"},
		{name: "server name without CA", env: map[string]string{"COORDINATOR_REDIS_TLS_SERVER_NAME": "redis.internal"},
			want: "need --redis-tls-ca"},
		{name: "unreadable CA", args: []string{"--redis-tls-ca", missing}, want: "--redis-tls-ca: open " + missing},
		{name: "CA not PEM", env: map[string]string{"COORDINATOR_REDIS_TLS_CA": notPEM},
			want: "--redis-tls-ca " + notPEM + ": no PEM certificate in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			code := run(append(append([]string{}, base...), tc.args...), &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("%q: exit %d, stderr %q; want exit 1 and %q", tc.args, code, stderr.String(), tc.want)
			}
		})
	}
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, &stderr); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, v := range []string{"COORDINATOR_REDIS_TLS_CA", "COORDINATOR_REDIS_TLS_CERT", "COORDINATOR_REDIS_TLS_KEY",
		"COORDINATOR_REDIS_TLS_SERVER_NAME", "tls-replication", "tls-auth-clients"} {
		if !strings.Contains(stderr.String(), v) {
			t.Errorf("--help does not mention %s", v)
		}
	}
}

func TestMaxStalenessFlag(t *testing.T) {
	base := []string{"--id", "n1", "--data-dir", t.TempDir()}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"--max-staleness", "soon"}, want: `--max-staleness "soon": want auto, 0 (always answer) or a duration such as 2s`},
		{args: []string{"--max-staleness", "-1s"}, want: `--max-staleness "-1s"`},
		{env: "later", want: `--max-staleness "later"`},
	} {
		if tc.env != "" {
			t.Setenv("COORDINATOR_MAX_STALENESS", tc.env)
		}
		var stderr bytes.Buffer
		if code := run(append(base, tc.args...), &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %q: exit %d, %q; want exit 1 with %q", tc.args, tc.env, code, stderr.String(), tc.want)
		}
	}
}

func TestMaxStalenessHelp(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"--help"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "COORDINATOR_MAX_STALENESS") ||
		!strings.Contains(stderr.String(), `(default "auto")`) {
		t.Errorf("--help: exit %d, no max-staleness with its default and variable in %q", code, stderr.String())
	}
}

func TestSentinelBusyPollFlag(t *testing.T) {
	var help bytes.Buffer
	if code := run([]string{"--help"}, &help); code != 0 || !strings.Contains(help.String(), "COORDINATOR_SENTINEL_BUSY_POLL") ||
		!strings.Contains(help.String(), `(default "50µs")`) {
		t.Errorf("--help: exit %d, no sentinel-busy-poll with its default and variable in %q", code, help.String())
	}
	base := []string{"--id", "n1", "--data-dir", t.TempDir()}
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"--sentinel-busy-poll", "fast"}, want: `--sentinel-busy-poll "fast": want 0 (off) to 1ms, such as 50us`},
		{args: []string{"--sentinel-busy-poll", "-1us"}, want: `--sentinel-busy-poll "-1us"`},
		{args: []string{"--sentinel-busy-poll", "2ms"}, want: `--sentinel-busy-poll "2ms"`},
		{env: "1s", want: `--sentinel-busy-poll "1s"`},
	} {
		if tc.env != "" {
			t.Setenv("COORDINATOR_SENTINEL_BUSY_POLL", tc.env)
		}
		var stderr bytes.Buffer
		if code := run(append(base, tc.args...), &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v %q: exit %d, %q; want exit 1 with %q", tc.args, tc.env, code, stderr.String(), tc.want)
		}
	}
}
