package redistest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testbin"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// ReadyTimeout bounds how long Start and Restart wait for a new process to
// answer PING. redis-server itself starts in milliseconds; the margin is for
// loaded CI machines running many tests under -race.
const ReadyTimeout = 15 * time.Second

// startAttempts is how many free ports Start tries: a port found free can be
// taken by another process before redis-server binds it.
const startAttempts = 5

// Require returns the path of redis-server ($REDIS_SERVER, or on PATH).
// Without it the test is skipped, or fails when CI is "true".
func Require(tb testing.TB) string {
	tb.Helper()
	return testbin.Require(tb, "REDIS_SERVER", "redis-server", "make redis installs it")
}

type config struct {
	tls             *TLS
	replicaOf       string
	requirePass     string
	masterAuth      *string
	replicaPriority *int
	extra           []string
}

// Option changes the generated redis.conf.
type Option func(*config)

// TLS makes the server TLS-only: "port 0" and "tls-port" on the port
// Start picks, with its certificate, key and CA. The test's own
// connections (the readiness PING, Client) present ClientCertFile when
// given and check the server's certificate against CAFile.
type TLS struct {
	CertFile, KeyFile, CAFile string
	// AuthClients is tls-auth-clients: clients must present a certificate
	// from CAFile.
	AuthClients bool
	// Replication is tls-replication: a replica reaches its master over
	// TLS, presenting CertFile.
	Replication bool
	// ClientCertFile and ClientKeyFile are what the test's own connections
	// present (needed with AuthClients).
	ClientCertFile, ClientKeyFile string
}

// WithTLS serves TLS only, as TLS describes.
func WithTLS(t TLS) Option { return func(c *config) { c.tls = &t } }

// ReplicaOf makes the server start as a replica of addr ("host:port").
func ReplicaOf(addr string) Option { return func(c *config) { c.replicaOf = addr } }

// RequirePass sets requirepass, and masterauth to the same password unless
// MasterAuth says otherwise, so that a group sharing one password
// replicates. Server.Client authenticates with it.
func RequirePass(pw string) Option { return func(c *config) { c.requirePass = pw } }

// MasterAuth sets the password a replica uses to authenticate to its master.
func MasterAuth(pw string) Option { return func(c *config) { c.masterAuth = &pw } }

// ReplicaPriority sets replica-priority.
func ReplicaPriority(n int) Option { return func(c *config) { c.replicaPriority = &n } }

// Args appends raw redis.conf directives, one per argument, for example
// Args("replica-serve-stale-data no", "min-replicas-to-write 1").
func Args(directives ...string) Option {
	return func(c *config) { c.extra = append(c.extra, directives...) }
}

