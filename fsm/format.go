package fsm

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Log formats. A log format is a set of Command kinds: format N holds every
// kind of the formats below it and the kinds the table below gives N. A node
// advertises the newest format its binary understands (Node.log_format), and
// the leader writes a kind only once every voter advertises a format that
// includes it (CheckFormat), so a rolling upgrade never hands an old node an
// entry it cannot decode.
const (
	// Format1 is every kind written before formats existed. A node that
	// advertises no format (an older binary) understands this one.
	Format1 uint32 = 1
	// Format2 is the first format after versioning: the kinds other
	// features add are entered in kindFormat with it.
	Format2 uint32 = 2
)

// kindFormat maps each Command kind (the oneof field's name in
// coordinator/fsm/v1) to the format that introduced it. Every kind must have
// an entry (TestEveryCommandKindHasAFormat fails otherwise); a new kind is
// one line here with Format2 (or the newest format, once Format2 has
// shipped in a release: formats only grow).
var kindFormat = map[protoreflect.Name]uint32{
	"register_node":        Format1,
	"deregister_node":      Format1,
	"monitor_master":       Format1,
	"remove_master":        Format1,
	"set_master_options":   Format1,
	"reset_master":         Format1,
	"report_vote":          Format1,
	"update_replicas":      Format1,
	"set_objective_down":   Format1,
	"begin_failover":       Format1,
	"abort_failover":       Format1,
	"promoted":             Format1,
	"replica_reconfigured": Format1,
	"finish_failover":      Format1,
	"record_repair":        Format1,
	"handover_paused":      Format1,

	// Format 2.
	"format_probe":       Format2,
	"hook_progress":      Format2,
	"fence_set":          Format2,
	"fence_wait_started": Format2,
}

// optionFormat maps each per-master option (SENTINEL SET's name) that a
// format after Format1 added to that format. A SetMasterOptions entry is a
// Format1 kind, but an older binary refuses an option it does not know, so
// the same entry would apply differently on it: an entry carrying one of
// these needs its format like a new kind does.
var optionFormat = map[string]uint32{
	"notification-script":    Format2,
	"client-reconfig-script": Format2,
	"webhook-url":            Format2,
	"maintenance":            Format2,
	"fence":                  Format2,
	"fence-lag":              Format2,
}

// buildLogFormat, when set at link time
// (-ldflags '-X github.com/raftinel/raftinel/fsm.buildLogFormat=1'), makes
// this binary advertise and decode only up to that format, as a binary of
// an older release would. Tests of rolling upgrades use it; releases leave
// it empty.
var buildLogFormat string

// newestFormat is the highest format in kindFormat.
func newestFormat() uint32 {
	var n uint32
	for _, f := range kindFormat {
		n = max(n, f)
	}
	return n
}

// LogFormat is the newest log format this binary understands: the newest in
// its table, or the lower one it was built with.
func LogFormat() uint32 {
	newest := newestFormat()
	if buildLogFormat == "" {
		return newest
	}
	n, err := strconv.ParseUint(buildLogFormat, 10, 32)
	if err != nil || n == 0 || uint32(n) > newest {
		panic(fmt.Sprintf("fsm: built with log format %q: want 1 to %d", buildLogFormat, newest))
	}
	return uint32(n)
}

