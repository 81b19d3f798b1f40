// Package benchproc starts and stops the child processes of the bench
// commands (redis-server, redis-sentinel, coordinator nodes) and waits on
// them with deadlines. It owns process lifetimes only: it knows nothing of
// Redis, Raft or what a bench measures, and tests never use it (they have
// internal/redistest).
package benchproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is one child process with its log file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	Done chan struct{}
	// Set by the goroutine that waits on the process, before it closes
	// Done: read them only after Done is closed.
	ExitAt   time.Time // when Wait returned
	ExitCode int       // -1 when a signal ended it
}

// Start runs bin in its own process group, killed if the bench dies first,
// with its output in dir/name.log.
func Start(dir, name, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = ChildEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, Done: make(chan struct{})}
	// ExitAt is taken as soon as Wait returns: the output goes straight to
	// a file (no copying goroutines), so Wait returns when the kernel
	// reports the exit, give or take this goroutine's scheduling delay.
	go func() {
		_ = cmd.Wait()
		p.ExitAt = time.Now()
		p.ExitCode = cmd.ProcessState.ExitCode()
		close(p.Done)
	}()
	return p, nil
}

// ChildEnv leaves out COORDINATOR_* variables of whoever runs the bench, so
// an exported COORDINATOR_BOOTSTRAP cannot change what the nodes do.
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COORDINATOR_") {
			env = append(env, kv)
		}
	}
	return env
}

// Pid is the process's id (and its process group's).
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.Cmd.Process.Pid, sig)
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// Kill ends the process group and reaps it. A stopped process dies from
// SIGKILL too.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = p.Signal(syscall.SIGKILL)
	select {
	case <-p.Done:
	case <-time.After(10 * time.Second):
	}
}

// Tail is the end of the process's log, for error messages.
func (p *Proc) Tail() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// FreePorts returns n distinct free 127.0.0.1 ports. All listeners stay
// open until every port is chosen, so none is handed out twice.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for i := range ports {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		listeners = append(listeners, lis)
		ports[i] = lis.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// PortsFrom returns n ports from first upward that are free now, for a
// bench that starts hundreds of servers: below the kernel's ephemeral range
// (32768 and up by default), no other program's outgoing connections or
// port-0 listeners take them between this check and the servers' start.
func PortsFrom(first, n int) ([]int, error) {
	var ports []int
	for p := first; len(ports) < n; p++ {
		if p > 65535 {
			return nil, fmt.Errorf("only %d free ports from %d up, %d wanted", len(ports), first, n)
		}
		lis, err := net.Listen("tcp", Addr(p))
		if err != nil {
			continue
		}
		_ = lis.Close()
		ports = append(ports, p)
	}
	return ports, nil
}

// WaitListening polls until something accepts on 127.0.0.1:port, and fails
// at once when p exits first.
func WaitListening(ctx context.Context, p *Proc, port int) error {
	addr := Addr(port)
	return Poll(ctx, 15*time.Second, func() error {
		if p.Exited() {
			return Permanent{fmt.Errorf("%s exited with status %d: %s", p.Name, p.ExitCode, p.Tail())}
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// Permanent is an error that stops Poll at once: waiting longer cannot
// help (the process exited).
type Permanent struct{ error }

func (p Permanent) Unwrap() error { return p.error }

// Poll calls check every 20 ms until it returns nil or a Permanent error,
// or timeout passes.
func Poll(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		var stop Permanent
		if errors.As(err, &stop) {
			return stop.error
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Addr is 127.0.0.1:port.
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// SentinelSettings are what a benchmark's redis-sentinel monitors and with
// which settings (quorum 2, parallel-syncs 1, as the benchmarks compare).
type SentinelSettings struct {
	// Masters maps each master's name to its address (host:port).
	Masters         map[string]string
	DownAfter       time.Duration
	FailoverTimeout time.Duration
	// LogLevel, when set, is the sentinel's loglevel.
	LogLevel string
}

// StartSentinel writes a sentinel.conf for port under its own directory in
// runDir, starts redis-sentinel (bin) on it and waits until it listens.
func StartSentinel(ctx context.Context, runDir, bin string, port int, s SentinelSettings) (*Proc, error) {
	name := "sentinel-" + strconv.Itoa(port)
	d := filepath.Join(runDir, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		return nil, err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "port %d\nbind 127.0.0.1\ndir %s\ndaemonize no\n", port, d)
	if s.LogLevel != "" {
		fmt.Fprintf(&conf, "loglevel %s\n", s.LogLevel)
	}
	names := make([]string, 0, len(s.Masters))
	for name := range s.Masters {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, m := range names {
		host, mport, err := net.SplitHostPort(s.Masters[m])
		if err != nil {
			return nil, fmt.Errorf("master %s: %w", m, err)
		}
		fmt.Fprintf(&conf, "sentinel monitor %s %s %s 2\n", m, host, mport)
		fmt.Fprintf(&conf, "sentinel down-after-milliseconds %s %d\n", m, s.DownAfter.Milliseconds())
		fmt.Fprintf(&conf, "sentinel failover-timeout %s %d\n", m, s.FailoverTimeout.Milliseconds())
		fmt.Fprintf(&conf, "sentinel parallel-syncs %s 1\n", m)
	}
	path := filepath.Join(d, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	p, err := Start(runDir, name, bin, path)
	if err != nil {
		return nil, err
	}
	return p, WaitListening(ctx, p, port)
}
