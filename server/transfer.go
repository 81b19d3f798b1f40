package server

import (
	"context"
	"github.com/raftinel/raftinel/security"
	"time"

	"github.com/hashicorp/raft"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TransferLeadership runs on the leader (the forward interceptor sees to
// it) and hands leadership over with Raft's own transfer, which makes the
// target catch up and start an election at once.
func (a *api) TransferLeadership(ctx context.Context, req *coordinatorv1.TransferLeadershipRequest) (*coordinatorv1.TransferLeadershipResponse, error) {
	s := a.s
	if id, ok := security.IdentityFrom(ctx); ok {
		s.log.Info("audit", "who", id.Who(), "from", id.From, "action", "transfer_leadership", "to", req.GetId())
	}
	resp := &coordinatorv1.TransferLeadershipResponse{PreviousLeaderId: s.cfg.ID}
	var f raft.Future
	if id := req.GetId(); id != "" {
		target, err := s.transferTarget(id)
		if err != nil {
			return nil, err
		}
		f = s.raft.LeadershipTransferToServer(target.ID, target.Address)
	} else {
		if s.otherVoters() == 0 {
			return nil, status.Error(codes.FailedPrecondition, "no other voter to hand leadership to")
		}
		f = s.raft.LeadershipTransfer()
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.log.Info("leadership transferred", "requested", req.GetId())
	resp.LeaderId = s.awaitOtherLeader(ctx)
	return resp, nil
}

// transferTarget checks that id is another voter of the configuration.
func (s *Server) transferTarget(id string) (raft.Server, error) {
	if id == s.cfg.ID {
		return raft.Server{}, status.Errorf(codes.FailedPrecondition, "node %q is already the leader", id)
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, err
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) != id {
			continue
		}
		if srv.Suffrage != raft.Voter {
			return raft.Server{}, status.Errorf(codes.FailedPrecondition, "node %q is not a voter and cannot lead", id)
		}
		return srv, nil
	}
	return raft.Server{}, status.Errorf(codes.NotFound, "unknown node %q: not a member of the cluster", id)
}

// awaitOtherLeader waits briefly for this node to learn who leads now; an
// empty answer means the election had not settled yet.
func (s *Server) awaitOtherLeader(ctx context.Context) string {
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, id := s.raft.LeaderWithID(); id != "" && string(id) != s.cfg.ID {
			return string(id)
		}
		if time.Now().After(deadline) {
			return ""
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(10 * time.Millisecond):
		}
	}
}
