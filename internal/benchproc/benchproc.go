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
