package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Defaults for ConnConfig.
const (
	DefaultDialTimeout = 2 * time.Second
	// DefaultReadTimeout caps one command when the context allows longer
	// (or has no deadline at all).
	DefaultReadTimeout = 5 * time.Second
	// DefaultPoolSize leaves room for a few failover commands at the same
	// time (an INFO confirming a role while a REPLICAOF runs); more would
	// only multiply the connections the leader holds on an instance.
	DefaultPoolSize = 3
)

// Auth is what an instance wants before it accepts commands: a password
// (requirepass), or an ACL user and its password.
type Auth struct {
	User string
	Pass string
}

// ConnConfig describes a Conn.
type ConnConfig struct {
	// Addr is the instance, "host:port".
	Addr string
	Auth Auth
	// ClientName is sent with CLIENT SETNAME so operators can tell the
	// coordinator's connections apart in CLIENT LIST (for example
	// "raftinel-node1"). Empty sends no name.
	ClientName  string
	DialTimeout time.Duration // DefaultDialTimeout when zero
	ReadTimeout time.Duration // DefaultReadTimeout when zero
	PoolSize    int           // DefaultPoolSize when zero
	// TLS, when set, gives the TLS configuration for the instance's host:
	// every connection then speaks TLS (the instance's tls-port).
	TLS func(host string) *tls.Config
}

// ErrSelfReplication is returned when a command would make an instance
// replicate from itself.
var ErrSelfReplication = errors.New("an instance cannot replicate from itself")

// Conn talks to one Redis instance. It is safe for concurrent use; it dials
// lazily and redials after failures. Every method obeys its context's
// deadline (capped by ReadTimeout).
//
// After PoolSize failed dials go-redis stops dialing and re-dials in the
// background once a second until one succeeds; meanwhile commands fail at
// once with the last dial error. That is why the Watcher does not use Conn:
// its PINGs and INFOs go over connections it dials itself at every attempt
// (link), so a recovered instance is seen at the next PING. Conn carries the
// leader's failover commands, which are retried on a slower scale anyway.
type Conn struct {
	addr   string
	host   string
	port   int
	client *redis.Client

	// info is a connection of its own for Info, the command the leader
	// sends most (its fence reads every master's INFO four times a
	// second): go-redis's pipeline machinery cost a third as much CPU as
	// the round trip itself. infoMu guards it; an Info that finds it busy
	// goes through go-redis instead.
	infoMu      sync.Mutex
	info        *link
	closed      bool // guarded by infoMu
	auth        Auth
	readTimeout time.Duration
}

// NewConn validates cfg and returns a Conn; it does not dial.
func NewConn(cfg ConnConfig) (*Conn, error) {
	host, port, err := splitAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if err := validClientName(cfg.ClientName); err != nil {
		return nil, err
	}
	dialTimeout := orDefault(cfg.DialTimeout, DefaultDialTimeout)
	readTimeout := orDefault(cfg.ReadTimeout, DefaultReadTimeout)
	poolSize := cfg.PoolSize
	if poolSize <= 0 {
		poolSize = DefaultPoolSize
	}
	var tlsConfig *tls.Config
	if cfg.TLS != nil {
		tlsConfig = cfg.TLS(host)
	}
	client := redis.NewClient(&redis.Options{
		Addr:       cfg.Addr,
		TLSConfig:  tlsConfig,
		Username:   cfg.Auth.User,
		Password:   cfg.Auth.Pass,
		ClientName: cfg.ClientName,
		// RESP2 keeps replies plain on every Redis version and avoids the
		// push-notification machinery a prober has no use for.
		Protocol:        2,
		DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
		// go-redis retries LOADING and MASTERDOWN replies by default, which
		// would hide exactly the replies Ping must classify. Callers
		// decide about retries.
		MaxRetries:            -1,
		DialTimeout:           dialTimeout,
		DialerRetries:         1,
		ReadTimeout:           readTimeout,
		WriteTimeout:          readTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              poolSize,
		PoolTimeout:           readTimeout,
		// Pipelines and MULTI share the one pool, so Promote's CLIENT KILL
		// runs on the connection our next command most likely reuses.
		PipelinePoolSize: -1,
	})
	return &Conn{addr: cfg.Addr, host: host, port: port, client: client,
		info: &link{addr: cfg.Addr, clientName: cfg.ClientName, dialTimeout: dialTimeout, tls: tlsConfig},
		auth: cfg.Auth, readTimeout: readTimeout}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func splitAddr(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("instance address %q: %w", clip(addr), err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 || host == "" {
		return "", 0, fmt.Errorf("instance address %q: want host:port with a port in 1-65535", clip(addr))
	}
	return host, port, nil
}

// validClientName applies Redis's rule for CLIENT SETNAME, so a bad name
// fails here instead of on every connection attempt.
func validClientName(name string) error {
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return fmt.Errorf("client name %q: only printable ASCII without spaces is allowed", clip(name))
		}
	}
	return nil
}

