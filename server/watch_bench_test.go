package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
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
	// fanoutClientEnv names the node's gRPC address in the environment of
	// the benchmark's client process.
	fanoutClientEnv = "RAFTINEL_FANOUT_CLIENT_ADDR"
	// fanoutPrefix starts every line the client process writes for the
	// benchmark; the test framework's own lines are ignored.
	fanoutPrefix = "fanout: "
)

// quietNode is a one-node cluster whose logs (and go-redis's, about the
// unreachable master it probes) are dropped, so the figures stay readable.
func quietNode(b *testing.B) (*Server, *grpc.ClientConn) {
	quiet := slog.New(slog.DiscardHandler)
	probe.RouteGoRedisLog(quiet)
	return startNode(b, func(c *Config) { c.Logger = quiet })
}

// heapAndStacks returns the bytes in use on the heap and in goroutine
// stacks once they have settled: a collection shrinks a goroutine's stack
// by half at most, so a few are needed before the stacks of goroutines that
// grew once and now wait shallow are at the size they keep, as in a process
// that has run for a while.
func heapAndStacks() (heap, stacks uint64) {
	for range 4 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fanoutClient is the benchmark's client process, driven over its stdin and
// stdout: the streams' memory is measured in a process of their own, apart
// from the node's.
type fanoutClient struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	lines []string // what it wrote besides the benchmark's lines, for errors
}

