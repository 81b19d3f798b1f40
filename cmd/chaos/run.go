package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const listKey = "chaos"

// ack is one acknowledged RPUSH: its unique element, when the client got
// the reply, and the server address that acknowledged it (CLIENT INFO's
// laddr, run in the same MULTI).
type ack struct {
	elem   string
	at     time.Time
	server string
	client string
}

// writer runs one client writing unique elements until stop.
type writer struct {
	name string
	c    redis.UniversalClient
	mu   sync.Mutex
	acks []ack
	errs int
}

func (wr *writer) loop(ctx context.Context, timeout time.Duration) {
	for seq := 0; ctx.Err() == nil; seq++ {
		elem := fmt.Sprintf("%s-%d", wr.name, seq)
		cctx, cancel := context.WithTimeout(ctx, timeout)
		var info *redis.Cmd
		_, err := wr.c.TxPipelined(cctx, func(p redis.Pipeliner) error {
			p.RPush(cctx, listKey, elem)
			info = p.Do(cctx, "CLIENT", "INFO")
			return nil
		})
		cancel()
		now := time.Now()
		if err == nil {
			wr.mu.Lock()
			wr.acks = append(wr.acks, ack{elem: elem, at: now, server: laddr(info.String()), client: wr.name})
			wr.mu.Unlock()
		} else {
			wr.mu.Lock()
			wr.errs++
			wr.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func laddr(clientInfo string) string {
	for _, f := range strings.Fields(clientInfo) {
		if v, ok := strings.CutPrefix(f, "laddr="); ok {
			return v
		}
	}
	return "?"
}

// roleChange is one change of an instance's role seen by the observer.
type roleChange struct {
	at   time.Time
	addr string
	role string
}

// observer polls ROLE on every instance and listens to +switch-master on
// every node, from the namespace no scenario cuts.
type observer struct {
	mu       sync.Mutex
	roles    []roleChange
	switches map[string]time.Time // new master address -> first +switch-master
	tries    map[string]time.Time // node host -> first +try-failover it published
	// answers are the endpoints' replies to SENTINEL
	// get-master-addr-by-name, asked every answerEvery.
	answers []endpointAnswer
}

// endpointAnswer is one endpoint's reply naming the master.
type endpointAnswer struct {
	at     time.Time
	host   string
	master string
}

// answerEvery is how often the observer asks every endpoint which master
// it names.
const answerEvery = 100 * time.Millisecond

func (o *observer) run(ctx context.Context, w *world) {
	o.switches, o.tries = map[string]time.Time{}, map[string]time.Time{}
	for _, h := range redisHosts {
		c, addr := w.obs[h], w.addr(h, redisPort)
		go func() {
			last := ""
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				v, err := c.Do(cctx, "ROLE").Slice()
				cancel()
				if err == nil && len(v) > 0 {
					role := fmt.Sprint(v[0])
					if role != last {
						o.mu.Lock()
						o.roles = append(o.roles, roleChange{time.Now(), addr, role})
						o.mu.Unlock()
						last = role
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	for _, h := range coordHosts {
		go func() {
			c := w.obsClient(w.addr(h, sentPort))
			defer c.Close()
			for ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				v, err := c.Do(cctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName).StringSlice()
				cancel()
				if err == nil && len(v) == 2 {
					o.mu.Lock()
					o.answers = append(o.answers, endpointAnswer{time.Now(), h, v[0] + ":" + v[1]})
					o.mu.Unlock()
				}
				_ = sleepCtx(ctx, answerEvery)
			}
		}()
		go func() {
			c := w.obsClient(w.addr(h, sentPort))
			defer c.Close()
			for ctx.Err() == nil {
				sub := c.Subscribe(ctx, "+switch-master", "+try-failover")
				for ctx.Err() == nil {
					m, err := sub.ReceiveTimeout(ctx, time.Second)
					if err != nil {
						if strings.Contains(err.Error(), "timeout") {
							continue
						}
						break
					}
					msg, ok := m.(*redis.Message)
					if !ok {
						continue
					}
					o.mu.Lock()
					switch msg.Channel {
					case "+switch-master":
						if f := strings.Fields(msg.Payload); len(f) == 5 {
							if _, seen := o.switches[f[3]+":"+f[4]]; !seen {
								o.switches[f[3]+":"+f[4]] = time.Now()
							}
						}
					case "+try-failover":
						if _, seen := o.tries[h]; !seen {
							o.tries[h] = time.Now()
						}
					}
					o.mu.Unlock()
				}
				sub.Close()
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
}

// firstTry is the node that first published +try-failover, and when.
func (o *observer) firstTry() (string, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	host, at := "", time.Time{}
	for h, t := range o.tries {
		if at.IsZero() || t.Before(at) {
			host, at = h, t
		}
	}
	return host, at
}

// result is one run's figures.
type result struct {
	lost, acked     int
	lostWindow      time.Duration
	doubleMaster    bool
	minorityFailovr int
	// switches counts the distinct new masters +switch-master named.
	switches int
	// detach is when, from the cut, the observer first saw a replica turn
	// master (the candidate's detachment from the old master); negative
	// when none did. lostWindowDetach is the largest time from that
	// detachment to the acknowledgement of a lost write (0 when every lost
	// write was acknowledged before it), the span the fence bounds.
	detach           time.Duration
	lostWindowDetach time.Duration
	// staleAnswers counts the endpoint answers (SENTINEL
	// get-master-addr-by-name, every answerEvery from every node) naming a
	// master other than the last +switch-master's, from staleGrace after
	// that announcement to the end of the run; staleEndpoints how many
	// endpoints gave one; staleClientAcks the FailoverClient's writes
	// acknowledged by another server over the same span.
	staleAnswers    int
	staleEndpoints  int
	staleClientAcks int
	outage          time.Duration
	settled         bool
	oldMasterRole   string
	fullSyncs       string
	err             error
}

// check reads the final master's list and compares it with the
// acknowledgements.
func check(ctx context.Context, w *world, o *observer, writers []*writer, cut, until time.Time, final string, staleGrace time.Duration) result {
	var r result
	detachAt := o.detachedAt(cut, w.addr("r1", redisPort))
	r.detach = -1
	if !detachAt.IsZero() {
		r.detach = detachAt.Sub(cut)
	}
	c := w.obsClient(final)
	defer c.Close()
	var present []string
	err := poll(ctx, 10*time.Second, "LRANGE on the final master", func() (err error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		rc := redis.NewClient(&redis.Options{Addr: final, Dialer: w.lab.dialer(w.lab.h("obs")), ReadTimeout: 5 * time.Second, MaxRetries: -1})
		defer rc.Close()
		present, err = rc.LRange(cctx, listKey, 0, -1).Result()
		return err
	})
	if err != nil {
		r.err = err
		return r
	}
	have := make(map[string]bool, len(present))
	for _, e := range present {
		have[e] = true
	}
	var all []ack
	for _, wr := range writers {
		wr.mu.Lock()
		all = append(all, wr.acks...)
		wr.mu.Unlock()
	}
	r.acked = len(all)
	span := map[string][2]time.Time{}
	for _, a := range all {
		if !have[a.elem] {
			r.lost++
			if d := a.at.Sub(cut); d > r.lostWindow {
				r.lostWindow = d
			}
			if d := a.at.Sub(detachAt); !detachAt.IsZero() && d > r.lostWindowDetach {
				r.lostWindowDetach = d
			}
		}
		s, ok := span[a.server]
		if !ok {
			s = [2]time.Time{a.at, a.at}
		}
		if a.at.Before(s[0]) {
			s[0] = a.at
		}
		if a.at.After(s[1]) {
			s[1] = a.at
		}
		span[a.server] = s
	}
	servers := make([]string, 0, len(span))
	for s := range span {
		servers = append(servers, s)
	}
	sort.Strings(servers)
	for i, a := range servers {
		for _, b := range servers[i+1:] {
			if maxT(span[a][0], span[b][0]).Before(minT(span[a][1], span[b][1])) {
				r.doubleMaster = true
			}
		}
	}
	// Role changes to master unexplained by any +switch-master to that
	// instance.
	o.mu.Lock()
	r.switches = len(o.switches)
	prev := map[string]string{}
	for _, rc := range o.roles {
		if rc.role == "master" && prev[rc.addr] == "slave" {
			if _, ok := o.switches[rc.addr]; !ok {
				r.minorityFailovr++
			}
		}
		prev[rc.addr] = rc.role
	}
	o.mu.Unlock()
	to, announced := o.lastSwitch()
	if !announced.IsZero() {
		from := announced.Add(staleGrace)
		r.staleAnswers, r.staleEndpoints = o.staleAnswers(to, from, until)
		for _, a := range all {
			if a.client == "failover" && !a.at.Before(from) && !a.at.After(until) && a.server != to {
				r.staleClientAcks++
			}
		}
	}
	// Outage: the FailoverClient's longest gap between acknowledgements
	// from the cut to the end.
	var times []time.Time
	for _, a := range all {
		if a.client == "failover" && !a.at.Before(cut) {
			times = append(times, a.at)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	last := cut
	for _, t := range times {
		if d := t.Sub(last); d > r.outage {
			r.outage = d
		}
		last = t
	}
	if d := until.Sub(last); d > r.outage {
		r.outage = d
	}
	return r
}

// detachedAt is when the observer first saw, after cut, an instance other
// than the old master turn from replica to master; zero if none did.
func (o *observer) detachedAt(cut time.Time, old string) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	prev := map[string]string{}
	for _, rc := range o.roles {
		if rc.role == "master" && prev[rc.addr] == "slave" && rc.addr != old && !rc.at.Before(cut) {
			return rc.at
		}
		prev[rc.addr] = rc.role
	}
	return time.Time{}
}

// lastSwitch is the new master the latest +switch-master announced, and
// when the observer first heard it from any node.
func (o *observer) lastSwitch() (string, time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	to, at := "", time.Time{}
	for a, t := range o.switches {
		if t.After(at) {
			to, at = a, t
		}
	}
	return to, at
}

// staleAnswers counts the endpoint answers from from to until naming a
// master other than to, and the endpoints that gave any.
func (o *observer) staleAnswers(to string, from, until time.Time) (answers, endpoints int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	hosts := map[string]bool{}
	for _, a := range o.answers {
		if !a.at.Before(from) && !a.at.After(until) && a.master != to {
			answers++
			hosts[a.host] = true
		}
	}
	return answers, len(hosts)
}

func maxT(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minT(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
