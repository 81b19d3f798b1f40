package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// link is one RESP2 connection to an instance that the Watcher dials and
// reads itself, for one loop: the PING loop and the INFO loop each own one.
// A client library's pool would stand between a failed contact and the
// next one: go-redis stops dialing after as many failed dials as its pool
// size and then retries only in the background, once a second, so an
// instance that came back could stay unseen for longer than it was away.
// A link dials whenever its loop asks and no connection is open, so every
// contact attempt reaches the network.
//
// A link is used by one goroutine at a time and holds one command (or one
// pipelined batch) in flight.
type link struct {
	addr        string
	clientName  string
	dialTimeout time.Duration
	// tls, when set, makes every connection a TLS client of the instance.
	tls *tls.Config

	conn net.Conn
	br   *bufio.Reader
	auth Auth // what conn authenticated with
	// reused is true once conn has served a command: a reused connection
	// that turns out closed by the server is redialed once at once.
	reused bool
	// dials counts the connections made, so a caller can tell a reconnect.
	dials uint64

	// life is the context a bound link's contacts run under (bind); mu
	// guards conn and cut against the function that ends life, the only
	// other goroutine that touches the link.
	life context.Context
	mu   sync.Mutex
	cut  bool
}

// bind makes ctx the link's lifetime, for a loop that makes every contact
// under one context with a deadline of its own (ping, info):
// once ctx is done, a round trip in flight ends at once and no other
// starts. context.WithTimeout per contact would give each a timer and a
// child registered with ctx, and the round trip's cancellation hook
// another registration: at 1,000 groups, thousands of contacts a second
// per node, that was about a tenth of a node's CPU profile. A bound link
// watches ctx once, for as long as it lives. The returned function stops
// watching.
func (l *link) bind(ctx context.Context) (stop func() bool) {
	l.life = ctx
	return context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.cut = true
		if l.conn != nil {
			_ = l.conn.SetDeadline(time.Unix(1, 0))
		}
	})
}

// maxReplyBytes bounds one bulk reply (INFO is a few kilobytes; a replica
// list of thousands stays far below it).
const maxReplyBytes = 16 << 20

// replyError is an error reply from the instance ("-LOADING ..."). It
// satisfies go-redis's redis.Error, so classifyPing treats it as the
// instance's answer, as it does go-redis's own.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks replyError as a reply, not a transport failure.
func (replyError) RedisError() {}

// do sends the commands in one write and returns their replies in order:
// a string for simple and bulk strings and integers, a replyError for error
// replies (in the slice, not as the error). err is a transport failure, or
// the replyError of a refused AUTH. It returns by dl (none if zero), and
// at once when ctx is cancelled. A connection found closed by the server
// when reused (after a CLIENT KILL, say) is redialed and the batch sent
// once more: that says nothing about the instance's health.
func (l *link) do(ctx context.Context, dl time.Time, auth Auth, cmds ...[]string) ([]any, error) {
	if l.conn != nil && l.auth != auth {
		l.close()
	}
	replies, reused, err := l.try(ctx, dl, auth, cmds)
	if err != nil && reused && isClosedByPeer(err) && ctx.Err() == nil {
		replies, _, err = l.try(ctx, dl, auth, cmds)
	}
	return replies, err
}

// try is one attempt of do; reused says whether it ran on a connection
// that had served a command before.
func (l *link) try(ctx context.Context, dl time.Time, auth Auth, cmds [][]string) (replies []any, reused bool, err error) {
	var hello [][]string
	if l.conn == nil {
		if err := l.dial(ctx, dl, auth); err != nil {
			return nil, false, err
		}
		hello = l.handshake(auth)
	}
	reused = l.reused
	// The handshake travels in the same write as the commands: a fresh
	// connection costs one round trip, not two.
	replies, err = l.roundTrip(ctx, dl, append(hello, cmds...))
	if err != nil {
		l.close()
		if !reused && l.tls == nil && isClosedByPeer(err) {
			// What a TLS-only port does to a plaintext client.
			err = fmt.Errorf("%w (the server closed a new connection at its first command: a TLS port reached without TLS?)", err)
		}
		return nil, reused, err
	}
	l.reused = true
	if len(hello) > 0 {
		if e, ok := replies[0].(replyError); ok && auth != (Auth{}) {
			l.close()
			return nil, reused, e
		}
		// CLIENT SETNAME failing (an ACL user without CLIENT, say) costs
		// only the name in CLIENT LIST.
		replies = replies[len(hello):]
	}
	return replies, reused, nil
}

