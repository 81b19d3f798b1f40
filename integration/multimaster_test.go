package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/redistest"
	"github.com/raftinel/raftinel/internal/testwait"
)

// Two groups whose masters are killed at the same moment are both failed
// over, each to one of its own replicas, and neither group's history
// mentions the other: no event of one names the other's master or any of
// its instances, on any node.
func TestFailoversOfTwoMastersStaySeparate(t *testing.T) {
	redistest.Require(t)
	c := startCluster(t, 3)
	groups := []*group{startGroup(t, "alpha", nil, nil), startGroup(t, "beta", nil, nil)}
	for _, g := range groups {
		g.monitor(t, c, 2, 3*time.Second)
	}
	olds := map[string]string{}
	for _, g := range groups {
		olds[g.name] = g.master.Addr()
		g.master.Kill()
	}
	for _, g := range groups {
		addr, _ := waitServed(t, c.nodes, g.name, olds[g.name], 1)
		promoted := g.byAddr(addr)
		if promoted == nil || addr == olds[g.name] {
			t.Fatalf("%s: promoted %s is not one of its replicas", g.name, addr)
		}
		other := g.r1
		if promoted == g.r1 {
			other = g.r2
		}
		waitFollows(t, other, addr)
		testwait.For(t, waitTimeout, g.name+"'s failover journal closed", func() error {
			d, err := detail(c.nodes[0], g.name)
			if err != nil {
				return err
			}
			if d.GetFailover() != nil || findEvent(d, "+failover-end") == nil {
				return fmt.Errorf("failover %v, events %v", d.GetFailover().GetPhase(), eventTypes(d))
			}
			return nil
		})
	}

	for i, g := range groups {
		other := groups[1-i]
		foreign := []string{other.name}
		for _, s := range []*redistest.Server{other.master, other.r1, other.r2} {
			_, port, _ := strings.Cut(s.Addr(), ":")
			foreign = append(foreign, " "+port)
		}
		for _, n := range c.nodes {
			d, err := detail(n, g.name)
			if err != nil {
				t.Fatal(err)
			}
			if findEvent(d, "+switch-master") == nil {
				t.Fatalf("%s on %s: no +switch-master in %v", g.name, n.id, eventTypes(d))
			}
			for _, e := range d.GetEvents() {
				if e.GetMaster() != g.name {
					t.Errorf("%s's history on %s holds an event of %q: %s %s", g.name, n.id, e.GetMaster(), e.GetType(), e.GetPayload())
				}
				for _, f := range foreign {
					if strings.Contains(e.GetPayload()+" ", f+" ") {
						t.Errorf("%s's event on %s names %q of %s: %s %s", g.name, n.id, strings.TrimSpace(f), other.name, e.GetType(), e.GetPayload())
					}
				}
			}
		}
	}
}
