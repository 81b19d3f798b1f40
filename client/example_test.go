package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/raftinel/raftinel/client"
	"github.com/redis/go-redis/v9"
)

// A client over three nodes: any one that answers will do, the others are
// used when it fails.
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.New(ctx, "127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	m, err := c.Master(ctx, "mymaster")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("mymaster is %s at epoch %d\n", m.Address, m.Epoch)
}

// Follow a master's address through failovers and node restarts.
func ExampleClient_WatchMaster() {
	ctx := context.Background()
	c, err := client.New(ctx, "127.0.0.1:7101", "127.0.0.1:7102")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w := c.WatchMaster(ctx, "mymaster")
	defer w.Close()
	for m := range w.Updates() {
		fmt.Printf("mymaster is %s (epoch %d)\n", m.Address, m.Epoch)
	}
	log.Printf("watch ended: %v", w.Err())
}

// A go-redis client that always talks to the current master of mymaster.
func ExampleNewRedisClient() {
	ctx := context.Background()
	c, err := client.New(ctx, "127.0.0.1:7101", "127.0.0.1:7102")
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
}