func startFanoutClient(b *testing.B, addr string) *fanoutClient {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fanoutClientEnv+"="+addr)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &fanoutClient{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.Cleanup(func() {
		_ = in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return c
}

// ask sends one request line and returns the fields of the reply line.
func (c *fanoutClient) ask(b *testing.B, format string, args ...any) []string {
	if _, err := fmt.Fprintf(c.in, format+"\n", args...); err != nil {
		b.Fatalf("client process: %v", err)
	}
	for c.out.Scan() {
		line := c.out.Text()
		if rest, ok := strings.CutPrefix(line, fanoutPrefix); ok {
			f := strings.Fields(rest)
			if len(f) > 0 && f[0] == "error" {
				b.Fatalf("client process: %s", rest)
			}
			return f
		}
		c.lines = append(c.lines, line)
	}
	b.Fatalf("client process ended (%v); it wrote: %s", c.out.Err(), strings.Join(c.lines, "\n"))
	return nil
}

func atof(b *testing.B, s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkWatchMasterFanout opens 10,000 WatchMaster streams on one node
// and measures, per epoch change, the time from the commit of the
// promotion to the last watcher receiving it, and the memory a stream
// costs at each end: the streams' client runs in a process of its own (this
// test binary again), so the node's heap and stacks and the client's are
// counted apart. Run with a fixed count, for example -benchtime=20x.
func BenchmarkWatchMasterFanout(b *testing.B) {
	srv, conn := quietNode(b)
	a := monitorIdle(b, coordinatorv1.NewCoordinatorServiceClient(conn), "mymaster")
	other := unusedAddr(b)

	heap0, stacks0 := heapAndStacks()
	client := startFanoutClient(b, srv.GRPCAddr())
	m, _, _ := srv.FSM().Master("mymaster")
	mem := client.ask(b, "open %d", m.GetEpoch())
	heap1, stacks1 := heapAndStacks()
	serverHeap := (float64(heap1) - float64(heap0)) / fanoutStreams
	serverStacks := (float64(stacks1) - float64(stacks0)) / fanoutStreams
	clientHeap, clientStacks := atof(b, mem[1]), atof(b, mem[2])

	var toLast []time.Duration
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
		client.ask(b, "expect %d", epoch+1)
		start := time.Now()
		mustApply(b, srv, &fsmv1.Command{Kind: &fsmv1.Command_Promoted{Promoted: &fsmv1.Promoted{
			Master: "mymaster", ExpectedEpoch: epoch, Address: next}}})
		// Both processes read the same system clock.
		last := client.ask(b, "wait %d", start.UnixNano())
		toLast = append(toLast, time.Duration(atof(b, last[1])))
		// The leader's loop may close the journal first; either is fine.
		_, _ = srv.apply(ctxT(b, 10*time.Second), &fsmv1.Command{Kind: &fsmv1.Command_FinishFailover{FinishFailover: &fsmv1.FinishFailover{
			Master: "mymaster", ExpectedEpoch: epoch + 1}}})
	}
	b.StopTimer()
	each := client.ask(b, "each")
	b.ReportMetric(ms(percentile(toLast, 0.5)), "ms-to-last-p50")
	b.ReportMetric(ms(percentile(toLast, 0.99)), "ms-to-last-p99")
	b.ReportMetric(atof(b, each[1])/1e6, "ms-per-watcher-p50")
	b.ReportMetric(atof(b, each[2])/1e6, "ms-per-watcher-p99")
	b.ReportMetric(serverHeap+serverStacks, "server-bytes/stream")
	b.ReportMetric(serverHeap, "server-heap-bytes/stream")
	b.ReportMetric(serverStacks, "server-stack-bytes/stream")
	b.ReportMetric(clientHeap+clientStacks, "client-bytes/stream")
	b.ReportMetric(clientHeap, "client-heap-bytes/stream")
	b.ReportMetric(clientStacks, "client-stack-bytes/stream")
}

// TestMain runs the test binary as the client end of
// BenchmarkWatchMasterFanout when the benchmark starts it with
// fanoutClientEnv set (runFanoutClient), and as the tests otherwise.
func TestMain(m *testing.M) {
	if addr := os.Getenv(fanoutClientEnv); addr != "" {
		if err := runFanoutClient(addr, os.Stdin, os.Stdout); err != nil {
			fmt.Printf("%serror %v\n", fanoutPrefix, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runFanoutClient is the client end of BenchmarkWatchMasterFanout, in a
// process of its own. It reads one request a line from in and answers
// each with one line on out:
//   - "open E": opens the streams, waits until each has received epoch E,
//     and answers "mem HEAP STACKS", the bytes per stream this process
//     holds for them (the connections' share included);
//   - "expect E": the next epoch to wait for; answers "ok";
//   - "wait T": waits until every stream has received it and answers
//     "last NS", the nanoseconds from T (unix nanoseconds) to the last;
//   - "each": answers "each P50 P99" over every stream's delay so far.
func runFanoutClient(addr string, in io.Reader, out io.Writer) error {
	reply := func(format string, args ...any) { fmt.Fprintf(out, fanoutPrefix+format+"\n", args...) }
	// received[i] is when stream i received the awaited epoch (unix nanos).
	var (
		target   atomic.Uint64
		received = make([]atomic.Int64, fanoutStreams)
		count    atomic.Int64
		all      = make(chan struct{}, 1)
	)
	expect := func(epoch uint64) {
		for i := range received {
			received[i].Store(0)
		}
		count.Store(0)
		select {
		case <-all:
		default:
		}
		target.Store(epoch)
	}
	awaitAll := func() error {
		select {
		case <-all:
			return nil
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("%d of %d streams received epoch %d", count.Load(), fanoutStreams, target.Load())
		}
	}
	var each []time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var n uint64
		if len(f) > 1 {
			var err error
			if n, err = strconv.ParseUint(f[1], 10, 64); err != nil {
				return err
			}
		}
		switch f[0] {
		case "open":
			expect(n)
			heap0, stacks0 := heapAndStacks()
			for i := range fanoutConns {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					return err
				}
				defer conn.Close()
				api := coordinatorv1.NewCoordinatorServiceClient(conn)
				for j := range fanoutStreams / fanoutConns {
					s, err := api.WatchMaster(ctx, &coordinatorv1.WatchMasterRequest{Name: "mymaster"})
					if err != nil {
						return fmt.Errorf("stream on conn %d: %w", i, err)
					}
					slot := &received[i*(fanoutStreams/fanoutConns)+j]
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							u, err := s.Recv()
							if err != nil {
								return
							}
							if u.GetEpoch() == target.Load() && slot.CompareAndSwap(0, time.Now().UnixNano()) {
								if count.Add(1) == fanoutStreams {
									all <- struct{}{}
								}
							}
						}
					}()
				}
			}
			if err := awaitAll(); err != nil {
				return err
			}
			heap1, stacks1 := heapAndStacks()
			reply("mem %.0f %.0f", (float64(heap1)-float64(heap0))/fanoutStreams, (float64(stacks1)-float64(stacks0))/fanoutStreams)
		case "expect":
			expect(n)
			reply("ok")
		case "wait":
			if err := awaitAll(); err != nil {
				return err
			}
			var last int64
			for i := range received {
				at := received[i].Load()
				last = max(last, at)
				each = append(each, time.Duration(at-int64(n)))
			}
			reply("last %d", last-int64(n))
		case "each":
			if len(each) == 0 {
				return fmt.Errorf("no delays measured yet")
			}
			reply("each %d %d", percentile(each, 0.5), percentile(each, 0.99))
		default:
			return fmt.Errorf("unknown request %q", sc.Text())
		}
	}
	return sc.Err()
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