// Addr is the instance address this Conn was made for.
func (c *Conn) Addr() string { return c.addr }

// Close closes the connections; commands in flight fail. It never waits:
// an Info in flight closes its connection when it returns.
func (c *Conn) Close() error {
	err := c.client.Close()
	if c.infoMu.TryLock() {
		c.closeInfo()
	} else {
		go func() {
			c.infoMu.Lock()
			c.closeInfo()
		}()
	}
	return err
}

// closeInfo must be called with infoMu held; it releases it.
func (c *Conn) closeInfo() {
	c.closed = true
	c.info.close()
	c.infoMu.Unlock()
}

// PingResult is one PING, classified the way Sentinel does for SDOWN.
type PingResult struct {
	// Valid is true for PONG and for the LOADING and MASTERDOWN error
	// replies: the instance is alive and serving the protocol.
	Valid bool
	// Replied is true when the instance answered at all, valid or not.
	// Timeouts and connection failures leave it false.
	Replied bool
	// Reply is the reply text ("PONG", "LOADING Redis is loading ...",
	// "NOAUTH ...") or the transport error text.
	Reply string
	// Err is nil for PONG; otherwise the error reply or transport error.
	Err error
	// TimedOut is true when the deadline passed without an answer: the
	// instance is frozen or overloaded, or the network drops packets,
	// unlike a refused or broken connection. (For logs and tests: the SDOWN
	// clock treats every failed contact alike.)
	TimedOut bool
}

// Ping sends PING and classifies the outcome. It returns by the context's
// deadline even when the server is frozen.
func (c *Conn) Ping(ctx context.Context) PingResult {
	var reply string
	err := retryStale(ctx, func() error {
		var err error
		reply, err = c.client.Ping(ctx).Result()
		return err
	})
	return classifyPing(reply, err)
}

// retryStale runs op again, once, when it failed because the server had
// closed a pooled connection: CLIENT KILL TYPE normal during any node's
// failover step closes every coordinator's probe connections, and that
// says nothing about the instance's health. A restarted instance leaves
// the same behind, which go-redis's pool cannot tell from a live
// connection over TLS: without this the leader's first command to a
// returning old master would get EOF. Only commands that can be repeated
// go through it (not FAILOVER TO). go-redis's own retries are off
// because they would also repeat LOADING and MASTERDOWN replies.
func retryStale(ctx context.Context, op func() error) error {
	err := op()
	if err != nil && isClosedByPeer(err) && ctx.Err() == nil {
		err = op()
	}
	return err
}

func isClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func classifyPing(reply string, err error) PingResult {
	if err == nil {
		if strings.HasPrefix(reply, "PONG") {
			return PingResult{Valid: true, Replied: true, Reply: reply}
		}
		return PingResult{Replied: true, Reply: reply, Err: fmt.Errorf("unexpected PING reply %q", clip(reply))}
	}
	// A reply that fails the connection handshake (NOAUTH, WRONGPASS)
	// arrives wrapped; it is still the instance's answer.
	var redisErr redis.Error
	if errors.As(err, &redisErr) {
		text := redisErr.Error()
		valid := strings.HasPrefix(text, "LOADING") || strings.HasPrefix(text, "MASTERDOWN")
		return PingResult{Valid: valid, Replied: true, Reply: text, Err: err}
	}
	timedOut := errors.Is(err, context.DeadlineExceeded)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		timedOut = true
	}
	return PingResult{Reply: err.Error(), Err: err, TimedOut: timedOut}
}

