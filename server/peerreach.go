package server

import (
	"sync"
	"time"
)

const (
	// peerProbePeriod is how often a node asks every other node for its
	// status while someone wants to know, as a Sentinel PINGs the other
	// sentinels every second.
	peerProbePeriod = time.Second
	// peerFreshness is how long a peer counts as reachable after its last
	// answer: a few probe periods, so one slow answer on a busy machine
	// does not flap it.
	peerFreshness = 5 * peerProbePeriod
	// peerInterest is how long the probes go on after the last ask.
	peerInterest = time.Minute
	// peerRoundsCurrent: rounds that started this recently mean the probes
	// are running, and an ask is answered at once. A round lasts up to the
	// status call's timeout (1 s) after its period's tick.
	peerRoundsCurrent = 3 * peerProbePeriod
	// peerAskWait bounds an ask's wait for a round: a peer that has not
	// answered by then is reported unreachable.
	peerAskWait = 500 * time.Millisecond
)

// peerReach remembers which other nodes answered a status probe lately.
// Only SENTINEL SENTINELS and CKQUORUM show it, and a probe of every node
// every second cost a quiet node half its CPU (a gRPC call each way and
// the answer to the others' calls), so the nodes are probed only from an
// ask until peerInterest after the last one. An ask while no round is
// current starts one and waits for it (peerAskWait at most).
type peerReach struct {
	kick chan struct{} // wakes the prober for a round now

	mu        sync.Mutex
	lastOK    map[string]time.Time // node id -> last answered probe
	askedAt   time.Time            // the last ask
	roundAt   time.Time            // start of the last round
	roundDone chan struct{}        // closed when the round under way, or the next, ends
}

func newPeerReach() *peerReach {
	return &peerReach{kick: make(chan struct{}, 1), lastOK: map[string]time.Time{}, roundDone: make(chan struct{})}
}

// wanted says whether the prober should run a round now: someone asked
// within peerInterest. It marks the round's start.
func (r *peerReach) wanted(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.askedAt.IsZero() || now.Sub(r.askedAt) > peerInterest {
		return false
	}
	r.roundAt = now
	return true
}

// answered records a peer's answer, as soon as it comes, so that an ask
// whose wait ends mid-round sees every peer that answered in time.
func (r *peerReach) answered(id string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastOK[id] = at
}

// roundEnded releases the asks waiting for the round.
func (r *peerReach) roundEnded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.roundDone)
	r.roundDone = make(chan struct{})
}

// ask records the interest and returns what to wait for before reading:
// nil while rounds are current, else the end of the next round, which it
// asks the prober to start at once.
func (r *peerReach) ask(now time.Time) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.askedAt = now
	if !r.roundAt.IsZero() && now.Sub(r.roundAt) <= peerRoundsCurrent {
		return nil
	}
	select {
	case r.kick <- struct{}{}:
	default: // a kick is pending already
	}
	return r.roundDone
}

// reachable says whether node id answered within peerFreshness of now.
func (r *peerReach) reachable(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, ok := r.lastOK[id]
	return ok && now.Sub(last) <= peerFreshness
}
