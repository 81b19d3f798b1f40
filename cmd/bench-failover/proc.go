package main

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

// proc is one child process with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	// Set by the goroutine that waits on the process, before it closes
	// done: read them only after done is closed.
	exitAt   time.Time // when Wait returned
	exitCode int       // -1 when a signal ended it
}

// start runs bin in its own process group, killed if this command dies
// first, with its output in dir/name.log.
func start(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	// The leader-crash faults measure from exitAt. It is taken as soon as
	// Wait returns: the output goes straight to a file (no copying
	// goroutines), so Wait returns when the kernel reports the exit, and
	// the only error is this goroutine's scheduling delay, microseconds.
	go func() {
		_ = cmd.Wait()
		p.exitAt = time.Now()
		p.exitCode = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	return p, nil
}

// childEnv leaves out COORDINATOR_* variables of whoever runs the bench, so
// an exported COORDINATOR_BOOTSTRAP cannot change what the nodes do.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COORDINATOR_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill ends the process group and reaps it. A stopped process dies from
// SIGKILL too.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct free 127.0.0.1 ports. All listeners stay open
// until every port is chosen, so none is handed out twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer lis.Close()
		ports[i] = lis.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// waitListening polls until something accepts on 127.0.0.1:port.
func waitListening(ctx context.Context, p *proc, port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return poll(ctx, 15*time.Second, func() error {
		if p.exited() {
			return permanent{fmt.Errorf("%s exited with status %d: %s", p.name, p.exitCode, p.tail())}
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// permanent is an error that stops poll at once: waiting longer cannot
// help (the process exited).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// poll calls check every 20 ms until it returns nil or a permanent error,
// or timeout passes.
func poll(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		var stop permanent
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

func commandOutput(ctx context.Context, bin string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func addrOf(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
