package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftinel/raftinel/fsm"
	"github.com/raftinel/raftinel/internal/benchproc"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// settle is how long the fleet runs before the steady window opens, so
// that start-up work (first INFO of every instance, replica discovery,
// sentinel hellos) is over.
const settle = 10 * time.Second

// result is one system's figures.
type result struct {
	system    string
	groups    int
	cpuPct    []float64 // per decider, percent of one core over the window
	rssMB     []float64
	redisConn []int
	entriesPS float64 // Raft log entries per second (Raftinel only; -1 otherwise)

	mastersLatency []time.Duration // SENTINEL MASTERS
	oneLatency     []time.Duration // GetMaster (Raftinel) or SENTINEL MASTER (sentinel)

	// The replicated state's snapshot (Raftinel only): its size, the
	// SnapshotSave call that took it, and restores of it into a new FSM.
	snapshotBytes   int
	snapshotTake    time.Duration
	snapshotRestore []time.Duration

	killed     int
	writers    int             // killed groups with a writer
	switched   []time.Duration // kill to first +switch-master, per switched group
	unfinished int
	acked      int
	lost       int
	steps      []stepRow // the mass failure's breakdown
}

func measureSystem(ctx context.Context, o *options, sys string) (r result, err error) {
	fmt.Printf("%s: starting %d groups\n", sys, o.groups)
	f, err := startFleet(ctx, o, sys)
	if err != nil {
		return r, err
	}
	defer f.close()
	// The logs are kept from a failed run too: that is when they are read.
	defer func() {
		if kerr := f.keepLogs(o, sys); err == nil {
			err = kerr
		}
	}()
	r = result{system: sys, groups: o.groups, entriesPS: -1}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	if err := steady(ctx, o, f, &r); err != nil {
		return r, err
	}
	if err := latencies(ctx, f, &r); err != nil {
		return r, err
	}
	if f.grpcAddrs != nil {
		if err := snapshotFigures(ctx, f.grpcAddrs[0], &r); err != nil {
			return r, err
		}
	}
	if o.killFraction > 0 && o.groups > 0 {
		if err := massKill(ctx, o, f, &r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// cpuTicks is a process's user plus system time in clock ticks (fields 14
// and 15 of /proc/PID/stat; the kernel's USER_HZ is 100 on Linux).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return utime + stime, nil
}

const userHZ = 100

func rssMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// redisConns counts pid's established TCP connections whose remote port is
// a Redis port: the process's socket inodes matched against /proc/net/tcp.
func redisConns(pid int, redisPorts map[int]bool) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "01" || !inodes[f[9]] { // 01: ESTABLISHED
			continue
		}
		_, portHex, _ := strings.Cut(f[2], ":")
		port, err := strconv.ParseInt(portHex, 16, 32)
		if err == nil && redisPorts[int(port)] {
			n++
		}
	}
	return n, nil
}

// dialNode opens the bench's plaintext connection to a node's gRPC API
// (the bench starts its nodes without TLS); close it when done.
func dialNode(grpcAddr string) (coordinatorv1.CoordinatorServiceClient, *grpc.ClientConn, error) {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return coordinatorv1.NewCoordinatorServiceClient(conn), conn, nil
}

