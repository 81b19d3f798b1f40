package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/fsm"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/protobuf/proto"
)

// MaxSnapshotBytes bounds the state a SnapshotSave reply may carry (the
// whole replicated state, with every master's events: megabytes for
// thousands of masters).
const MaxSnapshotBytes = 1 << 30

// SnapshotSave takes a snapshot through raft (the leader's state at its
// last applied index, with that index and its term) and returns the bytes
// raft stored. It reaches the leader only (forwardInterceptor).
func (a *api) SnapshotSave(ctx context.Context, _ *coordinatorv1.SnapshotSaveRequest) (*coordinatorv1.SnapshotSaveResponse, error) {
	meta, rc, err := a.s.takeSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read the snapshot: %w", err)
	}
	// Check it decodes before handing it out: a backup is only worth what
	// a restore can read.
	if err := (&fsm.SnapshotFile{}).Decode(data, meta.Index); err != nil {
		return nil, fmt.Errorf("the snapshot raft stored does not read back: %w", err)
	}
	sum := sha256.Sum256(data)
	return &coordinatorv1.SnapshotSaveResponse{
		Index: meta.Index, Term: meta.Term, State: data, Sha256: sum[:],
		LeaderId: a.s.cfg.ID, TakenAtUnixNanos: time.Now().UnixNano(),
		LogFormat: fsm.LogFormat(), Version: a.s.cfg.Version,
	}, nil
}

// takeSnapshot asks raft for a snapshot now and opens it. A user snapshot
// is persisted to the snapshot store like raft's own (and compacts the log
// the same way). When raft has nothing new to snapshot (nothing applied
// since it started from an empty log), there is nothing to save.
func (s *Server) takeSnapshot(ctx context.Context) (*raft.SnapshotMeta, io.ReadCloser, error) {
	f := s.raft.Snapshot()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return nil, nil, &fsm.Error{Kind: fsm.FailedPrecondition, Msg: "nothing to snapshot: this cluster has applied no entry yet"}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("take a snapshot: %w", err)
		}
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	return f.Open()
}

// self is this node as the only voter of a new configuration.
func self(cfg Config) raft.Configuration {
	return raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: raft.ServerAddress(cfg.RaftAddr)}}}
}

// keyCurrentTerm is hashicorp/raft's stable-store key of the current term.
var keyCurrentTerm = []byte("CurrentTerm")

// seedFromSnapshot writes a snapshot file's state into an empty data
// directory as raft's snapshot at the file's index and term, with this
// node alone in the configuration (as raft.RecoverCluster writes its
// result), and the term into the stable store, so the node starts as if
// it had installed that snapshot and elects itself in a later term. The
// old cluster's membership records are dropped: the new nodes register
// their own.
func seedFromSnapshot(f *fsm.SnapshotFile, conf raft.Configuration, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) error {
	st := proto.Clone(f.State).(*fsmv1.State)
	st.Nodes = nil
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return err
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, f.Header.Index, f.Header.Term, conf, 1, trans)
	if err != nil {
		return fmt.Errorf("create the snapshot: %w", err)
	}
	if _, err := sink.Write(data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write the snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("write the snapshot: %w", err)
	}
	return stable.SetUint64(keyCurrentTerm, f.Header.Term)
}

// recoverPeerTimeout bounds the status call to each old peer.
const recoverPeerTimeout = 3 * time.Second

// checkOldClusterGone is --recover's safety check, run before this node's
// Raft state becomes a one-node cluster of itself. It rebuilds the state
// from the data directory (newest snapshot, then the log) to learn the old
// members' gRPC addresses, and asks each for its status: any that answers
// and is leader, or names a leader other than this node (which is not
// running: a peer that still names it has not noticed yet), means the old
// cluster still runs, and recovering would split it, so it refuses. Nodes
// that answer without a leader are only logged: they are survivors without
// a quorum, which the operator should stop.
func (s *Server) checkOldClusterGone(logs raft.LogStore, snaps raft.SnapshotStore) error {
	st, err := replayState(logs, snaps)
	if err != nil {
		return err
	}
	type answer struct {
		id, addr string
		status   *coordinatorv1.NodeStatus
		err      error
	}
	var answers []*answer
	for id, n := range st.GetNodes() {
		if id != s.cfg.ID && n.GetGrpcAddress() != "" {
			answers = append(answers, &answer{id: id, addr: n.GetGrpcAddress()})
		}
	}
	var wg sync.WaitGroup
	for _, a := range answers {
		wg.Go(func() {
			conn, err := s.conn(a.addr)
			if err != nil {
				a.err = err
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), recoverPeerTimeout)
			defer cancel()
			resp, err := coordinatorv1.NewCoordinatorServiceClient(conn).Status(ctx, &coordinatorv1.StatusRequest{LocalOnly: true})
			if err == nil && len(resp.GetNodes()) == 1 {
				a.status = resp.GetNodes()[0]
			} else {
				a.err = err
			}
		})
	}
	wg.Wait()
	for _, a := range answers {
		switch {
		case a.status == nil:
			s.log.Info("recover: old member unreachable", "id", a.id, "grpc_addr", a.addr, "err", a.err)
		case a.status.GetState() == "leader" || (a.status.GetLeaderId() != "" && a.status.GetLeaderId() != s.cfg.ID):
			return fmt.Errorf("old member %s at %s answers and reports leader %q (term %d): the old cluster still has a leader; recovering would split it. Stop the old nodes, or join this one to the running cluster instead",
				a.id, a.addr, a.status.GetLeaderId(), a.status.GetTerm())
		default:
			s.log.Warn("recover: old member answers but knows no leader; stop it before the new nodes join", "id", a.id, "grpc_addr", a.addr, "state", a.status.GetState())
		}
	}
	s.log.Info("recover: no old member reachable reports a leader", "old_members", len(st.GetNodes()),
		"applied_index", st.GetAppliedIndex(), "masters", len(st.GetMasters()))
	return nil
}

// replayState rebuilds the replicated state from a data directory's stores:
// the newest snapshot that opens, then every command after it.
func replayState(logs raft.LogStore, snaps raft.SnapshotStore) (*fsmv1.State, error) {
	f := fsm.New()
	var from uint64
	list, err := snaps.List()
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	for _, meta := range list {
		_, rc, err := snaps.Open(meta.ID)
		if err != nil {
			continue
		}
		if err := f.Restore(rc); err != nil {
			continue
		}
		from = meta.Index
		break
	}
	last, err := logs.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	for i := max(from+1, first); i <= last && i > 0; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			return nil, fmt.Errorf("read log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			f.Apply(&l)
		}
	}
	return f.State(), nil
}

// pruneDepartedNodes forgets the membership records of nodes that are no
// longer in the Raft configuration: after a recovery the lost members'
// records would otherwise stay, with addresses that new nodes may reuse.
func (s *Server) pruneDepartedNodes(ctx context.Context) {
	inConf := map[string]bool{}
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	for _, srv := range f.Configuration().Servers {
		inConf[string(srv.ID)] = true
	}
	for _, n := range s.fsm.Nodes() {
		if inConf[n.GetId()] {
			continue
		}
		_, err := s.apply(ctx, &fsmv1.Command{Kind: &fsmv1.Command_DeregisterNode{DeregisterNode: &fsmv1.DeregisterNode{Id: n.GetId()}}})
		if err != nil {
			s.log.Warn("forgetting a member lost before the recovery", "id", n.GetId(), "err", err)
			continue
		}
		s.log.Info("forgot a member lost before the recovery", "id", n.GetId())
	}
}
