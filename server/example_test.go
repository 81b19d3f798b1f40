package server_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/client"
	"github.com/raftinel/raftinel/probe"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/server"
	"google.golang.org/protobuf/types/known/durationpb"
)

// A control plane can run a node inside its own process: its own slog
// logger, in-memory Raft stores and transport (here a one-node cluster;
// use raft-boltdb and TCP, the defaults, for a real one), and the node's
// gRPC API for everything else.
func Example_embedded() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	// go-redis logs failed dials to stderr by itself; send them to the
	// logger instead (once per process, as cmd/coordinator does).
	probe.RouteGoRedisLog(logger)
	raftAddr, transport := raft.NewInmemTransport("")
	store := raft.NewInmemStore()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	node, err := server.New(server.Config{
		ID:            "cp-1",
		GRPCListener:  lis,
		Logger:        logger.With("component", "raftinel"),
		LogStore:      store,
		StableStore:   store,
		SnapshotStore: raft.NewInmemSnapshotStore(),
		Transport:     transport,
		Bootstrap:     []raft.Server{{Suffrage: raft.Voter, ID: "cp-1", Address: raftAddr}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = node.Shutdown(ctx)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !node.IsLeader() {
		select {
		case <-ctx.Done():
			log.Fatal("no leader")
		case <-time.After(20 * time.Millisecond):
		}
	}

	c, err := client.New(ctx, node.GRPCAddr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	err = c.Call(ctx, true, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) error {
		_, err := api.Monitor(ctx, &coordinatorv1.MonitorRequest{Name: "mymaster", Address: "127.0.0.1:16379",
			Settings: &coordinatorv1.MasterSettings{Quorum: 1, DownAfter: durationpb.New(time.Minute)}})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	m, err := c.Master(ctx, "mymaster")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s is at %s, epoch %d\n", m.Name, m.Address, m.Epoch)
	// Output: mymaster is at 127.0.0.1:16379, epoch 0
}
