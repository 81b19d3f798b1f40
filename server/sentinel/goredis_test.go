package sentinel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	"github.com/redis/go-redis/v9"
)

// go-redis's SentinelClient reads every reply shape it knows, in both
// protocols.
func TestGoRedisSentinelClient(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			f, s := startFake(t, Config{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Protocol: proto})
			t.Cleanup(func() { _ = sc.Close() })

			masters, err := sc.Masters(ctx).Result()
			if err != nil || len(masters) != 1 {
				t.Fatalf("Masters: %v %v", masters, err)
			}
			switch m := masters[0].(type) {
			case []any: // RESP2: a flat list
				if len(m) != 2*len(masterKeys) || m[0] != "name" || m[1] != "mymaster" {
					t.Errorf("Masters[0]: %v", m)
				}
			case map[any]any: // RESP3: a map
				if len(m) != len(masterKeys) || m["name"] != "mymaster" {
					t.Errorf("Masters[0]: %v", m)
				}
			default:
				t.Errorf("Masters[0] is %T", m)
			}

			master, err := sc.Master(ctx, "mymaster").Result()
			if err != nil || master["ip"] != "10.0.0.1" || master["port"] != "6379" || master["flags"] != "master" || master["num-other-sentinels"] != "2" {
				t.Errorf("Master: %v %v", master, err)
			}
			if _, err := sc.Master(ctx, "nope").Result(); err == nil || err.Error() != "ERR No such master with that name" {
				t.Errorf("Master(nope): %v", err)
			}
			replicas, err := sc.Replicas(ctx, "mymaster").Result()
			if err != nil || len(replicas) != 2 || replicas[0]["ip"] != "10.0.0.2" || replicas[1]["port"] != "6381" {
				t.Errorf("Replicas: %v %v", replicas, err)
			}
			sentinels, err := sc.Sentinels(ctx, "mymaster").Result()
			if err != nil || len(sentinels) != 2 || sentinels[0]["port"] != "26380" || sentinels[0]["name"] != RunID("node-b") {
				t.Errorf("Sentinels: %v %v", sentinels, err)
			}
			addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
			if err != nil || len(addr) != 2 || addr[0] != "10.0.0.1" || addr[1] != "6379" {
				t.Errorf("GetMasterAddrByName: %v %v", addr, err)
			}
			if _, err := sc.GetMasterAddrByName(ctx, "nope").Result(); !errors.Is(err, redis.Nil) {
				t.Errorf("GetMasterAddrByName(nope): %v, want redis.Nil", err)
			}
			if q, err := sc.CkQuorum(ctx, "mymaster").Result(); err != nil || q != "OK 2 usable Sentinels. Quorum and failover authorization can be reached" {
				t.Errorf("CkQuorum: %q %v", q, err)
			}
			if r, err := sc.Failover(ctx, "mymaster").Result(); err != nil || r != "OK" {
				t.Errorf("Failover: %q %v", r, err)
			}
			f.setErr("failover", ErrInProgress)
			if err := sc.Failover(ctx, "mymaster").Err(); err == nil || err.Error() != "INPROG Failover already in progress" {
				t.Errorf("Failover in progress: %v", err)
			}
			if n, err := sc.Reset(ctx, "*").Result(); err != nil || n != 1 {
				t.Errorf("Reset: %d %v", n, err)
			}
			if r, err := sc.FlushConfig(ctx).Result(); err != nil || r != "OK" {
				t.Errorf("FlushConfig: %q %v", r, err)
			}
			if r, err := sc.Monitor(ctx, "other", "10.0.0.7", "6379", "2").Result(); err != nil || r != "OK" || f.lastCall() != "monitor other 10.0.0.7:6379 2" {
				t.Errorf("Monitor: %q %v (%s)", r, err, f.lastCall())
			}
			if r, err := sc.Set(ctx, "mymaster", "quorum", "3").Result(); err != nil || r != "OK" {
				t.Errorf("Set: %q %v", r, err)
			}
			if r, err := sc.Remove(ctx, "mymaster").Result(); err != nil || r != "OK" {
				t.Errorf("Remove: %q %v", r, err)
			}
			if err := sc.Ping(ctx).Err(); err != nil {
				t.Errorf("Ping: %v", err)
			}

			// The subscriber go-redis's failover client runs.
			ps := sc.Subscribe(ctx, "+switch-master", "+replica-reconf-done")
			t.Cleanup(func() { _ = ps.Close() })
			for range 2 {
				if _, err := ps.Receive(ctx); err != nil {
					t.Fatal(err)
				}
			}
			f.emit(switchEvent())
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil || msg.Channel != "+switch-master" || msg.Payload != switchPayload {
				t.Errorf("switch-master message: %+v %v", msg, err)
			}
			// go-redis health-checks a subscription with PING.
			if err := ps.Ping(ctx); err != nil {
				t.Errorf("PubSub.Ping: %v", err)
			}
		})
	}
}

// A go-redis failover client finds the master through this front end and
// follows a +switch-master to the new one.
func TestGoRedisFailoverClientFollowsSwitch(t *testing.T) {
	a, b := redistest.Start(t), redistest.Start(t)
	f := newFake()
	f.update(func(st *fsmv1.State) {
		st.Masters["mymaster"] = &fsmv1.Master{Name: "mymaster", Address: a.Addr(), Settings: &fsmv1.MasterSettings{Quorum: 1}}
	})
	s := start(t, f, Config{})
	testwait.Until(t, 5*time.Second, "the event stream", func() bool { return f.streamCount() == 1 })

	for _, proto := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(proto), func(t *testing.T) {
			f.update(func(st *fsmv1.State) { st.Masters["mymaster"].Address = a.Addr() })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			fc := redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName: "mymaster", SentinelAddrs: []string{s.Addr()}, Protocol: proto,
				DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second,
			})
			t.Cleanup(func() { _ = fc.Close() })
			key := fmt.Sprintf("k%d", proto)
			if err := fc.Set(ctx, key, "before", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if v, _ := a.Client().Get(ctx, key).Result(); v != "before" {
				t.Fatalf("the write went elsewhere than %s", a.Addr())
			}
			// The switch is what the node applies when a promotion commits.
			f.update(func(st *fsmv1.State) { st.Masters["mymaster"].Address = b.Addr() })
			oh, op, _ := net.SplitHostPort(a.Addr())
			nh, np, _ := net.SplitHostPort(b.Addr())
			testwait.Until(t, 20*time.Second, "the failover client to write to the new master", func() bool {
				// Keep emitting until the client's subscriber is connected.
				f.emit(&fsmv1.Event{Type: "+switch-master", Payload: fmt.Sprintf("mymaster %s %s %s %s", oh, op, nh, np)})
				_ = fc.Set(ctx, key, "after", 0).Err()
				v, _ := b.Client().Get(ctx, key).Result()
				return v == "after"
			})
		})
	}
}