func (c *config) render(dir string, port int) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Written by redistest. CONFIG REWRITE may change it; Restart reads it back.\n")
	if c.tls == nil {
		fmt.Fprintf(&b, "port %d\n", port)
	} else {
		b.WriteString("port 0\n")
		fmt.Fprintf(&b, "tls-port %d\n", port)
		fmt.Fprintf(&b, "tls-cert-file %s\n", quote(c.tls.CertFile))
		fmt.Fprintf(&b, "tls-key-file %s\n", quote(c.tls.KeyFile))
		fmt.Fprintf(&b, "tls-ca-cert-file %s\n", quote(c.tls.CAFile))
		fmt.Fprintf(&b, "tls-auth-clients %s\n", yesNo(c.tls.AuthClients))
		fmt.Fprintf(&b, "tls-replication %s\n", yesNo(c.tls.Replication))
	}
	b.WriteString("bind 127.0.0.1\n")
	b.WriteString("protected-mode no\n")
	b.WriteString("daemonize no\n")
	// Logging to stdout sends the log to the file the process inherits, so a
	// server that dies before reading its config still leaves a trace.
	b.WriteString("logfile \"\"\n")
	fmt.Fprintf(&b, "dir %s\n", quote(dir))
	b.WriteString("save \"\"\n")
	b.WriteString("appendonly no\n")
	// The default 5 s delay before a diskless full sync would dominate every
	// test that starts a replica.
	b.WriteString("repl-diskless-sync-delay 0\n")
	if c.requirePass != "" {
		fmt.Fprintf(&b, "requirepass %s\n", quote(c.requirePass))
	}
	masterAuth := c.requirePass
	if c.masterAuth != nil {
		masterAuth = *c.masterAuth
	}
	if masterAuth != "" {
		fmt.Fprintf(&b, "masterauth %s\n", quote(masterAuth))
	}
	if c.replicaOf != "" {
		host, port, err := net.SplitHostPort(c.replicaOf)
		if err != nil {
			return nil, fmt.Errorf("option ReplicaOf(%q): %w", c.replicaOf, err)
		}
		fmt.Fprintf(&b, "replicaof %s %s\n", quote(host), port)
	}
	if c.replicaPriority != nil {
		fmt.Fprintf(&b, "replica-priority %d\n", *c.replicaPriority)
	}
	for _, d := range c.extra {
		if strings.ContainsAny(d, "\r\n") {
			return nil, fmt.Errorf("option Args: directive %q spans lines", d)
		}
		b.WriteString(d)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// quote writes s as a redis.conf double-quoted string, which survives
// spaces and quotes in temporary directory names and passwords.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// Server is one redis-server process owned by a test.
type Server struct {
	tb       testing.TB
	bin      string
	dir      string
	confPath string
	logPath  string
	port     int
	password string
	// tls is the client configuration for a TLS-only server, else nil.
	tls *tls.Config

	mu     sync.Mutex
	proc   *process
	client *redis.Client
	closed bool
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	// waitErr is written before exited is closed.
	waitErr error
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

var errPortInUse = errors.New("port already in use")

// Start runs a redis-server on a free port of 127.0.0.1 in a new
// tb.TempDir and returns once it answers PING. The process is killed and
// reaped when the test ends.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	bin := Require(tb)
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	dir := tb.TempDir()
	s := &Server{
		tb:       tb,
		bin:      bin,
		dir:      dir,
		confPath: filepath.Join(dir, "redis.conf"),
		logPath:  filepath.Join(dir, "redis.log"),
		password: cfg.requirePass,
	}
	if cfg.tls != nil {
		var err error
		if s.tls, err = clientTLS(*cfg.tls); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
	}
	// Registered after TempDir's own cleanup, so it runs first: the
	// directory is removed only once the process can no longer write to it.
	tb.Cleanup(s.cleanup)

	for attempt := 1; ; attempt++ {
		port, err := pickPort()
		if err != nil {
			tb.Fatalf("redistest: finding a free port: %v", err)
		}
		conf, err := cfg.render(dir, port)
		if err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		if err := os.WriteFile(s.confPath, conf, 0o644); err != nil {
			tb.Fatalf("redistest: writing config: %v", err)
		}
		s.mu.Lock()
		s.port = port
		s.mu.Unlock()
		err = s.launch()
		if err == nil {
			return s
		}
		if errors.Is(err, errPortInUse) && attempt < startAttempts {
			tb.Logf("redistest: port %d was taken before redis-server bound it; trying another", port)
			continue
		}
		tb.Fatalf("redistest: starting redis-server: %v\n%s", err, s.LogTail())
	}
}

// pickPort is a variable so that a test can hand Start a taken port.
var pickPort = freePort

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// launch starts the process with the current config file and waits until
// it answers. On failure the process is gone when launch returns.
func (s *Server) launch() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "--- redistest: starting redis-server on port %d at %s ---\n",
		s.Port(), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.bin, s.confPath)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	setProcAttr(cmd)
	err = cmd.Start()
	// The child holds its own descriptor; ours is no longer needed.
	logFile.Close()
	if err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(p); err != nil {
		_ = s.killProcess(p)
		if s.logSince(logStart, "Address already in use") {
			return fmt.Errorf("%w: %v", errPortInUse, err)
		}
		return err
	}
	return nil
}