// localStatus is the status of the node at grpcAddr alone.
func localStatus(ctx context.Context, grpcAddr string) (*coordinatorv1.NodeStatus, error) {
	api, conn, err := dialNode(grpcAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := api.Status(ctx, &coordinatorv1.StatusRequest{LocalOnly: true})
	if err != nil {
		return nil, err
	}
	if len(resp.GetNodes()) != 1 {
		return nil, fmt.Errorf("status of %s: %d nodes", grpcAddr, len(resp.GetNodes()))
	}
	return resp.GetNodes()[0], nil
}

func appliedIndex(ctx context.Context, grpcAddr string) (uint64, error) {
	st, err := localStatus(ctx, grpcAddr)
	return st.GetAppliedIndex(), err
}

// steady measures CPU, memory, connections and log growth over o.steady.
func steady(ctx context.Context, o *options, f *fleet, r *result) error {
	before := make([]int64, len(f.deciders))
	for i, p := range f.deciders {
		t, err := cpuTicks(p.Pid())
		if err != nil {
			return err
		}
		before[i] = t
	}
	var idx0 uint64
	if f.grpcAddrs != nil {
		var err error
		if idx0, err = appliedIndex(ctx, f.grpcAddrs[0]); err != nil {
			return err
		}
	}
	start := time.Now()
	var profileErr error
	var wg sync.WaitGroup
	if o.pprofDir != "" && f.metricsAddrs != nil {
		wg.Go(func() { profileErr = saveProfiles(ctx, o, f, r.system) })
	}
	select {
	case <-time.After(o.steady):
	case <-ctx.Done():
		return ctx.Err()
	}
	elapsed := time.Since(start)
	for i, p := range f.deciders {
		t, err := cpuTicks(p.Pid())
		if err != nil {
			return err
		}
		r.cpuPct = append(r.cpuPct, 100*float64(t-before[i])/userHZ/elapsed.Seconds())
		mb, err := rssMB(p.Pid())
		if err != nil {
			return err
		}
		r.rssMB = append(r.rssMB, mb)
		n, err := redisConns(p.Pid(), f.redisPorts)
		if err != nil {
			return err
		}
		r.redisConn = append(r.redisConn, n)
	}
	if f.grpcAddrs != nil {
		idx1, err := appliedIndex(ctx, f.grpcAddrs[0])
		if err != nil {
			return err
		}
		r.entriesPS = float64(idx1-idx0) / elapsed.Seconds()
	}
	wg.Wait()
	return profileErr
}

// saveProfiles saves a CPU profile of every node over most of the steady
// window, and a heap profile after it, into o.pprofDir.
func saveProfiles(ctx context.Context, o *options, f *fleet, sys string) error {
	if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
		return err
	}
	secs := int(o.steady.Seconds()) - 2
	var wg sync.WaitGroup
	errs := make([]error, len(f.metricsAddrs))
	for i, addr := range f.metricsAddrs {
		wg.Go(func() {
			name := fmt.Sprintf("%s-g%d-n%d", sys, o.groups, i+1)
			errs[i] = errors.Join(
				fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), filepath.Join(o.pprofDir, name+".cpu.pprof")),
				fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/heap", addr), filepath.Join(o.pprofDir, name+".heap.pprof")))
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// killProfileSeconds is the length of the CPU profile of every node taken
// from the mass kill on: the detection (down-after) and the failovers.
func killProfileSeconds(o *options) int { return int((o.downAfter + 10*time.Second).Seconds()) }

// saveKillProfiles saves a CPU profile of every node from the mass kill
// on, into o.pprofDir (NAME-kill.cpu.pprof), and says which node led.
func saveKillProfiles(ctx context.Context, o *options, f *fleet, sys string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(f.metricsAddrs))
	for i, addr := range f.metricsAddrs {
		wg.Go(func() {
			name := fmt.Sprintf("%s-g%d-n%d-kill.cpu.pprof", sys, o.groups, i+1)
			errs[i] = fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, killProfileSeconds(o)), filepath.Join(o.pprofDir, name))
		})
	}
	if leader, err := leaderID(ctx, f.grpcAddrs[0]); err == nil {
		fmt.Printf("  %s: leader during the mass kill: %s\n", sys, leader)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// leaderID is the id of the node grpcAddr knows as the leader.
func leaderID(ctx context.Context, grpcAddr string) (string, error) {
	st, err := localStatus(ctx, grpcAddr)
	return st.GetLeaderId(), err
}

func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// latencies times SENTINEL MASTERS (20 calls) and, when there are
// groups, one master's read (100 calls) on the first endpoint.
func latencies(ctx context.Context, f *fleet, r *result) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: f.sentinelAddrs[0], MaxRetries: -1, ReadTimeout: 30 * time.Second})
	defer sc.Close()
	for range 20 {
		t := time.Now()
		if _, err := sc.Masters(ctx).Result(); err != nil {
			return fmt.Errorf("SENTINEL MASTERS on %s: %w", f.sentinelAddrs[0], err)
		}
		r.mastersLatency = append(r.mastersLatency, time.Since(t))
	}
	if len(f.groups) == 0 {
		return nil
	}
	name := groupName(len(f.groups) / 2)
	if f.grpcAddrs != nil {
		api, conn, err := dialNode(f.grpcAddrs[0])
		if err != nil {
			return err
		}
		defer conn.Close()
		for range 100 {
			t := time.Now()
			if _, err := api.GetMaster(ctx, &coordinatorv1.GetMasterRequest{Name: name}); err != nil {
				return fmt.Errorf("GetMaster %s: %w", name, err)
			}
			r.oneLatency = append(r.oneLatency, time.Since(t))
		}
		return nil
	}
	for range 100 {
		t := time.Now()
		if _, err := sc.Master(ctx, name).Result(); err != nil {
			return fmt.Errorf("SENTINEL MASTER %s: %w", name, err)
		}
		r.oneLatency = append(r.oneLatency, time.Since(t))
	}
	return nil
}

