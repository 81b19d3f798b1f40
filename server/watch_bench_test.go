package server

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	fanoutStreams = 10000
	// fanoutConns spreads the streams over several HTTP/2 connections, as
	// many client processes would.
	fanoutConns = 20
)

// fanout is the receiving side of the benchmark: every watcher stores when
// it received the epoch the benchmark waits for.
type fanout struct {
	target    atomic.Uint64
	mu        sync.Mutex
	remaining int
	received  []time.Time
	done      chan struct{}
}

func (f *fanout) expect(epoch uint64) {
	f.mu.Lock()
	f.remaining, f.done = fanoutStreams, make(chan struct{})
	f.received = f.received[:0]
	f.mu.Unlock()
	f.target.Store(epoch)
}

func (f *fanout) got(epoch uint64, at time.Time) {
	if epoch != f.target.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.received = append(f.received, at)
	if f.remaining--; f.remaining == 0 {
		close(f.done)
	}
}

func (f *fanout) wait(b *testing.B) []time.Time {
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		b.Fatalf("not every watcher received epoch %d", f.target.Load())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.received)
}

// quietNode is a one-node cluster whose logs (and go-redis's, about the
// unreachable master it probes) are dropped, so the figures stay readable.
func quietNode(b *testing.B) (*Server, *grpc.ClientConn) {
	quiet := slog.New(slog.DiscardHandler)
	probe.RouteGoRedisLog(quiet)
	return startNode(b, func(c *Config) { c.Logger = quiet })
}

// heapAndStacks returns the bytes in use on the heap and in goroutine
// stacks, after a collection.
func heapAndStacks() (heap, stacks uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkWatchMasterFanout opens 10,000 WatchMaster streams on one node
// and measures, per epoch change, the time from the commit of the
// promotion to the last watcher receiving it, and the memory a stream
// costs (client and server ends together: both run in this process).
// Run with a fixed count, for example -benchtime=20x.
func BenchmarkWatchMasterFanout(b *testing.B) {
	srv, conn := quietNode(b)
	a := monitorIdle(b, coordinatorv1.NewCoordinatorServiceClient(conn), "mymaster")
	other := unusedAddr(b)

	f := &fanout{}
	f.expect(0)
	heap0, stacks0 := heapAndStacks()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range fanoutConns {
		conn, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		api := coordinatorv1.NewCoordinatorServiceClient(conn)
		for range fanoutStreams / fanoutConns {
			s, err := api.WatchMaster(ctx, &coordinatorv1.WatchMasterRequest{Name: "mymaster"})
			if err != nil {
				b.Fatalf("stream on conn %d: %v", i, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					u, err := s.Recv()
					if err != nil {
						return
					}
					f.got(u.GetEpoch(), time.Now())
				}
			}()
		}
	}
	f.wait(b)
	heap1, stacks1 := heapAndStacks()
	heapPerStream := (float64(heap1) - float64(heap0)) / fanoutStreams
	stackPerStream := (float64(stacks1) - float64(stacks0)) / fanoutStreams

	var toLast, toEach []time.Duration
	b.ResetTimer()
	for i := range b.N {
		m, _, _ := srv.FSM().Master("mymaster")
		epoch := m.GetEpoch()
		next := a
		if i%2 == 0 {
			next = other
		}
		if !hasReplica(m, next) {
			mustApply(b, srv, &fsmv1.Command{Kind: &fsmv1.Command_UpdateReplicas{UpdateReplicas: &fsmv1.UpdateReplicas{
				Master: "mymaster", ExpectedEpoch: epoch, Replicas: []*fsmv1.Replica{{Address: next}}}}})
		}
		mustApply(b, srv, &fsmv1.Command{Kind: &fsmv1.Command_BeginFailover{BeginFailover: &fsmv1.BeginFailover{
			Master: "mymaster", ExpectedEpoch: epoch, Reason: "manual", Candidate: next}}})
		f.expect(epoch + 1)
		start := time.Now()
		mustApply(b, srv, &fsmv1.Command{Kind: &fsmv1.Command_Promoted{Promoted: &fsmv1.Promoted{
			Master: "mymaster", ExpectedEpoch: epoch, Address: next}}})
		received := f.wait(b)
		for _, at := range received {
			toEach = append(toEach, at.Sub(start))
		}
		toLast = append(toLast, slices.MaxFunc(received, time.Time.Compare).Sub(start))
		// The leader's loop may close the journal first; either is fine.
		_, _ = srv.apply(ctxT(b, 10*time.Second), &fsmv1.Command{Kind: &fsmv1.Command_FinishFailover{FinishFailover: &fsmv1.FinishFailover{
			Master: "mymaster", ExpectedEpoch: epoch + 1}}})
	}
	b.StopTimer()
	b.ReportMetric(ms(percentile(toLast, 0.5)), "ms-to-last-p50")
	b.ReportMetric(ms(percentile(toLast, 0.99)), "ms-to-last-p99")
	b.ReportMetric(ms(percentile(toEach, 0.5)), "ms-per-watcher-p50")
	b.ReportMetric(ms(percentile(toEach, 0.99)), "ms-per-watcher-p99")
	b.ReportMetric(heapPerStream+stackPerStream, "bytes/stream")
	b.ReportMetric(heapPerStream, "heap-bytes/stream")
	b.ReportMetric(stackPerStream, "stack-bytes/stream")
}

// BenchmarkGetMaster measures GetMaster requests per second from one client
// process over one connection to one node.
func BenchmarkGetMaster(b *testing.B) {
	_, conn := quietNode(b)
	api := coordinatorv1.NewCoordinatorServiceClient(conn)
	monitorIdle(b, api, "mymaster")
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := api.GetMaster(context.Background(), &coordinatorv1.GetMasterRequest{Name: "mymaster"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
