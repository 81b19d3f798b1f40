package server

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// With Raft's CommitTimeout at an hour, the leader sends no idle
// AppendEntries, and a follower learns that an entry is committed only
// from the next entry: the barrier runCommitNudges appends after each
// commit. Without it the followers never apply the Monitor below (nor,
// before it, the nodes' registrations).
func TestFollowersApplyCommitsWithoutIdleAppendEntries(t *testing.T) {
	c := newTestCluster(t, 3, func(rc *raft.Config) { rc.CommitTimeout = time.Hour })
	leader := c.leader()
	c.registered()
	_, err := leader.client.Monitor(ctxT(t, 10*time.Second), &coordinatorv1.MonitorRequest{Name: "nudged", Address: "127.0.0.1:1",
		Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(time.Hour), FailoverTimeout: durationpb.New(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range c.followers(leader) {
		testwait.Until(t, 10*time.Second, f.id+" applies the Monitor", func() bool {
			_, _, ok := f.srv.FSM().Master("nudged")
			return ok
		})
	}
}
