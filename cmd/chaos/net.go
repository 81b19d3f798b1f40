package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// host is one network namespace on the harness's bridge, with one address.
type host struct {
	name string // role in the topology: r1, c1, cl, obs, ...
	ns   string // namespace name
	ip   string
	veth string // the bridge-side end, inside the hub namespace
}

// lab is the harness's private network: a hub namespace holding a bridge,
// and one namespace per host joined to it by a veth pair. Nothing is
// created outside namespaces the lab made, so no traffic can leave them.
type lab struct {
	prefix string
	hub    string
	subnet string // a.b.c (a /24)
	hosts  map[string]*host
	order  []string

	mu   sync.Mutex
	cuts map[[2]string]bool // directed: from, to
}

// bogusMAC is the neighbour entry a cut installs: frames to it are flooded
// by the bridge and accepted by nobody, so packets vanish silently, as in
// a real partition (timeouts, never a refused connection).
const bogusMAC = "02:00:5e:00:de:ad"

func run(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newLab creates the hub, the bridge and a namespace per host name. On any
// error it removes what it made.
func newLab(ctx context.Context, id int, names []string) (l *lab, err error) {
	l = &lab{prefix: fmt.Sprintf("rfch%d", id), hosts: map[string]*host{}, cuts: map[[2]string]bool{},
		subnet: fmt.Sprintf("10.213.%d", id%250)}
	l.hub = l.prefix + "-hub"
	defer func() {
		if err != nil {
			l.destroy()
		}
	}()
	if err := run(ctx, "ip", "netns", "add", l.hub); err != nil {
		return l, err
	}
	br := "br0"
	for _, c := range [][]string{{"link", "add", br, "type", "bridge"}, {"link", "set", br, "up"}, {"link", "set", "lo", "up"}} {
		if err := run(ctx, append([]string{"ip", "-n", l.hub}, c...)...); err != nil {
			return l, err
		}
	}
	for i, name := range names {
		h := &host{name: name, ns: l.prefix + "-" + name, ip: fmt.Sprintf("%s.%d", l.subnet, 10+i), veth: fmt.Sprintf("v%d", i)}
		tmp := fmt.Sprintf("rfc%dx%d", id%100000, i) // a name unique in the root namespace, for a moment
		l.hosts[name], l.order = h, append(l.order, name)
		if err := run(ctx, "ip", "netns", "add", h.ns); err != nil {
			return l, err
		}
		steps := [][]string{
			{"ip", "-n", l.hub, "link", "add", h.veth, "type", "veth", "peer", "name", tmp},
			{"ip", "-n", l.hub, "link", "set", tmp, "netns", h.ns},
			{"ip", "-n", l.hub, "link", "set", h.veth, "master", br},
			{"ip", "-n", l.hub, "link", "set", h.veth, "up"},
			{"ip", "-n", h.ns, "link", "set", tmp, "name", "eth0"},
			{"ip", "-n", h.ns, "addr", "add", h.ip + "/24", "dev", "eth0"},
			{"ip", "-n", h.ns, "link", "set", "eth0", "up"},
			{"ip", "-n", h.ns, "link", "set", "lo", "up"},
		}
		for _, s := range steps {
			if err := run(ctx, s...); err != nil {
				return l, err
			}
		}
	}
	return l, nil
}

// destroy deletes every namespace the lab made (their veths go with them).
func (l *lab) destroy() {
	ctx := context.Background()
	for _, name := range l.order {
		_ = run(ctx, "ip", "netns", "del", l.hosts[name].ns)
	}
	_ = run(ctx, "ip", "netns", "del", l.hub)
}

func (l *lab) h(name string) *host {
	h, ok := l.hosts[name]
	if !ok {
		panic("no host " + name)
	}
	return h
}

// cut drops packets from each host of from to each host of to (and back,
// unless oneWay). The entries are installed in parallel, so that the cut
// takes effect on every link within a few milliseconds.
func (l *lab) cut(ctx context.Context, from, to []string, oneWay bool) error {
	var pairs [][2]string
	for _, a := range from {
		for _, b := range to {
			pairs = append(pairs, [2]string{a, b})
			if !oneWay {
				pairs = append(pairs, [2]string{b, a})
			}
		}
	}
	errs := make(chan error, len(pairs))
	for _, p := range pairs {
		go func() { errs <- l.cutOne(ctx, p[0], p[1]) }()
	}
	var first error
	for range pairs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (l *lab) cutOne(ctx context.Context, a, b string) error {
	key := [2]string{a, b}
	l.mu.Lock()
	if a == b || l.cuts[key] {
		l.mu.Unlock()
		return nil
	}
	l.cuts[key] = true // before the command, so that healAll always tries to undo it
	l.mu.Unlock()
	return run(ctx, "ip", "-n", l.h(a).ns, "neigh", "replace", l.h(b).ip, "lladdr", bogusMAC, "dev", "eth0", "nud", "permanent")
}

// healAll removes every cut, in parallel, trying each up to three times.
// A cut whose removal still fails stays recorded, so that the next healAll
// (at the end of the run, or before the next one) tries it again: under a
// heavy load an `ip` command can outlast its timeout, and a forgotten cut
// would break every later run's setup.
func (l *lab) healAll(ctx context.Context) error {
	l.mu.Lock()
	var keys [][2]string
	for k := range l.cuts {
		keys = append(keys, k)
	}
	l.mu.Unlock()
	errs := make(chan error, len(keys))
	for _, k := range keys {
		go func() {
			var err error
			for range 3 {
				err = run(ctx, "ip", "-n", l.h(k[0]).ns, "neigh", "del", l.h(k[1]).ip, "dev", "eth0")
				if err != nil && strings.Contains(err.Error(), "No such file") {
					err = nil // never installed, or already removed
				}
				if err == nil || ctx.Err() != nil {
					break
				}
			}
			if err == nil {
				l.mu.Lock()
				delete(l.cuts, k)
				l.mu.Unlock()
			}
			errs <- err
		}()
	}
	var first error
	for range keys {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// dialer returns a dial function whose sockets live in host h's namespace:
// the dial runs on a locked OS thread switched into it. A thread that
// cannot switch back is left locked, so Go retires it.
func (l *lab) dialer(h *host) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				ch <- res{nil, err}
				runtime.UnlockOSThread()
				return
			}
			defer orig.Close()
			target, err := os.Open("/run/netns/" + h.ns)
			if err != nil {
				ch <- res{nil, err}
				runtime.UnlockOSThread()
				return
			}
			defer target.Close()
			if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- res{nil, fmt.Errorf("enter %s: %w", h.ns, err)}
				runtime.UnlockOSThread()
				return
			}
			d := net.Dialer{Timeout: 500 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: net.ParseIP(h.ip)}}
			c, err := d.DialContext(ctx, network, addr)
			if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
