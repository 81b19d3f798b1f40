package sentinel

import "fmt"

// Pub/sub handlers run on the serving goroutine with c.mu held, so a
// confirmation is always written before any message the new subscription
// lets through: the pump needs c.mu to write.

// A node that cannot vouch for its state hears no events to relay (it is
// cut off from the leader), so it accepts no subscriber: the client
// subscribes on another node instead.
func cmdSubscribe(c *conn, args [][]byte) {
	if !c.refuseStale() {
		c.subscribe(args[1:], false)
	}
}

func cmdPSubscribe(c *conn, args [][]byte) {
	if !c.refuseStale() {
		c.subscribe(args[1:], true)
	}
}

// DisconnectSubscribers closes every connection with a subscription, for a
// node that has stopped vouching for its state: its subscribers would learn
// nothing more until it is back in touch with the leader, and a closed
// connection makes a client subscribe on another node. It returns how many
// it closed.
func (s *Server) DisconnectSubscribers() int {
	s.subsMu.RLock()
	subs := make([]*conn, 0, len(s.subs))
	for c := range s.subs {
		subs = append(subs, c)
	}
	s.subsMu.RUnlock()
	for _, c := range subs {
		c.close()
	}
	return len(subs)
}

func cmdUnsubscribe(c *conn, args [][]byte)  { c.unsubscribe(args[1:], false) }
func cmdPUnsubscribe(c *conn, args [][]byte) { c.unsubscribe(args[1:], true) }

func (c *conn) subscribe(names [][]byte, pattern bool) {
	kind := "subscribe"
	if pattern {
		kind = "psubscribe"
	}
	c.startPump()
	// Registered before any subscription exists, so that the fan-out can
	// see the connection as soon as it has one.
	c.s.setSubscribed(c, true)
	for _, b := range names {
		name := string(b)
		c.subMu.Lock()
		set, list, n := c.channels, &c.chanList, &c.nChan
		if pattern {
			set, list, n = c.patterns, &c.patList, &c.nPat
		}
		_, dup := set[name]
		full := !dup && c.subscriptions() >= maxSubscriptions
		if !dup && !full {
			set[name] = struct{}{}
			*list = append(*list, name)
			n.Add(1)
		}
		c.subMu.Unlock()
		if full {
			c.w.Error(fmt.Sprintf("ERR too many subscriptions on one connection (at most %d)", maxSubscriptions))
			break
		}
		c.w.PushHeader(3)
		c.w.BulkString(kind)
		c.w.BulkString(name)
		c.w.Int(int64(c.subscriptions()))
	}
	if c.subscriptions() == 0 {
		c.s.setSubscribed(c, false)
	}
}

func (c *conn) unsubscribe(names [][]byte, pattern bool) {
	kind := "unsubscribe"
	list := c.chanList
	if pattern {
		kind = "punsubscribe"
		list = c.patList
	}
	if len(names) == 0 {
		if len(list) == 0 {
			c.w.PushHeader(3)
			c.w.BulkString(kind)
			c.w.NullBulk()
			c.w.Int(int64(c.subscriptions()))
		}
		for _, name := range append([]string(nil), list...) {
			c.drop(name, pattern)
			c.confirmUnsubscribe(kind, name)
		}
	}
	for _, b := range names {
		name := string(b)
		c.drop(name, pattern)
		c.confirmUnsubscribe(kind, name)
	}
	if c.subscriptions() == 0 {
		c.s.setSubscribed(c, false)
	}
}

func (c *conn) confirmUnsubscribe(kind, name string) {
	c.w.PushHeader(3)
	c.w.BulkString(kind)
	c.w.BulkString(name)
	c.w.Int(int64(c.subscriptions()))
}

// drop removes one channel or pattern, if subscribed.
func (c *conn) drop(name string, pattern bool) {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	set, list, n := c.channels, &c.chanList, &c.nChan
	if pattern {
		set, list, n = c.patterns, &c.patList, &c.nPat
	}
	if _, ok := set[name]; !ok {
		return
	}
	delete(set, name)
	for i, x := range *list {
		if x == name {
			*list = append((*list)[:i:i], (*list)[i+1:]...)
			break
		}
	}
	n.Add(-1)
}

// startPump creates the event queue and its writer on the first
// subscription; both live until the connection closes.
func (c *conn) startPump() {
	if c.pumping {
		return
	}
	c.pumping = true
	c.subMu.Lock()
	c.channels = map[string]struct{}{}
	c.patterns = map[string]struct{}{}
	c.subMu.Unlock()
	c.s.wg.Go(c.pump)
}
