package main

import (
	"context"
	"fmt"
	"time"

	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Faults.
const (
	faultKill            = "kill"
	faultStop            = "stop"
	faultDebugSleep      = "debug-sleep"   // see freezer
	faultRestart         = "restart-300ms" // see runRestart
	faultLeaderElection  = "leader-after-election"
	faultLeaderPromotion = "leader-after-promotion"
)

// Crash points: the coordinator's --simulate-failure values and the
// arguments of Sentinel's SENTINEL SIMULATE-FAILURE.
const (
	crashAfterElection  = "crash-after-election"
	crashAfterPromotion = "crash-after-promotion"
)

// simulatedFailureStatus is the exit status of a coordinator or a
// redis-sentinel that reached its simulated failure.
const simulatedFailureStatus = 99

func isLeaderCrash(fault string) bool {
	return fault == faultLeaderElection || fault == faultLeaderPromotion
}

// crashPoint is the crash point a fault arms, or "".
func crashPoint(fault string) string {
	switch fault {
	case faultLeaderElection:
		return crashAfterElection
	case faultLeaderPromotion:
		return crashAfterPromotion
	}
	return ""
}

type crash struct {
	index int       // in topology.deciders
	at    time.Time // when the bench saw the process exit
}

// waitCrash returns the first decider to exit after the master's SIGKILL,
// and when it exited, recorded by the goroutine that waits on the process
// (see start). Any exit status but 99 is an error.
func waitCrash(ctx context.Context, topo *topology, faultAt time.Time) (crash, error) {
	exited := make(chan int, len(topo.deciders))
	for i, p := range topo.deciders {
		go func() {
			select {
			case <-p.Done:
				exited <- i
			case <-ctx.Done():
			}
		}()
	}
	select {
	case i := <-exited:
		p := topo.deciders[i]
		if p.ExitCode != simulatedFailureStatus {
			return crash{}, fmt.Errorf("%s exited with status %d, not the simulated failure's %d: %s", p.Name, p.ExitCode, simulatedFailureStatus, p.Tail())
		}
		return crash{index: i, at: p.ExitAt}, nil
	case <-ctx.Done():
		return crash{}, fmt.Errorf("no leader exited in the %v after the master's SIGKILL: %w", time.Since(faultAt).Round(time.Millisecond), ctx.Err())
	}
}

type leaderResult struct {
	at  time.Time
	err error
}

// newLeaderPollEvery is the resolution of the new Raft leader's time.
const newLeaderPollEvery = 10 * time.Millisecond

// watchNewLeader polls each surviving coordinator's own Status every
// 10 ms and delivers when one first reports itself Raft leader. Only the
// crashed node led before, so that is the new leader. It gives up with ctx.
func watchNewLeader(ctx context.Context, grpcAddrs []string) <-chan leaderResult {
	out := make(chan leaderResult, 1)
	var apis []coordinatorv1.CoordinatorServiceClient
	var conns []*grpc.ClientConn
	for _, addr := range grpcAddrs {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			out <- leaderResult{err: err}
			return out
		}
		conns = append(conns, conn)
		apis = append(apis, coordinatorv1.NewCoordinatorServiceClient(conn))
	}
	go func() {
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		tick := time.NewTicker(newLeaderPollEvery)
		defer tick.Stop()
		for {
			for _, api := range apis {
				cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				resp, err := api.Status(cctx, &coordinatorv1.StatusRequest{LocalOnly: true})
				cancel()
				if err == nil && len(resp.GetNodes()) > 0 && resp.GetNodes()[0].GetState() == "leader" {
					out <- leaderResult{at: time.Now()}
					return
				}
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				out <- leaderResult{err: fmt.Errorf("no surviving coordinator reported itself leader: %w", ctx.Err())}
				return
			}
		}
	}()
	return out
}
