package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/raftinel/raftinel/internal/benchproc"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// freezer freezes a redis-server with DEBUG SLEEP: the server runs the
// command in its event loop and answers nothing, to anyone, until it
// returns, while its connections stay open, like SIGSTOP but inside the
// process. The connection is dialed before the fault, so the fault is one
// write.
type freezer struct {
	conn net.Conn
}

// newFreezer dials addr and checks that the server runs DEBUG SLEEP 0: a
// server without enable-debug-command answers with an error and would not
// freeze.
func newFreezer(ctx context.Context, addr string) (*freezer, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial the master for DEBUG SLEEP: %w", err)
	}
	f := &freezer{conn: conn}
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		f.close()
		return nil, err
	}
	var reply string
	err = f.send("0")
	if err == nil {
		reply, err = bufio.NewReader(conn).ReadString('\n')
	}
	if err == nil && strings.TrimSpace(reply) != "+OK" {
		err = fmt.Errorf("the master answered %q (is enable-debug-command set?)", strings.TrimSpace(reply))
	}
	if err == nil {
		err = conn.SetDeadline(time.Time{})
	}
	if err != nil {
		f.close()
		return nil, fmt.Errorf("DEBUG SLEEP 0 on %s: %w", addr, err)
	}
	return f, nil
}

// freeze sends DEBUG SLEEP for d and does not wait for the answer, which
// comes when the server wakes up.
func (f *freezer) freeze(d time.Duration) error {
	return f.send(seconds(d))
}

func (f *freezer) send(secs string) error {
	cmd := fmt.Sprintf("*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$%d\r\n%s\r\n", len(secs), secs)
	_, err := f.conn.Write([]byte(cmd))
	return err
}

func (f *freezer) close() { _ = f.conn.Close() }

// seconds renders d as DEBUG SLEEP's argument: seconds, with a fraction.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// restartDelay is how long after its SIGKILL the restart fault starts the
// master again.
const restartDelay = 300 * time.Millisecond

// restartWatch is how long the restart fault watches for a failover after
// the restart, on top of down-after.
const restartWatch = 5 * time.Second

// runRestart is the rest of a restart-300ms run, after the master's
// SIGKILL at faultAt: it starts the master again on its port with its data
// restartDelay later, times its first PONG, and watches the endpoints for
// down-after + restartWatch after the restart while the writer goes on. A
// failover here is a false one: the master was unreachable for less than
// down-after.
func runRestart(ctx context.Context, o *options, topo *topology, ev *events, w *writer, stopWriting func(), faultAt time.Time) (result, error) {
	p, err := topo.restartMaster(ctx, o, faultAt.Add(restartDelay))
	if err != nil {
		return result{}, fmt.Errorf("restart the master: %w", err)
	}
	restartedAt := time.Now()
	r := result{restarted: restartedAt.Sub(faultAt)}
	back, err := waitPong(ctx, p, topo.redisAddrs[0])
	if err != nil {
		return result{}, fmt.Errorf("the restarted master: %w", err)
	}
	r.back = back.Sub(faultAt)
	select {
	case <-time.After(time.Until(restartedAt.Add(o.downAfter + restartWatch))):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	stopWriting()
	w.wait()
	for _, d := range topo.deciders {
		if d.Exited() {
			return result{}, fmt.Errorf("%s exited with status %d: %s", d.Name, d.ExitCode, d.Tail())
		}
	}
	all := func(int) bool { return true }
	if sd, ok := ev.first(chanSdown, all); ok {
		r.sdown, r.sdownHeard = sd.at.Sub(faultAt), true
	}
	_, r.tilt = ev.first(chanTilt, all)
	_, r.odownHeard = ev.first(chanOdown, all)
	_, r.switchHeard = ev.first(chanSwitch, all)
	r.outage, r.acknowledged = w.firstAckAfter(faultAt, faultAt)
	addr, err := currentMaster(ctx, topo.sentinelAddrs)
	if err != nil {
		return result{}, err
	}
	if r.lost, r.acked, err = w.missingOn(ctx, addr); err != nil {
		return result{}, err
	}
	return r, nil
}

// waitPong returns when addr first answers PING with PONG (not LOADING),
// trying every 5 ms with a fresh connection for at most 10 s.
func waitPong(ctx context.Context, p *benchproc.Proc, addr string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if p.Exited() {
			return time.Time{}, fmt.Errorf("%s exited with status %d: %s", p.Name, p.ExitCode, p.Tail())
		}
		if last = pingOnce(ctx, addr); last == nil {
			return time.Now(), nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no PONG from %s: %w (last: %v)", addr, ctx.Err(), last)
		}
	}
}

func pingOnce(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 100 * time.Millisecond}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if reply = strings.TrimSpace(reply); reply != "+PONG" {
		return fmt.Errorf("answered %q", reply)
	}
	return nil
}

// currentMaster is the master's address as the first endpoint that
// answers names it.
func currentMaster(ctx context.Context, sentinelAddrs []string) (string, error) {
	var errs []error
	for _, addr := range sentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		hp, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		_ = sc.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		errs = append(errs, fmt.Errorf("%s: %v %w", addr, hp, err))
	}
	return "", fmt.Errorf("no endpoint names the master: %w", errors.Join(errs...))
}