// snapshotRestores is how many times snapshotFigures restores the snapshot.
const snapshotRestores = 5

// snapshotFigures takes a snapshot of the replicated state through
// grpcAddr (SnapshotSave, as coordinatorctl snapshot save does) and
// restores it into a new state machine snapshotRestores times: the bytes
// are what Raft persists and what a node that installs the snapshot
// decodes and checks (fsm.FSM.Restore).
func snapshotFigures(ctx context.Context, grpcAddr string, r *result) error {
	api, conn, err := dialNode(grpcAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	t := time.Now()
	resp, err := api.SnapshotSave(ctx, &coordinatorv1.SnapshotSaveRequest{}, grpc.MaxCallRecvMsgSize(1<<30))
	if err != nil {
		return fmt.Errorf("SnapshotSave on %s: %w", grpcAddr, err)
	}
	r.snapshotTake = time.Since(t)
	r.snapshotBytes = len(resp.GetState())
	for range snapshotRestores {
		t := time.Now()
		if err := fsm.New().Restore(io.NopCloser(bytes.NewReader(resp.GetState()))); err != nil {
			return fmt.Errorf("restore the snapshot from %s: %w", grpcAddr, err)
		}
		r.snapshotRestore = append(r.snapshotRestore, time.Since(t))
	}
	return nil
}

// massKill SIGKILLs a spread of masters at once and waits for each one's
// first +switch-master on any endpoint.
func massKill(ctx context.Context, o *options, f *fleet, r *result) error {
	k := int(math.Ceil(o.killFraction * float64(len(f.groups))))
	var victims []group
	for i := range k {
		victims = append(victims, f.groups[i*len(f.groups)/k])
	}
	r.killed = k

	steps := newStepTimes(len(f.sentinelAddrs))
	subCtx, stopSubs := context.WithCancel(ctx)
	var subs sync.WaitGroup
	var closers []func() error
	// A subscriber blocked in a read ends when its connection closes.
	defer func() {
		stopSubs()
		for _, c := range closers {
			_ = c()
		}
		subs.Wait()
	}()
	for ep, addr := range f.sentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 30 * time.Second})
		ps := sc.Subscribe(subCtx, stepChannels...)
		closers = append(closers, ps.Close, sc.Close)
		for range stepChannels {
			if _, err := ps.Receive(subCtx); err != nil {
				return fmt.Errorf("subscribe on %s: %w", addr, err)
			}
		}
		subs.Go(func() {
			for {
				msg, err := ps.ReceiveMessage(subCtx)
				if err != nil {
					return
				}
				steps.record(ep, msg.Channel, msg.Payload, time.Now())
			}
		})
	}

	writers := make([]*writer, 0, o.writers)
	for _, g := range victims[:min(o.writers, len(victims))] {
		w := newWriter(g.name, f.sentinelAddrs)
		w.start(ctx)
		writers = append(writers, w)
	}
	defer func() {
		for _, w := range writers {
			w.stop()
		}
	}()
	r.writers = len(writers)
	for _, w := range writers {
		if err := benchproc.Poll(ctx, 30*time.Second, func() error {
			if w.ackedCount() == 0 {
				return fmt.Errorf("writer on %s: no write acknowledged yet", w.name)
			}
			return nil
		}); err != nil {
			return err
		}
	}

	killedAt := time.Now()
	for _, g := range victims {
		if err := g.procs[0].Signal(syscall.SIGKILL); err != nil {
			return err
		}
	}
	fmt.Printf("  %s: SIGKILLed %d masters\n", r.system, k)
	var profiles sync.WaitGroup
	var profileErr error
	if o.pprofDir != "" && f.metricsAddrs != nil {
		profiles.Go(func() { profileErr = saveKillProfiles(ctx, o, f, r.system) })
	}
	_ = benchproc.Poll(ctx, o.massTimeout, func() error {
		if n := countSwitched(victims, steps); n < k {
			return fmt.Errorf("%d of %d switched", n, k)
		}
		return nil
	})
	addrs := map[string]string{}
	for _, g := range victims {
		at, payload, ok := steps.switched(g.name)
		if !ok {
			r.unfinished++
			continue
		}
		r.switched = append(r.switched, at.Sub(killedAt))
		// <name> <old-ip> <old-port> <new-ip> <new-port>
		if fs := strings.Fields(payload); len(fs) == 5 {
			addrs[g.name] = fs[3] + ":" + fs[4]
		}
	}
	r.steps = steps.breakdown(victims, killedAt)
	profiles.Wait()
	if profileErr != nil {
		return profileErr
	}

	// Let the writers land a few writes on the new masters, then count
	// what the new masters lack.
	for _, w := range writers {
		if addrs[w.name] == "" {
			continue
		}
		n := w.ackedCount()
		_ = benchproc.Poll(ctx, 10*time.Second, func() error {
			if w.ackedCount() < n+10 {
				return errors.New("no writes since the switch yet")
			}
			return nil
		})
	}
	for _, w := range writers {
		w.stop()
		if addrs[w.name] == "" {
			continue
		}
		lost, acked, err := w.missingOn(ctx, addrs[w.name])
		if err != nil {
			return err
		}
		r.lost += lost
		r.acked += acked
	}
	return nil
}

