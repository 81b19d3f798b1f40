package server

import (
	"testing"
	"time"
)

// Nobody asked: no round. An ask starts one at once and waits for it;
// asks while rounds are current wait for nothing; the rounds stop
// peerInterest after the last ask, and the next ask starts them again.
func TestPeerReachProbesOnlyWhileAsked(t *testing.T) {
	r := newPeerReach()
	t0 := time.Unix(1000, 0)
	if r.wanted(t0) {
		t.Fatal("a round before anyone asked")
	}
	done := r.ask(t0)
	if done == nil {
		t.Fatal("the first ask waits for nothing")
	}
	select {
	case <-r.kick:
	default:
		t.Fatal("the first ask did not wake the prober")
	}
	if !r.wanted(t0) {
		t.Fatal("no round after an ask")
	}
	r.answered("b", t0.Add(time.Millisecond))
	if r.reachable("c", t0.Add(time.Millisecond)) {
		t.Error("a peer that never answered is reachable")
	}
	r.roundEnded()
	select {
	case <-done:
	default:
		t.Fatal("the ask's wait did not end with the round")
	}

	cases := []struct {
		id   string
		at   time.Duration
		want bool
	}{
		{"b", time.Second, true},
		{"b", peerFreshness + time.Millisecond, true},
		{"b", peerFreshness + 2*time.Millisecond, false},
		{"c", time.Second, false},
	}
	for _, tc := range cases {
		if got := r.reachable(tc.id, t0.Add(tc.at)); got != tc.want {
			t.Errorf("reachable(%s) at +%v = %v, want %v", tc.id, tc.at, got, tc.want)
		}
	}

	t1 := t0.Add(peerRoundsCurrent)
	if r.ask(t1) != nil {
		t.Error("an ask waits while rounds are current")
	}
	if !r.wanted(t1.Add(peerInterest)) {
		t.Error("rounds stopped before peerInterest after the last ask")
	}
	idle := t1.Add(peerInterest + time.Millisecond)
	if r.wanted(idle) {
		t.Error("rounds go on past peerInterest after the last ask")
	}
	if r.ask(idle.Add(peerRoundsCurrent+time.Second)) == nil {
		t.Error("an ask after the rounds stopped waits for nothing")
	}
}
