package fsm

import (
	"bytes"
	"strings"
	"testing"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func snapshotFileOf(t *testing.T) []byte {
	t.Helper()
	st := &fsmv1.State{AppliedIndex: 40, Masters: map[string]*fsmv1.Master{
		"m": {Name: "m", Address: "127.0.0.1:6379", Epoch: 3, Settings: withDefaults(&fsmv1.MasterSettings{Quorum: 2, AuthPass: "s3cret"})},
	}}
	raw, err := (&snapshot{state: st}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteSnapshotFile(&buf, SnapshotHeader{Index: 42, Term: 3, LeaderID: "n1", TakenAt: time.Unix(1, 0).UTC(), LogFormat: 2}, raw); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	f, err := ReadSnapshotFile(bytes.NewReader(snapshotFileOf(t)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Header.Index != 42 || f.Header.Term != 3 || f.Header.LeaderID != "n1" || len(f.Header.StateSHA256) != 64 {
		t.Errorf("header %+v", f.Header)
	}
	m := f.State.GetMasters()["m"]
	if m.GetEpoch() != 3 || m.GetSettings().GetAuthPass() != "s3cret" {
		t.Errorf("master %v", m)
	}
}

func TestSnapshotFileRefusesDamage(t *testing.T) {
	good := snapshotFileOf(t)
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a Raftinel snapshot file"},
		{"another file", []byte("hello\nworld\n"), "not a Raftinel snapshot file"},
		{"a flipped state byte", flip(len(good) - 5), "checksum mismatch"},
		{"cut short", good[:len(good)-3], "cut short"},
		{"trailing bytes", append(bytes.Clone(good), 'x'), "follow"},
		{"bad header", []byte(snapshotMagic + "\n{nope\n"), "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSnapshotFile(bytes.NewReader(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