func countSwitched(victims []group, steps *stepTimes) int {
	n := 0
	for _, g := range victims {
		if _, _, ok := steps.switched(g.name); ok {
			n++
		}
	}
	return n
}

// writer RPUSHes unique numbers to one group through a go-redis
// FailoverClient, remembering which were acknowledged.
type writer struct {
	name   string
	client *redis.Client
	cancel context.CancelFunc
	done   sync.WaitGroup

	mu    sync.Mutex
	acked []int64
}

const writerKey = "bench-scale-writes"

func newWriter(name string, sentinelAddrs []string) *writer {
	return &writer{name: name, client: redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: name, SentinelAddrs: sentinelAddrs, MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
	})}
}

func (w *writer) start(ctx context.Context) {
	ctx, w.cancel = context.WithCancel(ctx)
	w.done.Go(func() {
		// Bounded: at most one write attempt per millisecond for as long
		// as the bench runs, and it ends with the context.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := int64(1); ; i++ {
			if err := w.client.RPush(ctx, writerKey, i).Err(); err == nil {
				w.mu.Lock()
				w.acked = append(w.acked, i)
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

func (w *writer) stop() {
	if w.cancel != nil {
		w.cancel()
	}
	w.done.Wait()
	_ = w.client.Close()
}

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// missingOn reads the list back from addr and counts acknowledged writes
// it lacks.
func (w *writer) missingOn(ctx context.Context, addr string) (lost, acked int, err error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	vals, err := c.LRange(ctx, writerKey, 0, -1).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("read back %s from %s: %w", w.name, addr, err)
	}
	present := make(map[int64]bool, len(vals))
	for _, v := range vals {
		n, _ := strconv.ParseInt(v, 10, 64)
		present[n] = true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.acked {
		if !present[n] {
			lost++
		}
	}
	return lost, len(w.acked), nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[max(0, min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1))]
}
