package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Explain is answered from the leader's view on every node; a follower
// cut off from the leader answers from its own view, saying first that no
// leader can be reached.
func TestExplainFromTheLeaderOrSayingThereIsNone(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	if _, err := leader.client.Monitor(ctxT(t, 5*time.Second), monitorReq("m", "127.0.0.1:1")); err != nil {
		t.Fatal(err)
	}
	follower := c.followers(leader)[0]
	testwait.For(t, 10*time.Second, "the follower's answer from the leader's view", func() error {
		ex, err := follower.client.Explain(ctxT(t, 10*time.Second), &coordinatorv1.ExplainRequest{Name: "m"})
		if err != nil {
			return err
		}
		if !ex.GetFromLeader() || ex.GetNodeId() != leader.id || ex.GetMaster() != "m" || ex.GetQuorum() != 2 {
			return fmt.Errorf("answer %v", ex)
		}
		return nil
	})

	for _, tc := range []struct {
		name string
		req  *coordinatorv1.ExplainRequest
		code codes.Code
	}{
		{"unknown master", &coordinatorv1.ExplainRequest{Name: "nosuch"}, codes.NotFound},
		{"bad name", &coordinatorv1.ExplainRequest{Name: "bad name"}, codes.InvalidArgument},
		{"plan with a timeout and force", &coordinatorv1.ExplainRequest{Name: "m",
			Manual: &coordinatorv1.ExplainManual{Force: true, Timeout: durationpb.New(time.Second)}}, codes.InvalidArgument},
	} {
		if _, err := follower.client.Explain(ctxT(t, 10*time.Second), tc.req); status.Code(err) != tc.code {
			t.Fatalf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}

	// Cut off only once the follower holds the master itself.
	testwait.Until(t, 10*time.Second, "the follower applied the monitor", func() bool {
		_, _, ok := follower.srv.FSM().Master("m")
		return ok
	})
	c.partition(follower)
	testwait.For(t, 30*time.Second, "the cut-off follower's own view", func() error {
		ex, err := follower.client.Explain(ctxT(t, 10*time.Second), &coordinatorv1.ExplainRequest{Name: "m"})
		if err != nil {
			return err
		}
		if ex.GetFromLeader() || ex.GetNodeId() != follower.id || ex.GetAction() != "blocked" ||
			len(ex.GetBlocking()) == 0 || ex.GetBlocking()[0].GetCode() != "no-leader" {
			return fmt.Errorf("answer %v", ex)
		}
		return nil
	})
	c.heal(follower)
}
