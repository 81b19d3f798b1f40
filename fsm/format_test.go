package fsm

import (
	"errors"
	"strings"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// A new Command kind without a line in kindFormat would be written to
// clusters whose older nodes stop on it.
func TestEveryCommandKindHasAFormat(t *testing.T) {
	fields := kindField.Fields()
	for i := range fields.Len() {
		name := fields.Get(i).Name()
		f, ok := kindFormat[name]
		if !ok {
			t.Errorf("Command kind %s has no entry in fsm/format.go's kindFormat: add it with Format2 (a new kind) so that leaders write it only once every voter understands it", name)
			continue
		}
		if f < Format1 || f > newestFormat() {
			t.Errorf("Command kind %s has format %d", name, f)
		}
	}
	for name := range kindFormat {
		if fields.ByName(name) == nil {
			t.Errorf("kindFormat lists %s, which is not a Command kind", name)
		}
	}
}

func TestFormatOf(t *testing.T) {
	if got := FormatOf(&fsmv1.Command{Kind: &fsmv1.Command_Promoted{Promoted: &fsmv1.Promoted{}}}); got != Format1 {
		t.Errorf("promoted: format %d, want 1", got)
	}
	if got := FormatOf(probe()); got != Format2 {
		t.Errorf("format_probe: format %d, want 2", got)
	}
	if got := FormatOf(&fsmv1.Command{}); got <= newestFormat() {
		t.Errorf("a command without a kind has format %d, want one no binary writes", got)
	}
}

func probe() *fsmv1.Command {
	return &fsmv1.Command{Kind: &fsmv1.Command_FormatProbe{FormatProbe: &fsmv1.FormatProbe{Format: 2}}}
}

func TestCheckFormat(t *testing.T) {
	v1 := Voter{ID: "n2", Node: &fsmv1.Node{Id: "n2"}} // an older binary: no format advertised
	v2 := Voter{ID: "n1", Node: &fsmv1.Node{Id: "n1", LogFormat: 2}}
	unregistered := Voter{ID: "n3"}
	old := &fsmv1.Command{Kind: &fsmv1.Command_ReportVote{ReportVote: &fsmv1.ReportVote{}}}
	for _, tc := range []struct {
		name    string
		cmd     *fsmv1.Command
		voters  []Voter
		refused string
	}{
		{"format 1 with an old voter", old, []Voter{v1, v2}, ""},
		{"format 1 with an unregistered voter", old, []Voter{unregistered}, ""},
		{"format 2, all voters new", probe(), []Voter{v2}, ""},
		{"format 2 with an old voter", probe(), []Voter{v2, v1}, "n2 (format 1)"},
		{"format 2 with an unregistered voter", probe(), []Voter{v2, unregistered}, "n3 (format 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFormat(tc.cmd, tc.voters)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *Error
			if !IsFormatRefusal(err) || !errors.As(err, &fe) || fe.Kind != FailedPrecondition {
				t.Fatalf("got %v, want a FailedPrecondition with reason %s", err, ReasonLogFormat)
			}
			if !strings.Contains(fe.Msg, tc.refused) || !strings.Contains(fe.Msg, "format_probe") {
				t.Errorf("message %q should name the kind and %s", fe.Msg, tc.refused)
			}
		})
	}
}

func TestFeaturesAndClusterFormat(t *testing.T) {
	voters := []Voter{{ID: "n1", Node: &fsmv1.Node{LogFormat: 2}}, {ID: "n2", Node: &fsmv1.Node{LogFormat: 1}}}
	if got := ClusterFormat(voters); got != 1 {
		t.Errorf("cluster format %d, want 1", got)
	}
	enabled := func(fs []Feature, kind string) (on, found bool) {
		for _, f := range fs {
			if f.Kind == kind {
				return f.Enabled, true
			}
		}
		return false, false
	}
	if on, found := enabled(Features(voters), "format_probe"); !found || on {
		t.Errorf("features %+v, want format_probe off", Features(voters))
	}
	voters[1].Node.LogFormat = 2
	for _, kind := range []string{"format_probe", "option fence"} {
		if on, _ := enabled(Features(voters), kind); !on {
			t.Errorf("features %+v, want %s on", Features(voters), kind)
		}
	}
}

// A binary built with a lower format plays an older release: it refuses
// to decode what it would not know, and so stops, as the older one would.
func TestLowerBuildFormatRefusesNewerEntries(t *testing.T) {
	defer func(old string) { buildLogFormat = old }(buildLogFormat)
	buildLogFormat = "1"
	if LogFormat() != 1 {
		t.Fatalf("LogFormat %d, want 1", LogFormat())
	}
	data, err := Encode(probe())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(data); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("decode: %v, want a refusal naming format 2", err)
	}
	if err := CheckFormat(probe(), nil); err == nil {
		t.Error("a format-1 binary would write a format-2 entry")
	}
}

func TestOptionsOfALaterFormatNeedIt(t *testing.T) {
	set := func(keys ...string) *fsmv1.Command {
		so := &fsmv1.SetMasterOptions{Name: "m"}
		for _, k := range keys {
			so.Options = append(so.Options, &fsmv1.Option{Key: k, Value: "x"})
		}
		return &fsmv1.Command{Kind: &fsmv1.Command_SetMasterOptions{SetMasterOptions: so}}
	}
	if got := FormatOf(set("down-after-milliseconds", "quorum")); got != Format1 {
		t.Errorf("Format1 options: format %d", got)
	}
	if got := FormatOf(set("quorum", "WEBHOOK-URL")); got != Format2 {
		t.Errorf("webhook-url: format %d, want 2", got)
	}
	old := []Voter{{ID: "n1", Node: &fsmv1.Node{Id: "n1", LogFormat: Format2}}, {ID: "n2", Node: &fsmv1.Node{Id: "n2"}}}
	err := CheckFormat(set("notification-script"), old)
	if !IsFormatRefusal(err) || !strings.Contains(err.Error(), "option notification-script") || !strings.Contains(err.Error(), "n2 (format 1)") {
		t.Errorf("notification-script with a format-1 voter: %v", err)
	}
}
