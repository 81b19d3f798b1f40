package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/server/sentinel"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// withInfo is a status carrying an ErrorInfo of the given domain.
func withInfo(t *testing.T, code codes.Code, msg, domain string, reason fsm.Reason) error {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: string(reason), Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestToStatusAndReasonOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		code   codes.Code
		reason fsm.Reason
	}{
		{"in progress", &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonFailoverInProgress, Msg: "busy"},
			codes.FailedPrecondition, fsm.ReasonFailoverInProgress},
		{"no good replica", &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonNoGoodReplica, Msg: "none"},
			codes.FailedPrecondition, fsm.ReasonNoGoodReplica},
		{"unknown master", fsm.UnknownMaster("x"), codes.NotFound, fsm.ReasonUnknownMaster},
		{"wrapped", fmt.Errorf("context: %w", fsm.UnknownMaster("x")), codes.NotFound, fsm.ReasonUnknownMaster},
		{"kind without reason", &fsm.Error{Kind: fsm.Invalid, Msg: "bad"}, codes.InvalidArgument, ""},
		{"not leader", &notLeaderError{}, codes.Unavailable, ""},
		{"plain", errors.New("boom"), codes.Internal, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReasonOf(tc.err); got != tc.reason {
				t.Errorf("ReasonOf(local) = %q, want %q", got, tc.reason)
			}
			st := toStatus(tc.err)
			if status.Code(st) != tc.code || ReasonOf(st) != tc.reason {
				t.Errorf("toStatus: %v with reason %q, want %v with %q", status.Code(st), ReasonOf(st), tc.code, tc.reason)
			}
			if status.Convert(st).Message() != tc.err.Error() && tc.name != "wrapped" {
				t.Errorf("toStatus message %q, want %q", status.Convert(st).Message(), tc.err.Error())
			}
			if again := toStatus(st); !proto.Equal(status.Convert(again).Proto(), status.Convert(st).Proto()) {
				t.Errorf("a status is mapped again: %v, was %v", again, st)
			}
			if n := len(status.Convert(st).Details()); (tc.reason == "" && n != 0) || (tc.reason != "" && n != 1) {
				t.Errorf("%d details", n)
			}
		})
	}
	if got := ReasonOf(withInfo(t, codes.FailedPrecondition, "x", "example.com", fsm.ReasonFailoverInProgress)); got != "" {
		t.Errorf("a reason of another domain read as %q", got)
	}
	if ReasonOf(nil) != "" {
		t.Error("ReasonOf(nil) is not empty")
	}
}

func TestSentinelErrorMapping(t *testing.T) {
	const setText = "Invalid argument '0' for SENTINEL SET 'quorum'"
	for _, tc := range []struct {
		name string
		err  error
		want error // compared with errors.Is for the sentinel package's values, else by text
	}{
		{"nil", nil, nil},
		{"in progress, here", &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonFailoverInProgress, Msg: "Failover already in progress for \"m\""}, sentinel.ErrInProgress},
		{"in progress, from the leader", toStatus(&fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonFailoverInProgress, Msg: "x"}), sentinel.ErrInProgress},
		{"no good replica, here", &fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonNoGoodReplica, Msg: "x"}, sentinel.ErrNoGoodReplica},
		{"no good replica, from the leader", toStatus(&fsm.Error{Kind: fsm.FailedPrecondition, Reason: fsm.ReasonNoGoodReplica, Msg: "x"}), sentinel.ErrNoGoodReplica},
		{"unknown master, here", fsm.UnknownMaster("m"), sentinel.ErrNoSuchMaster},
		{"unknown master, from the leader", toStatus(fsm.UnknownMaster("m")), sentinel.ErrNoSuchMaster},
		{"NotFound without a reason", status.Error(codes.NotFound, "gone"), sentinel.ErrNoSuchMaster},
		{"duplicate, here", &fsm.Error{Kind: fsm.AlreadyExists, Msg: "Duplicate master name"}, errDuplicateMaster},
		{"duplicate, from the leader", status.Error(codes.AlreadyExists, "Duplicate master name"), errDuplicateMaster},
		{"invalid SET, here", &fsm.Error{Kind: fsm.Invalid, Msg: setText}, errors.New(setText)},
		{"invalid SET, from the leader", status.Error(codes.InvalidArgument, setText), errors.New(setText)},
		{"prefix without a reason is only text", status.Error(codes.FailedPrecondition, "INPROG look-alike"), errors.New("INPROG look-alike")},
		{"reason of another domain is only text", withInfo(t, codes.FailedPrecondition, "busy", "example.com", fsm.ReasonFailoverInProgress), errors.New("busy")},
		{"not leader", &notLeaderError{}, errors.New((&notLeaderError{}).Error())},
		{"no quorum", errNoQuorum, errors.New(errNoQuorum.Error())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := sentinelError(tc.err)
			switch {
			case tc.want == nil:
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
			case errors.Is(tc.want, sentinel.ErrInProgress), errors.Is(tc.want, sentinel.ErrNoGoodReplica),
				errors.Is(tc.want, sentinel.ErrNoSuchMaster), errors.Is(tc.want, errDuplicateMaster):
				if !errors.Is(got, tc.want) {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			default:
				if got == nil || got.Error() != tc.want.Error() {
					t.Fatalf("got %v, want the text %q", got, tc.want)
				}
			}
		})
	}
}