// Info reads INFO server, replication, persistence and keyspace in one
// round trip (four commands, because servers before 7.0 take one section
// per INFO) and parses them.
func (c *Conn) Info(ctx context.Context) (Info, error) {
	return c.infoSections(ctx, "server", "replication", "persistence", "keyspace")
}

// FenceInfo reads only INFO replication and persistence, what fencing
// needs (the role, loading, the replicas with their state and lag), in one
// round trip: the leader asks every master four times a second, and the
// server and keyspace sections were most of the text to read and parse.
// The fields of the other sections (RunID, RedisVersion, Keys) are zero.
func (c *Conn) FenceInfo(ctx context.Context) (Info, error) {
	return c.infoSections(ctx, "replication", "persistence")
}

// infoSections reads the sections on the Conn's own INFO connection, or
// through go-redis's pool while another read holds that connection.
func (c *Conn) infoSections(ctx context.Context, sections ...string) (Info, error) {
	if c.infoMu.TryLock() {
		defer c.infoMu.Unlock()
		if c.closed {
			return Info{}, fmt.Errorf("INFO on %s: %w", c.addr, redis.ErrClosed)
		}
		dl := time.Now().Add(c.readTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		return c.info.infoSections(ctx, dl, c.auth, sections...)
	}
	cmds := make([]*redis.StringCmd, len(sections))
	err := retryStale(ctx, func() error {
		_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, s := range sections {
				cmds[i] = p.Info(ctx, s)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return Info{}, fmt.Errorf("INFO on %s: %w", c.addr, err)
	}
	text := make([]string, len(cmds))
	for i, cmd := range cmds {
		text[i] = cmd.Val()
	}
	info, err := ParseInfo(strings.Join(text, "\r\n"))
	if err != nil {
		return Info{}, fmt.Errorf("INFO on %s: %w", c.addr, err)
	}
	return info, nil
}

// PromoteOptions is what Promote does besides the role change.
type PromoteOptions struct {
	// Unfence sets min-replicas-to-write 0 in the same transaction, before
	// the role change, so that the new master never answers NOREPLICAS
	// with a fence it kept from its days as a replica.
	Unfence bool
}

// Promote makes the instance a master: REPLICAOF NO ONE, CONFIG REWRITE
// so that a restart keeps the new role, and CLIENT KILL of normal and
// pub/sub clients so that they reconnect and ask the coordinator again
// instead of writing to a server whose role changed under them. Our own
// connection survives (CLIENT KILL skips the caller). It returns the
// instance's INFO replication as read after the role change.
//
// The commands run in one MULTI/EXEC, as Sentinel sends them, so no client
// command runs between the role change and the kills; the unfence and the
// INFO ride along, which saves the leader two round trips per promotion
// (with a hundred masters failing at once on a loaded machine, each was
// about a tenth of a second). CONFIG REWRITE's error on a server started
// without a config file is ignored; its other errors are returned after
// the role change has happened. Promote is idempotent. An error, a timeout
// in particular, does not prove that nothing changed: confirm the role
// with Info.
func (c *Conn) Promote(ctx context.Context, opts PromoteOptions) (Info, error) {
	var before [][]any
	if opts.Unfence {
		before = [][]any{{"CONFIG", "SET", "min-replicas-to-write", "0"}}
	}
	return c.reconfigure(ctx, "promote", before, "REPLICAOF", "NO", "ONE")
}

// ReplicaOf makes the instance replicate from host:port, with the same
// CONFIG REWRITE and client kills as Promote, and the same caveats. It
// refuses (ErrSelfReplication) a target that names the instance itself.
func (c *Conn) ReplicaOf(ctx context.Context, host string, port int) error {
	if err := c.checkTarget(ctx, host, port); err != nil {
		return fmt.Errorf("REPLICAOF %s on %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), c.addr, err)
	}
	_, err := c.reconfigure(ctx, "replicaof "+net.JoinHostPort(host, strconv.Itoa(port)), nil,
		"REPLICAOF", host, strconv.Itoa(port))
	return err
}

// ErrNotRewritten wraps the error of a Promote or ReplicaOf that changed
// the instance's role but could not store it with CONFIG REWRITE because
// the server has CONFIG renamed away: the change holds until a restart.
// Callers treat it as done and warn.
var ErrNotRewritten = errors.New("applied without CONFIG REWRITE (CONFIG is renamed away), so a restart would undo it")

// reconfigure runs the configs (CONFIG SET commands), then the role
// command, in reconfigureTx, and returns the INFO replication read after
// the role change.
func (c *Conn) reconfigure(ctx context.Context, what string, configs [][]any, roleCommand ...any) (Info, error) {
	info, err := c.reconfigureTx(ctx, what, configs, true, roleCommand)
	if isUnknownConfig(err) {
		// The server refused the whole transaction at EXEC because CONFIG
		// could not be queued: nothing was applied. Sentinel's own
		// transaction fails the same way unless told the new name; the
		// role change matters more than storing it (or than the configs,
		// which CONFIG renamed away rules out anyway), so do it without.
		if info, err = c.reconfigureTx(ctx, what, nil, false, roleCommand); err != nil {
			return Info{}, err
		}
		return info, fmt.Errorf("%s on %s: %w", what, c.addr, ErrNotRewritten)
	}
	return info, err
}

func (c *Conn) reconfigureTx(ctx context.Context, what string, configs [][]any, withRewrite bool, roleCommand []any) (Info, error) {
	var role, rewrite, killNormal, killPubsub *redis.Cmd
	var info *redis.StringCmd
	sets := make([]*redis.Cmd, len(configs))
	txErr := retryStale(ctx, func() error {
		_, err := c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, cmd := range configs {
				sets[i] = p.Do(ctx, cmd...)
			}
			role = p.Do(ctx, roleCommand...)
			if withRewrite {
				rewrite = p.Do(ctx, "CONFIG", "REWRITE")
			}
			killNormal = p.Do(ctx, "CLIENT", "KILL", "TYPE", "normal")
			killPubsub = p.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub")
			info = p.Info(ctx, "replication")
			return nil
		})
		return err
	})
	if withRewrite && isUnknownConfig(rewrite.Err()) {
		return Info{}, rewrite.Err()
	}
	for _, set := range sets {
		if isUnknownConfig(set.Err()) {
			return Info{}, set.Err()
		}
	}
	// A failed transaction (transport error, EXECABORT) marks every
	// command with its error, so the role command reports it first.
	if err := role.Err(); err != nil {
		return Info{}, fmt.Errorf("%s on %s: %w", what, c.addr, err)
	}
	for i, set := range sets {
		if err := set.Err(); err != nil {
			return Info{}, fmt.Errorf("%s on %s: applied, but %s failed: %w", what, c.addr, strings.TrimSpace(fmt.Sprintln(configs[i]...)), err)
		}
	}
	if withRewrite {
		if err := rewrite.Err(); err != nil && !isNoConfigFile(err) {
			return Info{}, fmt.Errorf("%s on %s: applied, but CONFIG REWRITE failed, so a restart would undo it: %w", what, c.addr, err)
		}
	}
	for _, kill := range []*redis.Cmd{killNormal, killPubsub} {
		if err := kill.Err(); err != nil {
			return Info{}, fmt.Errorf("%s on %s: applied, but killing clients failed: %w", what, c.addr, err)
		}
	}
	if txErr != nil && !isNoConfigFile(txErr) {
		return Info{}, fmt.Errorf("%s on %s: %w", what, c.addr, txErr)
	}
	parsed, err := ParseInfo(info.Val())
	if err != nil {
		return Info{}, fmt.Errorf("%s on %s: applied, but its INFO: %w", what, c.addr, err)
	}
	return parsed, nil
}

// isUnknownConfig matches the error CONFIG gets from a server that has
// it renamed away: "ERR unknown command 'CONFIG'".
func isUnknownConfig(err error) bool {
	var redisErr redis.Error
	return errors.As(err, &redisErr) && strings.Contains(strings.ToLower(redisErr.Error()), "unknown command 'config'")
}

// isNoConfigFile matches "ERR The server is running without a config file".
func isNoConfigFile(err error) bool {
	var redisErr redis.Error
	return errors.As(err, &redisErr) && strings.Contains(redisErr.Error(), "without a config file")
}

// FailoverTo asks the instance, a master, to hand over to its replica
// host:port without losing acknowledged writes (Redis 6.2's FAILOVER): it
// pauses writes, waits until the replica has caught up, then swaps roles
// with it. FAILOVER returns at once; follow master_failover_state in Info.
// If the replica does not catch up within timeout the master aborts and
// keeps its role. Clients are not disconnected by FAILOVER itself: run
// ReplicaOf(host, port) on the old master afterwards to kill them.
func (c *Conn) FailoverTo(ctx context.Context, host string, port int, timeout time.Duration) error {
	target := net.JoinHostPort(host, strconv.Itoa(port))
	if err := c.checkTarget(ctx, host, port); err != nil {
		return fmt.Errorf("FAILOVER TO %s on %s: %w", target, c.addr, err)
	}
	if timeout < time.Millisecond {
		return fmt.Errorf("FAILOVER TO %s on %s: timeout %v is below 1ms", target, c.addr, timeout)
	}
	err := c.client.Do(ctx, "FAILOVER", "TO", host, strconv.Itoa(port), "TIMEOUT", timeout.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("FAILOVER TO %s on %s: %w", target, c.addr, err)
	}
	return nil
}

// FailoverAbort aborts a FAILOVER in progress. Without one it succeeds, so
// that it can be repeated.
func (c *Conn) FailoverAbort(ctx context.Context) error {
	err := retryStale(ctx, func() error { return c.client.Do(ctx, "FAILOVER", "ABORT").Err() })
	var redisErr redis.Error
	if errors.As(err, &redisErr) && strings.Contains(redisErr.Error(), "No failover in progress") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("FAILOVER ABORT on %s: %w", c.addr, err)
	}
	return nil
}

// PauseWrites holds every client's write commands (CLIENT PAUSE ms WRITE,
// Redis 6.2) for d, or until Unpause; reads go on.
func (c *Conn) PauseWrites(ctx context.Context, d time.Duration) error {
	if d < time.Millisecond {
		return fmt.Errorf("CLIENT PAUSE on %s: duration %v is below 1ms", c.addr, d)
	}
	if err := retryStale(ctx, func() error { return c.client.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "WRITE").Err() }); err != nil {
		return fmt.Errorf("CLIENT PAUSE on %s: %w", c.addr, err)
	}
	return nil
}