var kindField = (&fsmv1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("kind")

// KindName is the name of a command's kind as the log format table knows
// it ("begin_failover"), or "" when the command has none.
func KindName(cmd *fsmv1.Command) string {
	f := cmd.ProtoReflect().WhichOneof(kindField)
	if f == nil {
		return ""
	}
	return string(f.Name())
}

// FormatOf is the log format a command needs: the one that introduced its
// kind, or a newer one for an option a later format added. A kind without
// an entry is a programming error caught by the tests; it is treated as
// needing a format newer than any, so it is never written.
func FormatOf(cmd *fsmv1.Command) uint32 {
	_, f := featureOf(cmd)
	return f
}

// featureOf names what in cmd needs its format ("begin_failover", or
// "option webhook-url"), and that format.
func featureOf(cmd *fsmv1.Command) (string, uint32) {
	name := KindName(cmd)
	f, ok := kindFormat[protoreflect.Name(name)]
	if !ok {
		return name, newestFormat() + 1
	}
	// MonitorMaster's settings of those options too: an older binary would
	// drop the fields it does not know.
	if ms := cmd.GetMonitorMaster().GetSettings(); ms != nil {
		for key, set := range map[string]bool{"maintenance": ms.GetMaintenance(), "fence": ms.GetFenceOff(), "fence-lag": ms.GetFenceLagS() != 0} {
			if of := optionFormat[key]; set && of > f {
				name, f = "option "+key, of
			}
		}
	}
	for _, o := range cmd.GetSetMasterOptions().GetOptions() {
		key := strings.ToLower(o.GetKey())
		if of, ok := optionFormat[key]; ok && of > f {
			name, f = "option "+key, of
		}
	}
	return name, f
}

// NodeFormat is the newest format a registered node advertises; a node
// that advertises none runs a binary from before formats existed.
func NodeFormat(n *fsmv1.Node) uint32 {
	return max(n.GetLogFormat(), Format1)
}

// ReasonLogFormat: a voter does not understand the kind of entry yet.
const ReasonLogFormat Reason = "LOG_FORMAT_TOO_OLD"

// IsFormatRefusal tells whether a write was refused because some voter
// does not understand its kind yet. A feature the leader writes on its own
// (not on an operator's request) treats that as "off for now": it logs so
// once and goes on without it, and coordinatorctl status lists it as off,
// until the last voter is upgraded.
func IsFormatRefusal(err error) bool {
	var fe *Error
	return errors.As(err, &fe) && fe.Reason == ReasonLogFormat
}

// Voter is what CheckFormat needs to know about one voter: its id and its
// membership record, nil when it has not registered yet.
type Voter struct {
	ID   string
	Node *fsmv1.Node
}

// ClusterFormat is the newest format every voter understands: the lowest
// any of them advertises (Format1 for a voter that has not registered).
func ClusterFormat(voters []Voter) uint32 {
	f := LogFormat()
	for _, v := range voters {
		f = min(f, NodeFormat(v.Node))
	}
	return f
}

// CheckFormat refuses a command whose kind some voter (or this binary) does
// not understand yet, naming them.
func CheckFormat(cmd *fsmv1.Command, voters []Voter) error {
	kind, need := featureOf(cmd)
	if need <= Format1 {
		return nil
	}
	if have := LogFormat(); need > have {
		return &Error{Kind: FailedPrecondition, Reason: ReasonLogFormat,
			Msg: fmt.Sprintf("%s entries need log format %d; this node's binary writes format %d at most: upgrade it", kind, need, have)}
	}
	var behind []string
	for _, v := range voters {
		if f := NodeFormat(v.Node); f < need {
			behind = append(behind, fmt.Sprintf("%s (format %d)", v.ID, f))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	sort.Strings(behind)
	return &Error{Kind: FailedPrecondition, Reason: ReasonLogFormat,
		Msg: fmt.Sprintf("%s entries need log format %d, which not every voter understands yet: %v; upgrade them first (coordinatorctl status shows each node's format)", kind, need, behind)}
}

// Feature is one kind of entry newer than Format1 and whether the cluster
// may write it now.
type Feature struct {
	Kind    string
	Format  uint32
	Enabled bool
}

// Features lists every kind newer than Format1, by format then name, with
// whether every voter understands it.
func Features(voters []Voter) []Feature {
	cluster := ClusterFormat(voters)
	var out []Feature
	for k, f := range kindFormat {
		if f > Format1 {
			out = append(out, Feature{Kind: string(k), Format: f, Enabled: f <= cluster})
		}
	}
	for k, f := range optionFormat {
		out = append(out, Feature{Kind: "option " + k, Format: f, Enabled: f <= cluster})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Format != out[j].Format {
			return out[i].Format < out[j].Format
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}
