package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftinel/raftinel/client"
	"github.com/raftinel/raftinel/internal/resp"
	"github.com/raftinel/raftinel/probe"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/raftinel/raftinel/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// go-redis logs each failed dial of the nodes' probes to stderr by
// itself; send those lines nowhere, once per process.
var quietGoRedis = sync.OnceFunc(func() { probe.RouteGoRedisLog(quiet) })

// startCluster runs a three-node cluster inside this process for the
// examples: Raft's in-memory transport and stores, each node's gRPC API on
// a free 127.0.0.1 port, no Sentinel endpoint. Once a leader is elected it
// monitors the master name at addr (quorum 2, down after a minute, so
// nothing happens to it while an example runs) and waits until every node
// has applied that, so an example's first read or watch finds the master
// on whichever node it asks. It returns the nodes' gRPC
// addresses and a func that stops them. Only package client's tests import
// package server; package client itself must not.
func startCluster(name, addr string) (grpcAddrs []string, stop func()) {
	quietGoRedis()
	ids := []string{"n1", "n2", "n3"}
	transports := make([]*raft.InmemTransport, len(ids))
	var voters []raft.Server
	for i, id := range ids {
		// Only a label for the in-memory transport, but it must look like
		// host:port.
		a, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("127.0.0.1:%d", 17101+i)))
		transports[i] = trans
		voters = append(voters, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: a})
	}
	for _, a := range transports {
		for _, b := range transports {
			a.Connect(b.LocalAddr(), b)
		}
	}
	var nodes []*server.Server
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, n := range nodes {
			_ = n.Shutdown(ctx)
		}
	}
	for i, id := range ids {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			stop()
			panic(err)
		}
		store := raft.NewInmemStore()
		n, err := server.New(server.Config{
			ID: id, Bootstrap: voters, Logger: quiet,
			LogStore: store, StableStore: store, SnapshotStore: raft.NewInmemSnapshotStore(), Transport: transports[i],
			GRPCListener: lis,
			TuneRaft: func(c *raft.Config) {
				c.HeartbeatTimeout = 150 * time.Millisecond
				c.ElectionTimeout = 150 * time.Millisecond
				c.LeaderLeaseTimeout = 100 * time.Millisecond
			},
		})
		if err != nil {
			stop()
			panic(err)
		}
		nodes = append(nodes, n)
		grpcAddrs = append(grpcAddrs, n.GRPCAddr())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := monitorEverywhere(ctx, grpcAddrs, name, addr); err != nil {
		stop()
		panic(fmt.Sprintf("monitor %s at %s: %v", name, addr, err))
	}
	return grpcAddrs, stop
}

// monitorEverywhere monitors a master through any node, then reads it
// back from each node at the index of that write: a node answers once it
// has applied it.
func monitorEverywhere(ctx context.Context, grpcAddrs []string, name, addr string) error {
	c, err := client.New(ctx, grpcAddrs...)
	if err != nil {
		return err
	}
	defer c.Close()
	var index uint64
	// The first write waits for the first election.
	err = c.Call(ctx, true, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) error {
		resp, err := api.Monitor(ctx, &coordinatorv1.MonitorRequest{Name: name, Address: addr,
			Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(time.Minute)}})
		index = resp.GetIndex()
		return err
	})
	if err != nil {
		return err
	}
	for _, a := range grpcAddrs {
		conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		_, err = coordinatorv1.NewCoordinatorServiceClient(conn).GetMaster(ctx, &coordinatorv1.GetMasterRequest{
			Name: name, Consistency: &coordinatorv1.ReadConsistency{MinIndex: index}})
		_ = conn.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
	}
	return nil
}

// removeMaster stops monitoring a master: it ends every watch of it.
func removeMaster(ctx context.Context, c *client.Client, name string) error {
	return c.Call(ctx, true, func(ctx context.Context, api coordinatorv1.CoordinatorServiceClient) error {
		_, err := api.Remove(ctx, &coordinatorv1.RemoveRequest{Name: name})
		return err
	})
}

// startFakeRedis serves just enough of Redis for the examples, so that
// they need no redis-server: SET and GET of strings kept in memory, PING,
// and an INFO that shows a master without replicas (the nodes' probes ask
// for it). Every other command gets an error reply, which go-redis accepts
// for its connection set-up (HELLO, CLIENT SETINFO). It returns the
// listening address and a func that closes the listener and every
// connection and waits for their goroutines.
func startFakeRedis() (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var (
		mu     sync.Mutex
		data   = map[string]string{}
		conns  = map[net.Conn]bool{}
		closed bool
		wg     sync.WaitGroup
	)
	serve := func(conn net.Conn) {
		defer wg.Done()
		defer conn.Close()
		r, w := resp.NewReader(conn, resp.Limits{}), resp.NewWriter(conn)
		for {
			args, err := r.ReadCommand()
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(string(args[0])); {
			case cmd == "PING" && len(args) == 1:
				w.SimpleString("PONG")
			case cmd == "SET" && len(args) == 3:
				mu.Lock()
				data[string(args[1])] = string(args[2])
				mu.Unlock()
				w.SimpleString("OK")
			case cmd == "GET" && len(args) == 2:
				mu.Lock()
				v, ok := data[string(args[1])]
				mu.Unlock()
				if ok {
					w.BulkString(v)
				} else {
					w.NullBulk()
				}
			case cmd == "INFO":
				w.BulkString("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n")
			default:
				w.Error(fmt.Sprintf("ERR unknown command '%s'", args[0]))
			}
			if r.Buffered() == 0 {
				if w.Flush() != nil {
					return
				}
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := lis.Accept()
			if err != nil {
				return // closed by stop
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = conn.Close()
				continue
			}
			conns[conn] = true
			wg.Add(1)
			mu.Unlock()
			go serve(conn)
		}
	}()
	return lis.Addr().String(), func() {
		_ = lis.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}
