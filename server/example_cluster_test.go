package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A control plane can run a whole three-node cluster inside its own
// process: here with Raft's in-memory transport and stores (pass
// DataDir, or your own raft.LogStore/StableStore/SnapshotStore, to keep
// state across restarts), each node's gRPC API on a 127.0.0.1 port of
// its own. It then monitors a master through one node and reads it back
// from another, as `make demo` does with three processes.
func Example_embeddedCluster() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	ids := []string{"n1", "n2", "n3"}
	transports := make([]*raft.InmemTransport, len(ids))
	var voters []raft.Server
	for i, id := range ids {
		// The in-memory address is only a label, but the node registers it
		// as its Raft address, which must look like host:port.
		addr, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("127.0.0.1:%d", 17001+i)))
		transports[i] = trans
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: addr})
	}
	for _, a := range transports {
		for _, b := range transports {
			a.Connect(b.LocalAddr(), b)
		}
	}

	var nodes []*server.Server
	for i, id := range ids {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Println(err)
			return
		}
		snaps := raft.NewInmemSnapshotStore()
		store := raft.NewInmemStore()
		n, err := server.New(server.Config{
			ID: id, Bootstrap: voters, Logger: quiet.With("node", id),
			LogStore: store, StableStore: store, SnapshotStore: snaps, Transport: transports[i],
			GRPCListener: lis,
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer n.Shutdown(context.Background())
		nodes = append(nodes, n)
	}

	api := func(n *server.Server) coordinatorv1.CoordinatorServiceClient {
		conn, err := grpc.NewClient(n.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err) // only for a malformed address, which GRPCAddr never is
		}
		return coordinatorv1.NewCoordinatorServiceClient(conn)
	}
	// Any node takes writes: a follower forwards them to the leader, and
	// the first write waits for the first election.
	mon, err := api(nodes[0]).Monitor(ctx, &coordinatorv1.MonitorRequest{
		Name: "mymaster", Address: "127.0.0.1:6379",
		Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(5 * time.Second)},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Another node answers from its own copy once it has applied the write.
	got, err := api(nodes[2]).GetMaster(ctx, &coordinatorv1.GetMasterRequest{
		Name: "mymaster", Consistency: &coordinatorv1.ReadConsistency{MinIndex: mon.GetIndex()},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	m := got.GetMaster()
	fmt.Printf("%s at %s, epoch %d, quorum %d\n", m.GetName(), m.GetAddress(), m.GetEpoch(), m.GetSettings().GetQuorum())
	// Output: mymaster at 127.0.0.1:6379, epoch 0, quorum 2
}