// Unpause ends PauseWrites early.
func (c *Conn) Unpause(ctx context.Context) error {
	if err := retryStale(ctx, func() error { return c.client.Do(ctx, "CLIENT", "UNPAUSE").Err() }); err != nil {
		return fmt.Errorf("CLIENT UNPAUSE on %s: %w", c.addr, err)
	}
	return nil
}

// checkTarget refuses a replication target that is the instance itself:
// the same port, and a host that is literally the same, resolves to a
// common address, or is a loopback address (which the instance would read
// as itself even when we reach it by another name).
func (c *Conn) checkTarget(ctx context.Context, host string, port int) error {
	if host == "" || port < 1 || port > 65535 {
		return fmt.Errorf("target %q port %d: want a host and a port in 1-65535", clip(host), port)
	}
	if port != c.port {
		return nil
	}
	if strings.EqualFold(host, c.host) {
		return ErrSelfReplication
	}
	targetIPs, err := resolve(ctx, host)
	if err != nil {
		return fmt.Errorf("cannot tell whether the target is the instance itself: %w", err)
	}
	for _, ip := range targetIPs {
		if ip.IsLoopback() || ip.IsUnspecified() {
			return ErrSelfReplication
		}
	}
	ownIPs, err := resolve(ctx, c.host)
	if err != nil {
		return fmt.Errorf("cannot tell whether the target is the instance itself: %w", err)
	}
	for _, a := range targetIPs {
		for _, b := range ownIPs {
			if a == b {
				return ErrSelfReplication
			}
		}
	}
	return nil
}

func resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolving %q: %w", clip(host), err)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// SetMasterAuth sets the credentials the instance uses to authenticate to
// its master (CONFIG SET masteruser and masterauth), so that a server
// started without them can replicate from a master that wants them. An
// empty user clears masteruser (plain AUTH password). It changes the
// running server only: the CONFIG REWRITE that ReplicaOf sends next
// stores them. Sentinel sends neither: it expects masterauth configured
// on every instance beforehand.
func (c *Conn) SetMasterAuth(ctx context.Context, auth Auth) error {
	var user, pass *redis.Cmd
	err := retryStale(ctx, func() error {
		_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			user = p.Do(ctx, "CONFIG", "SET", "masteruser", auth.User)
			pass = p.Do(ctx, "CONFIG", "SET", "masterauth", auth.Pass)
			return nil
		})
		return err
	})
	for _, cmd := range []*redis.Cmd{user, pass} {
		if e := cmd.Err(); e != nil {
			return fmt.Errorf("CONFIG SET masteruser/masterauth on %s: %w", c.addr, e)
		}
	}
	if err != nil {
		return fmt.Errorf("CONFIG SET masteruser/masterauth on %s: %w", c.addr, err)
	}
	return nil
}

// HasFence reports whether min-replicas-to-write and min-replicas-max-lag
// are minReplicas and maxLagSeconds now. It only reads (CONFIG GET), so the
// leader may ask it without confirming its leadership first.
func (c *Conn) HasFence(ctx context.Context, minReplicas int, maxLagSeconds int64) (bool, error) {
	var getLag, getCount *redis.MapStringStringCmd
	if err := retryStale(ctx, func() error {
		_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			getLag = p.ConfigGet(ctx, "min-replicas-max-lag")
			getCount = p.ConfigGet(ctx, "min-replicas-to-write")
			return nil
		})
		return err
	}); err != nil {
		return false, fmt.Errorf("fence on %s: %w", c.addr, err)
	}
	return getLag.Val()["min-replicas-max-lag"] == strconv.FormatInt(maxLagSeconds, 10) &&
		getCount.Val()["min-replicas-to-write"] == strconv.Itoa(minReplicas), nil
}

