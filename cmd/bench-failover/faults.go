package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
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
