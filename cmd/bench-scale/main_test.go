package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	self := os.Args[0] // any file stands in for the coordinator binary
	cases := []struct {
		name     string
		args     []string
		groups   int
		nodeArgs []string
		err      string
	}{
		{name: "defaults", args: nil, groups: 300},
		{name: "no groups measures the bare cluster", args: []string{"-groups", "0"}, groups: 0},
		{name: "negative groups", args: []string{"-groups", "-1"}, err: "-groups must not be negative"},
		{name: "node args split on spaces", args: []string{"-node-args", " --raft-heartbeat-timeout 3s  --raft-election-timeout 3s "},
			groups: 300, nodeArgs: []string{"--raft-heartbeat-timeout", "3s", "--raft-election-timeout", "3s"}},
		{name: "sentinel alone needs no coordinator binary", args: []string{"-systems", "sentinel", "-coordinator", "no-such-file"}, groups: 300},
		{name: "raftinel needs the coordinator binary", args: []string{"-systems", "raftinel", "-coordinator", "no-such-file"}, err: "coordinator binary"},
		{name: "node args must start with a flag", args: []string{"-node-args", "3s --raft-heartbeat-timeout"}, err: "-node-args must start with a flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, err := parseFlags(append([]string{"-coordinator", self}, c.args...))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.groups != c.groups || !slices.Equal(o.nodeArgs, c.nodeArgs) {
				t.Fatalf("groups %d, node args %q; want %d, %q", o.groups, o.nodeArgs, c.groups, c.nodeArgs)
			}
		})
	}
}
