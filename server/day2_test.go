package server

import (
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The leader writes a format-2 entry only while every voter advertises
// format 2; a voter that advertises none (an older binary) turns it off,
// and the refusal says who, with its reason, through a follower too.
func TestLogFormatGate(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	follower := c.followers(leader)[0]
	if _, err := follower.client.CheckLogFormat(ctxT(t, 5*time.Second), &coordinatorv1.CheckLogFormatRequest{}); err != nil {
		t.Fatalf("check-format with every voter on format 2: %v", err)
	}

	// The other follower's record as an older binary would have written it;
	// stopped, so that it does not register its own format again.
	old := c.followers(leader)[1]
	c.stop(old)
	rec, _ := leader.srv.FSM().Node(old.id)
	rec.LogFormat, rec.Version = 0, ""
	if _, err := leader.srv.apply(ctxT(t, 5*time.Second), &fsmv1.Command{Kind: &fsmv1.Command_RegisterNode{RegisterNode: &fsmv1.RegisterNode{Node: rec}}}); err != nil {
		t.Fatal(err)
	}
	_, err := follower.client.CheckLogFormat(ctxT(t, 5*time.Second), &coordinatorv1.CheckLogFormatRequest{})
	if status.Code(err) != codes.FailedPrecondition || ReasonOf(err) != fsm.ReasonLogFormat ||
		!strings.Contains(status.Convert(err).Message(), old.id+" (format 1)") {
		t.Fatalf("check-format with %s on format 1: %v (reason %q)", old.id, err, ReasonOf(err))
	}
	// Format-1 writes go on.
	if _, err := follower.client.Monitor(ctxT(t, 5*time.Second), monitorReq("m", "127.0.0.1:6399")); err != nil {
		t.Fatal(err)
	}
	// The leader's copy has applied the record (a follower's may lag).
	st, err := leader.client.Status(ctxT(t, 5*time.Second), &coordinatorv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetClusterLogFormat() != 1 || len(st.GetFeatures()) == 0 || st.GetFeatures()[0].GetEnabled() {
		t.Fatalf("status: format %d, features %v", st.GetClusterLogFormat(), st.GetFeatures())
	}
	for _, n := range st.GetNodes() {
		if n.GetId() != old.id && n.GetLogFormat() != fsm.LogFormat() {
			t.Fatalf("%s reports its binary's format as %d", n.GetId(), n.GetLogFormat())
		}
	}
}

// SnapshotSave through a follower returns the leader's state with its
// index, term and checksum.
func TestSnapshotSaveThroughAFollower(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	follower := c.followers(leader)[0]
	mon, err := follower.client.Monitor(ctxT(t, 5*time.Second), monitorReq("m", "127.0.0.1:6399"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := follower.client.SnapshotSave(ctxT(t, 10*time.Second), &coordinatorv1.SnapshotSaveRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(resp.GetState()); string(sum[:]) != string(resp.GetSha256()) {
		t.Fatal("checksum does not match the state")
	}
	if resp.GetLeaderId() != leader.id || resp.GetIndex() < mon.GetIndex() || resp.GetTerm() == 0 {
		t.Fatalf("snapshot from %s at index %d term %d; the monitor was index %d", resp.GetLeaderId(), resp.GetIndex(), resp.GetTerm(), mon.GetIndex())
	}
	var f fsm.SnapshotFile
	if err := f.Decode(resp.GetState(), resp.GetIndex()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.State.GetMasters()["m"]; !ok || len(f.State.GetNodes()) != 3 {
		t.Fatalf("state: masters %v, %d nodes", f.State.GetMasters(), len(f.State.GetNodes()))
	}
}