// SetFence sets min-replicas-to-write and min-replicas-max-lag (CONFIG SET,
// both in one MULTI/EXEC so that no write is judged between the two) and
// rewrites the config file where the server has one, so that a restart
// keeps the fence. A count of 0 turns the fence off. It sets even values
// already in force: a caller that wants the config file left alone then
// asks HasFence first.
func (c *Conn) SetFence(ctx context.Context, minReplicas int, maxLagSeconds int64) error {
	if minReplicas < 0 || maxLagSeconds < 1 {
		return fmt.Errorf("fence on %s: want a count of 0 or more and a lag of 1 s or more, got %d and %d", c.addr, minReplicas, maxLagSeconds)
	}
	var lag, count, rewrite *redis.Cmd
	err := retryStale(ctx, func() error {
		_, err := c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			lag = p.Do(ctx, "CONFIG", "SET", "min-replicas-max-lag", strconv.FormatInt(maxLagSeconds, 10))
			count = p.Do(ctx, "CONFIG", "SET", "min-replicas-to-write", strconv.Itoa(minReplicas))
			rewrite = p.Do(ctx, "CONFIG", "REWRITE")
			return nil
		})
		return err
	})
	for _, cmd := range []*redis.Cmd{lag, count} {
		if e := cmd.Err(); e != nil {
			return fmt.Errorf("fence on %s: %w", c.addr, e)
		}
	}
	if e := rewrite.Err(); e != nil && !isNoConfigFile(e) {
		return fmt.Errorf("fence on %s: set, but CONFIG REWRITE failed, so a restart would undo it: %w", c.addr, e)
	}
	if err != nil && !isNoConfigFile(err) {
		return fmt.Errorf("fence on %s: %w", c.addr, err)
	}
	return nil
}

// RefusesConnections reports whether a new TCP connection to the instance
// is refused: no process listens on its port. It sends no command, so the
// leader may ask it without confirming its leadership first, and a dead
// old master costs a failover no leadership round trip (about a tenth of
// a second each with a hundred failovers at once on a loaded machine).
// Any other outcome (connected, timed out, unreachable) is false.
func (c *Conn) RefusesConnections(ctx context.Context) bool {
	d := net.Dialer{Timeout: c.info.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return IsRefused(err)
	}
	_ = conn.Close()
	return false
}

// IsRefused reports a connection refused: on a direct path (no proxy, NAT
// or firewall answering for the host) no process listens on the port.
func IsRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