// waitReady polls PING until the server answers with PONG, or with LOADING
// or MASTERDOWN: the server is up and serving its protocol, even if it is
// still loading a dataset or its master is down.
func (s *Server) waitReady(p *process) error {
	deadline := time.Now().Add(ReadyTimeout)
	var last error
	for {
		if p.hasExited() {
			return fmt.Errorf("redis-server exited during startup: %v", p.waitErr)
		}
		reply, err := rawPing(s.Addr(), s.password, s.tls, 500*time.Millisecond)
		if err == nil {
			switch {
			case reply == "+PONG", strings.HasPrefix(reply, "-LOADING"), strings.HasPrefix(reply, "-MASTERDOWN"):
				return nil
			}
			err = fmt.Errorf("PING replied %q", reply)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: last PING: %v", ReadyTimeout, last)
		}
		select {
		case <-p.exited:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// rawPing speaks RESP by hand instead of using go-redis: go-redis stops
// dialing for a second after repeated refused connections, which would
// make every startup wait that long.
func rawPing(addr, password string, tlsConfig *tls.Config, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if tlsConfig != nil {
		tc := tls.Client(c, tlsConfig)
		if err := tc.Handshake(); err != nil {
			return "", fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	}
	var req bytes.Buffer
	if password != "" {
		writeCommand(&req, "AUTH", password)
	}
	writeCommand(&req, "PING")
	if _, err := c.Write(req.Bytes()); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	if password != "" {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("reading AUTH reply: %w", err)
		}
		if !strings.HasPrefix(line, "+OK") {
			return "", fmt.Errorf("AUTH replied %q", strings.TrimSpace(line))
		}
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading PING reply: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func writeCommand(b *bytes.Buffer, args ...string) {
	fmt.Fprintf(b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(b, "$%d\r\n%s\r\n", len(a), a)
	}
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())) }

// Port is the TCP port; it stays the same across Restart.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir is the server's working directory (config file, log, any dump).
func (s *Server) Dir() string { return s.dir }

// ConfigPath is the config file the server was started with.
func (s *Server) ConfigPath() string { return s.confPath }

// TLSConfig is the client TLS configuration of a TLS-only server (WithTLS),
// or nil.
func (s *Server) TLSConfig() *tls.Config { return s.tls }

// Password is the requirepass the server was started with, or "".
func (s *Server) Password() string { return s.password }

// Pid is the running process id, or 0 when the process is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.hasExited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process is alive (it may be paused).
func (s *Server) Running() bool { return s.Pid() != 0 }

// Kill sends SIGKILL to the server (and anything it forked) and waits
// until the process is reaped. Killing a stopped server is fine.
func (s *Server) Kill() {
	s.tb.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return
	}
	if err := s.killProcess(p); err != nil {
		s.tb.Fatalf("redistest: %v", err)
	}
}

func (s *Server) killProcess(p *process) error {
	if !p.hasExited() {
		_ = signalGroup(p.cmd.Process.Pid, sigKill)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(ReadyTimeout):
		return fmt.Errorf("redis-server pid %d still running %v after SIGKILL", p.cmd.Process.Pid, ReadyTimeout)
	}
}

// Pause freezes the server with SIGSTOP, the way a long GC pause or a
// stopped VM looks from outside: connections stay open, nothing answers.
// It returns once the kernel reports the process stopped.
func (s *Server) Pause() {
	s.tb.Helper()
	pid := s.Pid()
	if pid == 0 {
		s.tb.Fatalf("redistest: Pause: server %s is not running", s.Addr())
	}
	if err := signalGroup(pid, sigStop); err != nil {
		s.tb.Fatalf("redistest: SIGSTOP %d: %v", pid, err)
	}
	if err := waitStopped(pid, ReadyTimeout); err != nil {
		s.tb.Fatalf("redistest: Pause: %v", err)
	}
}

// Resume undoes Pause with SIGCONT.
func (s *Server) Resume() {
	s.tb.Helper()
	pid := s.Pid()
	if pid == 0 {
		s.tb.Fatalf("redistest: Resume: server %s is not running", s.Addr())
	}
	if err := signalGroup(pid, sigCont); err != nil {
		s.tb.Fatalf("redistest: SIGCONT %d: %v", pid, err)
	}
}

// Restart kills the server if it runs, then starts it again on the same
// port and directory with the config file as it is now (CONFIG REWRITE
// included), and waits until it answers PING. A server restarted with a
// dataset to load may still answer LOADING when Restart returns.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Kill()
	if err := s.launch(); err != nil {
		s.tb.Fatalf("redistest: restarting redis-server on port %d: %v\n%s", s.Port(), err, s.LogTail())
	}
}

// Client is a go-redis client for the server, authenticated when
// RequirePass was given, over TLS when WithTLS was. It is created once and closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{
			Addr:            net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
			TLSConfig:       s.tls,
			Password:        s.password,
			Protocol:        2,
			DisableIdentity: true,
			// Redis 7.0 does not know CLIENT MAINT_NOTIFICATIONS.
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
	}
	return s.client
}

// logSince reports whether the log written from offset on contains text.
func (s *Server) logSince(offset int64, text string) bool {
	data, err := os.ReadFile(s.logPath)
	if err != nil || offset > int64(len(data)) {
		return false
	}
	return bytes.Contains(data[offset:], []byte(text))
}

// LogMark is the current end of the server's log (across restarts), for
// LogSince.
func (s *Server) LogMark() int64 {
	fi, err := os.Stat(s.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogSince reports whether the server logged text after mark (LogMark),
// for example "MASTER <-> REPLICA sync: Flushing old data", the line a
// replica writes when a full sync replaces its dataset.
func (s *Server) LogSince(mark int64, text string) bool { return s.logSince(mark, text) }

// LogTail returns the last lines of the server's log, for failure messages.
func (s *Server) LogTail() string {
	const maxLines = 40
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no redis-server log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return "redis-server log (" + s.Addr() + ", last lines):\n" + strings.Join(lines, "\n")
}

func (s *Server) cleanup() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	p, client := s.proc, s.client
	s.mu.Unlock()
	if client != nil {
		_ = client.Close()
	}
	if p != nil {
		if err := s.killProcess(p); err != nil {
			s.tb.Errorf("redistest: cleanup: %v", err)
		}
	}
}

// clientTLS is the test's own client configuration for a TLS-only server.
func clientTLS(t TLS) (*tls.Config, error) {
	caPEM, err := os.ReadFile(t.CAFile)
	if err != nil {
		return nil, fmt.Errorf("option WithTLS: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("option WithTLS: no certificate in %s", t.CAFile)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if t.ClientCertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.ClientCertFile, t.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("option WithTLS: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