// A refusal answered by a follower carries the same status as the leader's
// own answer: code, message and the reason detail.
func TestReasonSurvivesForward(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	c.registered()
	c.sentinelsRegistered()
	follower := c.followers(leader)[0]

	// "busy" has a failover running that cannot end (its candidate does
	// not answer, and failover-timeout is an hour); "lonely" has no replica.
	monitorIdle(t, leader.client, "busy")
	monitorIdle(t, leader.client, "lonely")
	candidate := unusedAddr(t)
	mustApply(t, leader.srv, &fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: &fsmv1.UpdateReplicas{
		Master: "busy", Replicas: []*fsmv1.Replica{{Address: candidate}}}}})
	mustApply(t, leader.srv, &fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: &fsmv1.BeginFailover{
		Master: "busy", Reason: "manual", Candidate: candidate}}})
	testwait.Until(t, 10*time.Second, "the follower to see the failover", func() bool {
		m, _, _ := follower.srv.FSM().Master("busy")
		return m.GetFailover() != nil
	})

	forced := func(name string) func(coordinatorv1.CoordinatorServiceClient) error {
		return func(api coordinatorv1.CoordinatorServiceClient) error {
			_, err := api.Failover(ctxT(t, 10*time.Second), &coordinatorv1.FailoverRequest{Name: name, Force: true, NoWait: true})
			return err
		}
	}
	for _, tc := range []struct {
		name     string
		call     func(coordinatorv1.CoordinatorServiceClient) error
		code     codes.Code
		reason   fsm.Reason
		sentinel string // the reply to SENTINEL FAILOVER on the follower; "" when not a failover
	}{
		{"failover in progress", forced("busy"), codes.FailedPrecondition, fsm.ReasonFailoverInProgress, "INPROG Failover already in progress"},
		{"no good replica", forced("lonely"), codes.FailedPrecondition, fsm.ReasonNoGoodReplica, "NOGOODSLAVE No suitable replica to promote"},
		{"failover of an unknown master", forced("nope"), codes.NotFound, fsm.ReasonUnknownMaster, ""},
		{"remove an unknown master", func(api coordinatorv1.CoordinatorServiceClient) error {
			_, err := api.Remove(ctxT(t, 10*time.Second), &coordinatorv1.RemoveRequest{Name: "nope"})
			return err
		}, codes.NotFound, fsm.ReasonUnknownMaster, ""},
		{"set on an unknown master", func(api coordinatorv1.CoordinatorServiceClient) error {
			_, err := api.Set(ctxT(t, 10*time.Second), &coordinatorv1.SetRequest{Name: "nope",
				Options: []*coordinatorv1.Option{{Key: "quorum", Value: "2"}}})
			return err
		}, codes.NotFound, fsm.ReasonUnknownMaster, ""},
		{"read of an unknown master", func(api coordinatorv1.CoordinatorServiceClient) error {
			_, err := api.GetMaster(ctxT(t, 10*time.Second), &coordinatorv1.GetMasterRequest{Name: "nope"})
			return err
		}, codes.NotFound, fsm.ReasonUnknownMaster, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onLeader := status.Convert(tc.call(leader.client))
			onFollower := status.Convert(tc.call(follower.client))
			if onLeader.Code() != tc.code || ReasonOf(onLeader.Err()) != tc.reason {
				t.Fatalf("leader: %v with reason %q, want %v with %q", onLeader.Code(), ReasonOf(onLeader.Err()), tc.code, tc.reason)
			}
			if !proto.Equal(onFollower.Proto(), onLeader.Proto()) {
				t.Fatalf("follower answered %v, leader %v", onFollower.Proto(), onLeader.Proto())
			}
			if tc.sentinel == "" {
				return
			}
			name := map[fsm.Reason]string{fsm.ReasonFailoverInProgress: "busy", fsm.ReasonNoGoodReplica: "lonely"}[tc.reason]
			if err := follower.srv.StartFailover(ctxT(t, 10*time.Second), name); !proto.Equal(status.Convert(err).Proto(), onLeader.Proto()) {
				t.Fatalf("StartFailover on the follower: %v, want %v", status.Convert(err).Proto(), onLeader.Proto())
			}
			err := sentinelClient(t, follower).Failover(ctxT(t, 10*time.Second), name).Err()
			if err == nil || err.Error() != tc.sentinel {
				t.Fatalf("SENTINEL FAILOVER on the follower: %v, want %q", err, tc.sentinel)
			}
		})
	}
	if m, _, _ := leader.srv.FSM().Master("lonely"); m.GetLastFailoverAtUnixNanos() != 0 {
		t.Fatalf("a refused failover was recorded: %v", m)
	}
}
