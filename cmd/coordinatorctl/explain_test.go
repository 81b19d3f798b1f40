package main

import (
	"bytes"
	"testing"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testExplain() *coordinatorv1.ExplainResponse {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &coordinatorv1.ExplainResponse{
		Master: "mymaster", Address: "10.0.0.1:6379", Epoch: 2, NodeId: "n2", FromLeader: true, Index: 40, At: timestamppb.New(at),
		Action: "blocked", Summary: "no failover now: in maintenance",
		Blocking: []*coordinatorv1.ExplainCondition{{Code: "maintenance", Detail: "in maintenance"}, {Code: "anti-flap", Detail: "wait 3s"}},
		Votes: []*coordinatorv1.ExplainVote{
			{NodeId: "n1", Down: true, Counted: true, Age: durationpb.New(400 * time.Millisecond), Address: "10.0.0.1:6379", Reason: "no valid reply"},
			{NodeId: "n3", Age: durationpb.New(7 * time.Second), Address: "10.0.0.1:6379"},
		},
		DownVotes: 1, Quorum: 2, Odown: true, Maintenance: true, AntiFlapWait: durationpb.New(3 * time.Second),
		Replicas: []*coordinatorv1.ExplainReplica{
			{Address: "10.0.0.2:6379", Eligible: true, Rank: 1, Priority: 100, Offset: 1000, RunId: "abc"},
			{Address: "10.0.0.3:6379", Reason: "priority 0", Offset: 900, Lag: 100, RunId: "def"},
		},
		Candidate: "10.0.0.2:6379",
	}
}

func TestRenderExplain(t *testing.T) {
	var buf bytes.Buffer
	err := renderExplain(&buf, testExplain())
	checkRender(t, "explain", err, &buf, ""+
		"master          mymaster at 10.0.0.1:6379, epoch 2\n"+
		"view            leader n2, index 40, at 2026-01-02T03:04:05.000Z\n"+
		"decision        blocked: no failover now: in maintenance\n"+
		"blocking        maintenance: in maintenance\n"+
		"blocking        anti-flap: wait 3s\n"+
		"candidate       10.0.0.2:6379\n"+
		"down-votes      1 of quorum 2 (committed odown: yes)\n"+
		"tilt            no\n"+
		"maintenance     yes\n"+
		"last-failover   -\n"+
		"anti-flap-wait  3s\n"+
		"failover        none in progress\n"+
		"\n"+
		"NODE  VOTE  COUNTED  AGE    ABOUT          REASON\n"+
		"n1    down  yes      400ms  10.0.0.1:6379  no valid reply\n"+
		"n3    up    no       7s     10.0.0.1:6379  -\n"+
		"\n"+
		"RANK  REPLICA        PRIORITY  OFFSET  LAG  RUN-ID  EXCLUDED\n"+
		"1     10.0.0.2:6379  100       1000    0    abc     -\n"+
		"-     10.0.0.3:6379  0         900     100  def     priority 0\n")
}

func TestRenderPlan(t *testing.T) {
	r := testExplain()
	r.FromLeader, r.Coordinated = false, true
	r.Summary = "refused: in maintenance"
	r.Blocking = r.Blocking[:1]
	r.Notes = []string{"the leader is in TILT"}
	var buf bytes.Buffer
	err := renderPlan(&buf, r)
	checkRender(t, "plan", err, &buf, ""+
		"master       mymaster at 10.0.0.1:6379, epoch 2\n"+
		"mode         coordinated (FAILOVER TO: no acknowledged write lost)\n"+
		"promote      10.0.0.2:6379\n"+
		"plan         refused: in maintenance\n"+
		"blocking     maintenance: in maintenance\n"+
		"note         the leader is in TILT\n"+
		"maintenance  yes\n"+
		"view         node n2 (not the leader's view)\n"+
		"\n"+
		"RANK  REPLICA        PRIORITY  OFFSET  LAG  RUN-ID  EXCLUDED\n"+
		"1     10.0.0.2:6379  100       1000    0    abc     -\n"+
		"-     10.0.0.3:6379  0         900     100  def     priority 0\n")
}
