package orchestrator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/raftinel/raftinel/probe"
	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

func (e *env) masterAuthOf(addr string) *probe.Auth {
	e.redis.mu.Lock()
	defer e.redis.mu.Unlock()
	return e.server(addr).masterAuth
}

// Every instance the leader re-points (the replicas during the failover,
// the old master when it comes back) first gets the group's auth-user and
// auth-pass as its masteruser/masterauth; the promoted one, which
// replicates from nobody, gets nothing.
func TestMasterAuthSetBeforeRepoint(t *testing.T) {
	e := newEnv(t, func(s *fsmv1.MasterSettings) { s.DownAfterMs = 15000 })
	e.failedOver()
	want := probe.Auth{User: "raftinel", Pass: "secret"}
	for _, a := range []string{addrR1, addrR3, addrR4} {
		if got := e.masterAuthOf(a); got == nil || *got != want {
			t.Fatalf("%s re-pointed with masteruser/masterauth %v, want %v", a, got, want)
		}
	}
	if got := e.masterAuthOf(addrR2); got != nil {
		t.Fatalf("the promoted replica got masteruser/masterauth %v", got)
	}
	e.clock.Advance(time.Minute)
	e.forget(addrM)
	e.revive(addrM)
	from := e.mark()
	e.step()
	e.tickUntil(30, "converted", func() bool { return e.index(from, replicaOf(addrM, addrR2)) >= 0 })
	if got := e.masterAuthOf(addrM); got == nil || *got != want {
		t.Fatalf("the old master converted with masteruser/masterauth %v, want %v", got, want)
	}
}

// A group without auth-pass leaves masterauth alone.
func TestMasterAuthNotSetWithoutPassword(t *testing.T) {
	e := newEnv(t, func(s *fsmv1.MasterSettings) { s.AuthUser, s.AuthPass = "", "" })
	e.failedOver()
	for _, a := range []string{addrR1, addrR3, addrR4} {
		if got := e.masterAuthOf(a); got != nil {
			t.Fatalf("%s got masteruser/masterauth %v without an auth-pass", a, got)
		}
	}
}

// CONFIG renamed away (or refused by an ACL) costs the masterauth only:
// the replicas are still re-pointed and the failover ends.
func TestMasterAuthRefusedRepointGoesOn(t *testing.T) {
	e := newEnv(t, nil)
	for _, a := range replicaAddrs {
		e.redis.setHook(a, "MASTERAUTH", func(context.Context) error { return errors.New("ERR unknown command 'CONFIG'") })
	}
	e.failedOver()
	for _, a := range []string{addrR1, addrR3, addrR4} {
		if e.index(0, replicaOf(a, addrR2)) < 0 {
			t.Fatalf("%s not re-pointed:\n%s", a, e.dump(0))
		}
		if got := e.masterAuthOf(a); got != nil {
			t.Fatalf("%s: masterauth %v recorded although CONFIG was refused", a, got)
		}
	}
}