func (l *link) dial(ctx context.Context, dl time.Time, auth Auth) error {
	if !dl.IsZero() {
		// Rare (a new connection): a context of its own is cheap enough.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	d := net.Dialer{Timeout: l.dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		return err
	}
	if l.tls != nil {
		tc := tls.Client(conn, l.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("TLS handshake with %s: %w", l.addr, err)
		}
		conn = tc
	}
	l.mu.Lock()
	cut := l.cut
	if !cut {
		l.conn = conn
	}
	l.mu.Unlock()
	if cut {
		_ = conn.Close()
		return ctx.Err()
	}
	l.br, l.auth, l.reused = bufio.NewReaderSize(conn, 4096), auth, false
	l.dials++
	return nil
}

func (l *link) handshake(auth Auth) [][]string {
	var out [][]string
	switch {
	case auth.User != "":
		out = append(out, []string{"AUTH", auth.User, auth.Pass})
	case auth.Pass != "":
		out = append(out, []string{"AUTH", auth.Pass})
	}
	if l.clientName != "" {
		out = append(out, []string{"CLIENT", "SETNAME", l.clientName})
	}
	return out
}

func (l *link) roundTrip(ctx context.Context, dl time.Time, cmds [][]string) ([]any, error) {
	conn := l.conn
	if err := l.armDeadline(ctx, conn, dl); err != nil {
		return nil, err
	}
	if ctx != l.life {
		defer interruptWhenDone(ctx, conn)()
	}

	var b []byte
	for _, c := range cmds {
		b = appendCommand(b, c)
	}
	if _, err := conn.Write(b); err != nil {
		return nil, ctxErr(ctx, dl, err)
	}
	// The reply cannot be there yet: reading now would fail (EAGAIN) and
	// park the goroutine on the poller. Letting the other contacts of the
	// same burst send theirs first (see Watcher.onGrid) gives the instance
	// that time, so that the read usually finds the reply.
	runtime.Gosched()
	replies := make([]any, len(cmds))
	for i := range cmds {
		r, err := readReply(l.br)
		if err != nil {
			return nil, ctxErr(ctx, dl, err)
		}
		replies[i] = r
	}
	return replies, nil
}

// armDeadline sets conn's deadline to dl, unless the link's life has
// ended (bind): the function that ends it cuts the connection under mu,
// so a deadline set here never overwrites the cut.
func (l *link) armDeadline(ctx context.Context, conn net.Conn, dl time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return ctx.Err()
	}
	return conn.SetDeadline(dl)
}

// interruptWhenDone makes ctx's end (the caller giving up) end a read
// blocked on a frozen server at once, for a call not bound to the link's
// life. The returned function, called when the round trip ends, keeps a
// late run from overwriting the next call's deadline.
func interruptWhenDone(ctx context.Context, conn net.Conn) (finish func()) {
	var mu sync.Mutex
	finished := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !finished {
			_ = conn.SetDeadline(time.Unix(1, 0))
		}
	})
	return func() {
		stop()
		mu.Lock()
		finished = true
		mu.Unlock()
	}
}

