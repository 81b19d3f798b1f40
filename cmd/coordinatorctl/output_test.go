package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testMaster() *coordinatorv1.Master {
	return &coordinatorv1.Master{
		Name: "mymaster", Address: "127.0.0.1:6379", Epoch: 2,
		Settings: &coordinatorv1.MasterSettings{
			Quorum: 2, DownAfter: durationpb.New(1500 * time.Millisecond), FailoverTimeout: durationpb.New(3 * time.Minute),
			ParallelSyncs: 1, AuthUser: "app", AuthPassSet: true, MaxLagBytes: 1 << 20,
			MasterRebootDownAfterPeriod: durationpb.New(30 * time.Second),
		},
	}
}

func checkRender(t *testing.T, name string, err error, got *bytes.Buffer, want string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if got.String() != want {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestRenderStatus(t *testing.T) {
	resp := &coordinatorv1.StatusResponse{Nodes: []*coordinatorv1.NodeStatus{
		{Id: "n1", RaftAddress: "127.0.0.1:7001", GrpcAddress: "127.0.0.1:7101", Voter: true, State: "leader", LeaderId: "n1", Term: 3, LastIndex: 12, AppliedIndex: 12, LogFormat: 2, Version: "v2"},
		{Id: "n2", RaftAddress: "127.0.0.1:7002", GrpcAddress: "127.0.0.1:7102", Voter: true, State: "follower", LeaderId: "n1", Term: 3, LastIndex: 12, AppliedIndex: 11},
		{Id: "n3", RaftAddress: "127.0.0.1:7003", GrpcAddress: "127.0.0.1:7103", Voter: true, State: "unreachable", Error: "connection\nrefused"},
	}}
	var buf bytes.Buffer
	err := renderStatus(&buf, resp)
	checkRender(t, "status", err, &buf, ""+
		"ID  STATE        LEADER  TERM  LAST  APPLIED  VOTER  FORMAT  VERSION  RAFT            GRPC            ERROR\n"+
		"n1  leader       n1      3     12    12       yes    2       v2       127.0.0.1:7001  127.0.0.1:7101  -\n"+
		"n2  follower     n1      3     12    11       yes    1       -        127.0.0.1:7002  127.0.0.1:7102  -\n"+
		"n3  unreachable  -       -     -     -        yes    -       -        127.0.0.1:7003  127.0.0.1:7103  connection refused\n")

	// Without any error the column is left out; the formats follow.
	buf.Reset()
	resp.Nodes = resp.Nodes[:1]
	resp.ClusterLogFormat = 1
	resp.Features = []*coordinatorv1.LogFeature{{Kind: "format_probe", Format: 2}}
	err = renderStatus(&buf, resp)
	checkRender(t, "status without errors", err, &buf, ""+
		"ID  STATE   LEADER  TERM  LAST  APPLIED  VOTER  FORMAT  VERSION  RAFT            GRPC\n"+
		"n1  leader  n1      3     12    12       yes    2       v2       127.0.0.1:7001  127.0.0.1:7101\n"+
		"\nlog format in use: 1 (the newest every voter understands)\n"+
		"features off until every voter is upgraded: format_probe (format 2)\n")
	buf.Reset()
	resp.ClusterLogFormat = 2
	resp.Features[0].Enabled = true
	err = renderStatus(&buf, resp)
	checkRender(t, "status, format 2", err, &buf, ""+
		"ID  STATE   LEADER  TERM  LAST  APPLIED  VOTER  FORMAT  VERSION  RAFT            GRPC\n"+
		"n1  leader  n1      3     12    12       yes    2       v2       127.0.0.1:7001  127.0.0.1:7101\n"+
		"\nlog format in use: 2 (the newest every voter understands)\n"+
		"features on: format_probe (format 2)\n")
}

func TestRenderMembers(t *testing.T) {
	resp := &coordinatorv1.ListMembersResponse{LeaderId: "n2", Members: []*coordinatorv1.Member{
		{Id: "n1", RaftAddress: "127.0.0.1:7001", GrpcAddress: "127.0.0.1:7101", Voter: true},
		{Id: "n2", RaftAddress: "127.0.0.1:7002", GrpcAddress: "127.0.0.1:7102", SentinelAddress: "127.0.0.1:26379", Voter: true},
		{Id: "n3", RaftAddress: "127.0.0.1:7003", Voter: false},
	}}
	var buf bytes.Buffer
	err := renderMembers(&buf, resp)
	checkRender(t, "members", err, &buf, ""+
		"ID  VOTER  LEADER  RAFT            GRPC            SENTINEL\n"+
		"n1  yes    -       127.0.0.1:7001  127.0.0.1:7101  -\n"+
		"n2  yes    yes     127.0.0.1:7002  127.0.0.1:7102  127.0.0.1:26379\n"+
		"n3  no     -       127.0.0.1:7003  -               -\n")
}

func TestRenderMasters(t *testing.T) {
	other := &coordinatorv1.Master{Name: "cache", Address: "10.0.0.5:6380", Settings: &coordinatorv1.MasterSettings{
		Quorum: 3, DownAfter: durationpb.New(30 * time.Second), FailoverTimeout: durationpb.New(time.Minute), ParallelSyncs: 2, Maintenance: true}}
	var buf bytes.Buffer
	err := renderMasters(&buf, &coordinatorv1.ListMastersResponse{Masters: []*coordinatorv1.Master{other, testMaster()}, Index: 9})
	checkRender(t, "masters", err, &buf, ""+
		"NAME      ADDRESS         EPOCH  QUORUM  DOWN-AFTER  FAILOVER-TIMEOUT  PARALLEL-SYNCS  MAINTENANCE\n"+
		"cache     10.0.0.5:6380   0      3       30s         1m0s              2               yes\n"+
		"mymaster  127.0.0.1:6379  2      2       1.5s        3m0s              1               no\n")

	buf.Reset()
	err = renderMasters(&buf, &coordinatorv1.ListMastersResponse{})
	checkRender(t, "no masters", err, &buf,
		"NAME  ADDRESS  EPOCH  QUORUM  DOWN-AFTER  FAILOVER-TIMEOUT  PARALLEL-SYNCS  MAINTENANCE\n")
}

func TestRenderMaster(t *testing.T) {
	var buf bytes.Buffer
	err := renderMaster(&buf, &coordinatorv1.GetMasterResponse{Master: testMaster(), Index: 12})
	checkRender(t, "master", err, &buf, ""+
		"name                             mymaster\n"+
		"address                          127.0.0.1:6379\n"+
		"epoch                            2\n"+
		"quorum                           2\n"+
		"down-after-milliseconds          1500 (1.5s)\n"+
		"failover-timeout                 180000 (3m0s)\n"+
		"parallel-syncs                   1\n"+
		"auth-user                        app\n"+
		"auth-pass                        set\n"+
		"max-lag                          1048576\n"+
		"ping-period                      0 (automatic)\n"+
		"master-reboot-down-after-period  30000 (30s)\n"+
		"maintenance                      no\n"+
		"index                            12\n")

	m := testMaster()
	m.Settings.AuthUser, m.Settings.AuthPassSet = "", false
	buf.Reset()
	err = renderMaster(&buf, &coordinatorv1.GetMasterResponse{Master: m})
	if err != nil || !strings.Contains(buf.String(), "auth-user                        -\n") || !strings.Contains(buf.String(), "auth-pass                        unset\n") {
		t.Errorf("master without credentials:\n%s (err %v)", &buf, err)
	}

	m = testMaster()
	m.Settings.PingPeriod = durationpb.New(100 * time.Millisecond)
	buf.Reset()
	if err := renderMaster(&buf, &coordinatorv1.GetMasterResponse{Master: m}); err != nil || !strings.Contains(buf.String(), "ping-period                      100 (100ms)\n") {
		t.Errorf("master with a ping-period:\n%s (err %v)", &buf, err)
	}
}

func TestRenderMasterDetail(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 123e6, time.UTC))
	d := &coordinatorv1.MasterDetail{
		Master: testMaster(), Odown: true, MasterOffset: 900, LastFailoverAt: at,
		Replicas: []*coordinatorv1.Replica{
			{Address: "127.0.0.1:6380", Role: "slave", MasterAddress: "127.0.0.1:6379", MasterLinkUp: true, Offset: 900, Priority: 100, Announced: true},
			{Address: "127.0.0.1:6381", Role: "slave", MasterAddress: "127.0.0.1:6379", MasterLinkDown: durationpb.New(3 * time.Second),
				Offset: 400, Lag: 500, Priority: 0, Announced: true, Sdown: true, Disconnected: true},
		},
		Votes: []*coordinatorv1.Vote{{NodeId: "n1", Down: true, At: at, Reason: "no valid reply for 1s"}, {NodeId: "n2", At: at}},
		Failover: &coordinatorv1.FailoverJournal{Phase: "promoting", Reason: "odown", Candidate: "127.0.0.1:6380", OldMaster: "127.0.0.1:6379", StartedAt: at,
			Rejected:       []*coordinatorv1.Rejection{{Address: "127.0.0.1:6381", Reason: "sdown"}},
			FenceWaitUntil: at, FenceWaitReason: "old master unreachable"},
		Fence:  &coordinatorv1.FenceStatus{Address: "127.0.0.1:6379", MinReplicas: 2, MaxLag: durationpb.New(2 * time.Second), At: at, Reason: "every replica (2) acknowledges within fence-lag"},
		Events: []*coordinatorv1.Event{{At: at, Type: "+odown", Payload: "master mymaster 127.0.0.1 6379 #quorum 2/2"}},
	}
	var buf bytes.Buffer
	err := renderMasterDetail(&buf, &coordinatorv1.GetMasterDetailResponse{Detail: d, Index: 12})
	for _, want := range []string{
		"name                             mymaster\n",
		"odown                            yes\n",
		"last-failover                    2026-12-01T10:00:00.123Z\n",
		"127.0.0.1:6380  slave  127.0.0.1:6379  up       900     0    100       -\n",
		"127.0.0.1:6381  slave  127.0.0.1:6379  down 3s  400     500  0         s_down,disconnected\n",
		"n1    down  2026-12-01T10:00:00.123Z  no valid reply for 1s\n",
		"n2    up    2026-12-01T10:00:00.123Z  -\n",
		"failover                 promoting\n",
		"fence-wait               until 2026-12-01T10:00:00.123Z: old master unreachable\n",
		"fence-set                        min-replicas-to-write 2 min-replicas-max-lag 2 on 127.0.0.1:6379 (every replica (2) acknowledges within fence-lag)\n",
		"rejected 127.0.0.1:6381  sdown\n",
		"+odown  master mymaster 127.0.0.1 6379 #quorum 2/2\n",
	} {
		if err != nil || !strings.Contains(buf.String(), want) {
			t.Fatalf("master detail lacks %q (err %v):\n%s", want, err, &buf)
		}
	}

	buf.Reset()
	err = renderMasterDetail(&buf, &coordinatorv1.GetMasterDetailResponse{Detail: &coordinatorv1.MasterDetail{Master: testMaster()}})
	if err != nil || !strings.Contains(buf.String(), "failover  none in progress\n") {
		t.Fatalf("master without a failover (err %v):\n%s", err, &buf)
	}
}

