package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseMsDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "1s", want: time.Second},
		{in: "1500ms", want: 1500 * time.Millisecond},
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: "2m", want: 2 * time.Minute},
		{in: " 250ms ", want: 250 * time.Millisecond},
		{in: "1000", err: "no unit"},
		{in: "0s", err: "not positive"},
		{in: "0", err: "no unit"},
		{in: "-1s", err: "not positive"},
		{in: "1.5ms", err: "whole number of milliseconds"},
		{in: "999us", err: "whole number of milliseconds"},
		{in: "soon", err: "not a duration"},
		{in: "", err: "not a duration"},
	} {
		got, err := parseMsDuration(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseMsDuration(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMsDuration(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestMsDurationFlagRemembersWhetherSet(t *testing.T) {
	var m msDuration
	if m.set || m.String() != "" {
		t.Fatalf("zero msDuration = %+v, %q; want unset and empty", m, m.String())
	}
	if err := m.Set("2s"); err != nil || !m.set || m.d != 2*time.Second {
		t.Fatalf("Set(2s) = %v, %+v", err, m)
	}
	if err := m.Set("1us"); err == nil || m.d != 2*time.Second {
		t.Fatalf("a rejected Set changed the value or passed: %v, %+v", err, m)
	}
}

func TestPositiveUint32(t *testing.T) {
	for in, ok := range map[string]bool{"1": true, "4294967295": true, "0": false, "-1": false, "4294967296": false, "x": false, "": false} {
		var p positiveUint32
		err := p.Set(in)
		if ok != (err == nil) {
			t.Errorf("Set(%q) error = %v, want ok=%v", in, err, ok)
		}
		if ok && (!p.set || p.String() != in) {
			t.Errorf("Set(%q) left %+v", in, p)
		}
	}
}

func TestOutputFormat(t *testing.T) {
	o := outputTable
	for in, ok := range map[string]bool{"table": true, "json": true, "yaml": false, "JSON": false, "": false} {
		err := o.Set(in)
		if ok != (err == nil) {
			t.Errorf("Set(%q) error = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestPositiveDuration(t *testing.T) {
	for in, ok := range map[string]bool{"5s": true, "1ms": true, "0s": false, "-1s": false, "5": false} {
		var p positiveDuration
		err := p.Set(in)
		if ok != (err == nil) {
			t.Errorf("Set(%q) error = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestOptionPairs(t *testing.T) {
	got, err := optionPairs([]string{"quorum", "3", "down-after-milliseconds", "1s"})
	if err != nil || len(got) != 2 || got[0] != [2]string{"quorum", "3"} || got[1] != [2]string{"down-after-milliseconds", "1s"} {
		t.Fatalf("optionPairs = %v, %v", got, err)
	}
	// An empty value is legal: it clears auth-user.
	if _, err := optionPairs([]string{"auth-user", ""}); err != nil {
		t.Fatalf("empty value rejected: %v", err)
	}
	for _, bad := range [][]string{nil, {"quorum"}, {"quorum", "3", "parallel-syncs"}, {"", "3"}} {
		if _, err := optionPairs(bad); err == nil {
			t.Errorf("optionPairs(%q) accepted", bad)
		}
	}
}

func TestParseAddrs(t *testing.T) {
	got, err := parseAddrs(" 127.0.0.1:7101, localhost:7102,,[::1]:7103 ")
	if err != nil || strings.Join(got, " ") != "127.0.0.1:7101 localhost:7102 [::1]:7103" {
		t.Fatalf("parseAddrs = %q, %v", got, err)
	}
	for _, bad := range []string{"", " , ", "127.0.0.1", ":7100", "host:0", "host:65536", "host:http", "a:1,b"} {
		_, err := parseAddrs(bad)
		if err == nil || exitCode(err) != exitUsage {
			t.Errorf("parseAddrs(%q) = %v; want a usage error", bad, err)
		}
	}
}