// ctxErr reports a cancelled ctx, or dl passed, as the context's error
// would be, so callers see context.DeadlineExceeded as they do from
// go-redis.
func ctxErr(ctx context.Context, dl time.Time, err error) error {
	if ctxE := ctx.Err(); ctxE != nil {
		return fmt.Errorf("%w (%v)", ctxE, err)
	}
	if !dl.IsZero() && !time.Now().Before(dl) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

func (l *link) close() {
	if l.conn != nil {
		_ = l.conn.Close()
		l.mu.Lock()
		l.conn = nil
		l.mu.Unlock()
		l.br, l.reused = nil, false
	}
}

func appendCommand(b []byte, args []string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

var errProtocol = errors.New("protocol error")

// maxReplyDepth bounds nested arrays.
const maxReplyDepth = 8

// readReply reads one RESP2 reply. Arrays (which no command of the probe
// gets) are read and dropped so the stream stays in step.
func readReply(r *bufio.Reader) (any, error) { return readReplyDepth(r, 0) }

func readReplyDepth(r *bufio.Reader, depth int) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, fmt.Errorf("%w: empty reply line", errProtocol)
	}
	body := string(line[1:])
	switch line[0] {
	case '+', ':':
		return body, nil
	case '-':
		return replyError(body), nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxReplyBytes {
			return nil, fmt.Errorf("%w: bulk length %q", errProtocol, clip(body))
		}
		if n == -1 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, noEOF(err)
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, fmt.Errorf("%w: bulk not ended by CRLF", errProtocol)
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 || depth >= maxReplyDepth {
			return nil, fmt.Errorf("%w: array length %q at depth %d", errProtocol, clip(body), depth)
		}
		for range max(n, 0) {
			if _, err := readReplyDepth(r, depth+1); err != nil {
				return nil, err
			}
		}
		return "", nil
	}
	return nil, fmt.Errorf("%w: unexpected reply type %q", errProtocol, clip(string(line)))
}

func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("%w: reply line longer than %d bytes", errProtocol, r.Size())
	}
	if err != nil {
		if len(line) > 0 {
			return nil, noEOF(err)
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line not ended by CRLF", errProtocol)
	}
	return line[:len(line)-2], nil
}

// noEOF turns an EOF in the middle of a reply into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ping sends PING, by dl, and classifies the outcome as Conn.Ping does.
func (l *link) ping(ctx context.Context, dl time.Time, auth Auth) PingResult {
	replies, err := l.do(ctx, dl, auth, []string{"PING"})
	if err != nil {
		return classifyPing("", err)
	}
	return classifyPingReply(replies[0])
}

// classifyPingReply classifies one reply read by readReply to a PING.
func classifyPingReply(reply any) PingResult {
	switch r := reply.(type) {
	case replyError:
		return classifyPing("", r)
	case string:
		return classifyPing(r, nil)
	}
	return classifyPing("", fmt.Errorf("%w: PING reply %T", errProtocol, reply))
}

// pingWithReplication sends PING and INFO replication in one write, by
// dl: the PING classified as ping does, and the INFO parsed when the PING
// got PONG and the INFO came back (nil otherwise: a server or user that
// refuses INFO leaves the PING as it is). A server that answers PONG is
// not loading (one that is answers LOADING), so INFO persistence, larger
// than INFO replication, is not asked for: the carried INFO's Loading is false,
// and a LOADING server's is left to the fence's own read.
func (l *link) pingWithReplication(ctx context.Context, dl time.Time, auth Auth) (PingResult, *Info) {
	replies, err := l.do(ctx, dl, auth, []string{"PING"}, []string{"INFO", "replication"})
	if err != nil {
		return classifyPing("", err), nil
	}
	res := classifyPingReply(replies[0])
	repl, ok := replies[1].(string)
	if res.Err != nil || !ok {
		return res, nil
	}
	info, err := ParseInfo(repl)
	if err != nil {
		return res, nil
	}
	return res, &info
}

// info reads INFO server, replication, persistence and keyspace in one
// round trip, by dl, and parses them, as Conn.Info does.
func (l *link) info(ctx context.Context, dl time.Time, auth Auth) (Info, error) {
	return l.infoSections(ctx, dl, auth, "server", "replication", "persistence", "keyspace")
}

// infoSections reads INFO of each section (one command each, for servers
// before 7.0) in one round trip, by dl, and parses them together.
func (l *link) infoSections(ctx context.Context, dl time.Time, auth Auth, sections ...string) (Info, error) {
	cmds := make([][]string, len(sections))
	for i, s := range sections {
		cmds[i] = []string{"INFO", s}
	}
	replies, err := l.do(ctx, dl, auth, cmds...)
	if err != nil {
		return Info{}, fmt.Errorf("INFO on %s: %w", l.addr, err)
	}
	var text []string
	for _, r := range replies {
		switch r := r.(type) {
		case replyError:
			return Info{}, fmt.Errorf("INFO on %s: %w", l.addr, r)
		case string:
			text = append(text, r)
		}
	}
	info, err := ParseInfo(strings.Join(text, "\r\n"))
	if err != nil {
		return Info{}, fmt.Errorf("INFO on %s: %w", l.addr, err)
	}
	return info, nil
}