func TestWriteJSONIsStableWithProtoNames(t *testing.T) {
	resp := &coordinatorv1.ListMastersResponse{Masters: []*coordinatorv1.Master{testMaster()}, Index: 12}
	var first bytes.Buffer
	if err := writeJSON(&first, resp); err != nil {
		t.Fatal(err)
	}
	want := `{
  "masters": [
    {
      "name": "mymaster",
      "address": "127.0.0.1:6379",
      "epoch": "2",
      "settings": {
        "quorum": 2,
        "down_after": "1.500s",
        "failover_timeout": "180s",
        "parallel_syncs": 1,
        "auth_user": "app",
        "auth_pass": "",
        "auth_pass_set": true,
        "max_lag_bytes": "1048576",
        "ping_period": null,
        "master_reboot_down_after_period": "30s",
        "notification_script": "",
        "client_reconfig_script": "",
        "webhook_url": "",
        "maintenance": false,
        "fence_lag": null
      }
    }
  ],
  "index": "12"
}
`
	if first.String() != want {
		t.Fatalf("writeJSON:\n%s\nwant:\n%s", &first, want)
	}
	for range 20 {
		var again bytes.Buffer
		if err := writeJSON(&again, resp); err != nil || again.String() != first.String() {
			t.Fatalf("writeJSON is not byte-stable:\n%s\nvs\n%s", &again, &first)
		}
	}
	// Scripts may read it with any JSON library, and it round-trips.
	if !json.Valid(first.Bytes()) {
		t.Fatal("writeJSON output is not valid JSON")
	}
	back := &coordinatorv1.ListMastersResponse{}
	if err := protojson.Unmarshal(first.Bytes(), back); err != nil || !proto.Equal(back, resp) {
		t.Fatalf("round trip = %v, %v", back, err)
	}
}

func TestWriteJSONEmitsUnpopulatedFields(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSON(&buf, &coordinatorv1.StatusResponse{Nodes: []*coordinatorv1.NodeStatus{{Id: "n1", State: "unreachable"}}}); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"leader_id": ""`, `"term": "0"`, `"voter": false`, `"applied_index": "0"`, `"error": ""`} {
		if !strings.Contains(buf.String(), field) {
			t.Errorf("missing %s in\n%s", field, &buf)
		}
	}
}

func TestDescribeOptionsHidesPassword(t *testing.T) {
	got := describeOptions([][2]string{{"quorum", "3"}, {"AUTH-PASS", "s3cret"}})
	if want := "quorum 3, AUTH-PASS (hidden)"; got != want {
		t.Errorf("describeOptions = %q, want %q", got, want)
	}
}
