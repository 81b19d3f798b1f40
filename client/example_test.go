package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/raftinel/raftinel/client"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/status"
)

// A client over three nodes: any one that answers will do, the others are
// used when it fails.
func ExampleNew() {
	// Three nodes in this process that monitor mymaster; a real program
	// lists its cluster's gRPC addresses, such as 127.0.0.1:7101.
	addrs, stop := startCluster("mymaster", "127.0.0.1:16379")
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, addrs...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	m, err := c.Master(ctx, "mymaster")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("mymaster is %s at epoch %d\n", m.Address, m.Epoch)
	// Output: mymaster is 127.0.0.1:16379 at epoch 0
}

// Follow a master's address through failovers and node restarts, until it
// is no longer monitored.
func ExampleClient_WatchMaster() {
	addrs, stop := startCluster("mymaster", "127.0.0.1:16379")
	defer stop()

	ctx := context.Background()
	c, err := client.New(ctx, addrs...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w := c.WatchMaster(ctx, "mymaster")
	defer w.Close()
	for m := range w.Updates() {
		fmt.Printf("mymaster is %s (epoch %d)\n", m.Address, m.Epoch)
		// A real program keeps reading, and gets a line for each
		// failover; this one stops monitoring the master, which ends
		// the watch.
		if err := removeMaster(ctx, c, "mymaster"); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("watch ended: %v\n", status.Code(w.Err()))
	// Output:
	// mymaster is 127.0.0.1:16379 (epoch 0)
	// watch ended: NotFound
}

// A go-redis client that always talks to the current master of mymaster.
func ExampleNewRedisClient() {
	// A stand-in for redis-server, and three nodes that monitor it as
	// mymaster.
	redisAddr, stopRedis := startFakeRedis()
	defer stopRedis()
	addrs, stop := startCluster("mymaster", redisAddr)
	defer stop()

	ctx := context.Background()
	c, err := client.New(ctx, addrs...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w := c.WatchMaster(ctx, "mymaster")
	defer w.Close()
	rdb := client.NewRedisClient(w, &redis.Options{DialTimeout: 2 * time.Second})
	defer rdb.Close()
	if err := rdb.Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		log.Fatal(err)
	}
	greeting, err := rdb.Get(ctx, "greeting").Result()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(greeting)
	// Output: hello
}
