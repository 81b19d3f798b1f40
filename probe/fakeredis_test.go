package probe

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeRedis is a scripted RESP2 server for replies a real redis-server is
// hard to provoke on demand (MISCONF, BUSY, CONFIG REWRITE without a config
// file). It answers the connection handshake itself and hands every other
// command to reply, which returns raw RESP, or "" to hang up instead.
type fakeRedis struct {
	ln    net.Listener
	reply func(args []string) string

	mu       sync.Mutex
	commands [][]string
}

func startFakeRedis(t *testing.T, reply func(args []string) string) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{ln: ln, reply: reply}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				f.serve(c)
			}()
		}
	}()
	return f
}

// hangUpAfter, at the end of a reply, makes fakeRedis close the
// connection once it has sent the reply.
const hangUpAfter = "\x00hang up"

func (f *fakeRedis) Addr() string { return f.ln.Addr().String() }

// received returns the commands seen so far, handshake excluded.
func (f *fakeRedis) received() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.commands...)
}

func (f *fakeRedis) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		var out string
		switch strings.ToUpper(args[0]) {
		case "HELLO":
			// Like a server older than 6: go-redis falls back to RESP2.
			out = "-ERR unknown command 'HELLO'\r\n"
		case "CLIENT":
			if len(args) > 1 && strings.EqualFold(args[1], "SETNAME") {
				out = "+OK\r\n"
				break
			}
			fallthrough
		default:
			f.mu.Lock()
			f.commands = append(f.commands, args)
			f.mu.Unlock()
			out = f.reply(args)
		}
		if out == "" {
			return // hang up without a reply
		}
		out, hangUp := strings.CutSuffix(out, hangUpAfter)
		if _, err := io.WriteString(c, out); err != nil || hangUp {
			return
		}
	}
}

func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "*") {
		return strings.Fields(line), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 1 || n > 64 {
		return nil, fmt.Errorf("bad array header %q", line)
	}
	args := make([]string, n)
	for i := range args {
		head, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		head = strings.TrimRight(head, "\r\n")
		if !strings.HasPrefix(head, "$") {
			return nil, fmt.Errorf("bad bulk header %q", head)
		}
		size, err := strconv.Atoi(head[1:])
		if err != nil || size < 0 || size > 1<<20 {
			return nil, fmt.Errorf("bad bulk header %q", head)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}
