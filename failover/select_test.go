package failover

import (
	"reflect"
	"testing"
	"time"
)

const downAfter30 = 30 * time.Second

var selNow = at(time.Hour)

// goodReplica is eligible under every rule; rows change one field.
func goodReplica(addr string) Candidate {
	return Candidate{
		Addr: addr,
		Probe: Probe{
			Since:          selNow.Add(-time.Hour),
			LastValidReply: selNow.Add(-100 * ms),
			LinkUp:         true,
			InfoAt:         selNow.Add(-time.Second),
			Role:           RoleReplica,
			MasterHost:     "10.0.0.1",
			MasterPort:     6379,
			MasterLinkUp:   true,
			Priority:       100,
			Offset:         1000,
			RunID:          "aaaa",
		},
	}
}

func with(c Candidate, f func(*Candidate)) Candidate {
	f(&c)
	return c
}

func TestSelectReplicaExclusions(t *testing.T) {
	masterDown := selNow.Add(-100 * time.Second) // SDOWN for 100 s
	tests := []struct {
		name       string
		c          Candidate
		sdownSince time.Time
		maxLag     int64
		masterOff  int64
		wantReason string // "" = eligible
	}{
		{"eligible", goodReplica("r"), masterDown, 0, 0, ""},
		{"sdown", with(goodReplica("r"), func(c *Candidate) { c.SDown = true }), masterDown, 0, 0, "sdown"},
		{"disconnected", with(goodReplica("r"), func(c *Candidate) { c.Probe.LinkUp = false }), masterDown, 0, 0, "disconnected"},
		{"reply exactly 5s old", with(goodReplica("r"), func(c *Candidate) { c.Probe.LastValidReply = selNow.Add(-5 * time.Second) }), masterDown, 0, 0, ""},
		{"reply just over 5s old", with(goodReplica("r"), func(c *Candidate) { c.Probe.LastValidReply = selNow.Add(-5*time.Second - ms) }), masterDown, 0, 0, "no valid reply for 5.001s"},
		{"never replied, observed 5s", with(goodReplica("r"), func(c *Candidate) {
			c.Probe.LastValidReply = time.Time{}
			c.Probe.Since = selNow.Add(-5 * time.Second)
		}), masterDown, 0, 0, ""},
		{"never replied, observed 6s", with(goodReplica("r"), func(c *Candidate) {
			c.Probe.LastValidReply = time.Time{}
			c.Probe.Since = selNow.Add(-6 * time.Second)
		}), masterDown, 0, 0, "no valid reply for 6s"},
		{"no reply and no observation", with(goodReplica("r"), func(c *Candidate) { c.Probe.LastValidReply, c.Probe.Since = time.Time{}, time.Time{} }), masterDown, 0, 0, "no valid reply yet"},
		{"priority 0", with(goodReplica("r"), func(c *Candidate) { c.Probe.Priority = 0 }), masterDown, 0, 0, "priority 0"},
		{"info exactly 5s old, master sdown", with(goodReplica("r"), func(c *Candidate) { c.Probe.InfoAt = selNow.Add(-5 * time.Second) }), masterDown, 0, 0, ""},
		{"info over 5s old, master sdown", with(goodReplica("r"), func(c *Candidate) { c.Probe.InfoAt = selNow.Add(-5*time.Second - ms) }), masterDown, 0, 0, "info older than 5s (age 5.001s)"},
		{"info 29s old, master up", with(goodReplica("r"), func(c *Candidate) { c.Probe.InfoAt = selNow.Add(-29 * time.Second) }), time.Time{}, 0, 0, ""},
		{"info exactly 30s old, master up", with(goodReplica("r"), func(c *Candidate) { c.Probe.InfoAt = selNow.Add(-30 * time.Second) }), time.Time{}, 0, 0, ""},
		{"info over 30s old, master up", with(goodReplica("r"), func(c *Candidate) { c.Probe.InfoAt = selNow.Add(-30*time.Second - ms) }), time.Time{}, 0, 0, "info older than 30s (age 30.001s)"},
		{"no info", with(goodReplica("r"), func(c *Candidate) { c.Probe.InfoAt = time.Time{} }), masterDown, 0, 0, "no info yet"},
		{"role master", with(goodReplica("r"), func(c *Candidate) { c.Probe.Role = RoleMaster }), masterDown, 0, 0, "role is not slave (master)"},
		{"role unknown", with(goodReplica("r"), func(c *Candidate) { c.Probe.Role = "" }), masterDown, 0, 0, "role is not slave (unknown)"},
		// Limit = 100 s of master SDOWN + 10 × 30 s = 400 s.
		{"link down exactly at limit", with(goodReplica("r"), func(c *Candidate) {
			c.Probe.MasterLinkUp, c.Probe.MasterLinkDownFor = false, 400*time.Second
		}), masterDown, 0, 0, ""},
		{"link down over limit", with(goodReplica("r"), func(c *Candidate) {
			c.Probe.MasterLinkUp, c.Probe.MasterLinkDownFor = false, 401*time.Second
		}), masterDown, 0, 0, "master link down too long (401s, limit 400s)"},
		{"link down limit without master sdown is 10x down-after", with(goodReplica("r"), func(c *Candidate) {
			c.Probe.MasterLinkUp, c.Probe.MasterLinkDownFor = false, 301*time.Second
		}), time.Time{}, 0, 0, "master link down too long (301s, limit 300s)"},
		{"stale link-down value ignored while link up", with(goodReplica("r"), func(c *Candidate) { c.Probe.MasterLinkDownFor = time.Hour }), masterDown, 0, 0, ""},
		{"link never up (-1) passes as in Sentinel", with(goodReplica("r"), func(c *Candidate) {
			c.Probe.MasterLinkUp, c.Probe.MasterLinkDownFor = false, -time.Second
		}), masterDown, 0, 0, ""},
		{"lag exactly max-lag", goodReplica("r"), masterDown, 1000, 2000, ""},
		{"lag over max-lag", goodReplica("r"), masterDown, 1000, 2001, "lag 1001 bytes exceeds max-lag 1000"},
		{"lag ignored without max-lag", goodReplica("r"), masterDown, 0, 1 << 40, ""},
		{"replica ahead of last known master offset", goodReplica("r"), masterDown, 1, 10, ""},
		{"first rule wins", with(goodReplica("r"), func(c *Candidate) { c.SDown = true; c.Probe.Priority = 0 }), masterDown, 0, 0, "sdown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch := SelectReplica(Selection{
				Replicas:         []Candidate{tc.c},
				MasterSDownSince: tc.sdownSince,
				DownAfter:        downAfter30,
				MaxLagBytes:      tc.maxLag,
				MasterOffset:     tc.masterOff,
				Now:              selNow,
			})
			if tc.wantReason == "" {
				if !ch.OK || ch.Winner != "r" || len(ch.Rejected) != 0 {
					t.Fatalf("want eligible, got %+v", ch)
				}
				return
			}
			want := []Rejection{{Addr: "r", Reason: tc.wantReason}}
			if ch.OK || !reflect.DeepEqual(ch.Rejected, want) {
				t.Fatalf("got %+v, want rejection %q", ch, tc.wantReason)
			}
		})
	}
}

func TestSelectReplicaRanking(t *testing.T) {
	tests := []struct {
		name string
		a, b Candidate // a must rank first
	}{
		{"lower priority wins over offset",
			with(goodReplica("z"), func(c *Candidate) { c.Probe.Priority = 10; c.Probe.Offset = 1 }),
			with(goodReplica("a"), func(c *Candidate) { c.Probe.Priority = 100; c.Probe.Offset = 9999 })},
		{"higher offset wins",
			with(goodReplica("z"), func(c *Candidate) { c.Probe.Offset = 2000; c.Probe.RunID = "ffff" }),
			with(goodReplica("a"), func(c *Candidate) { c.Probe.Offset = 1999; c.Probe.RunID = "0000" })},
		{"smaller run id wins",
			with(goodReplica("z"), func(c *Candidate) { c.Probe.RunID = "abc1" }),
			with(goodReplica("a"), func(c *Candidate) { c.Probe.RunID = "abc2" })},
		{"run id compares case-insensitively",
			with(goodReplica("z"), func(c *Candidate) { c.Probe.RunID = "ABC1" }),
			with(goodReplica("a"), func(c *Candidate) { c.Probe.RunID = "abc2" })},
		{"run id prefix sorts first",
			with(goodReplica("z"), func(c *Candidate) { c.Probe.RunID = "abc" }),
			with(goodReplica("a"), func(c *Candidate) { c.Probe.RunID = "abcd" })},
		{"empty run id sorts last",
			with(goodReplica("z"), func(c *Candidate) { c.Probe.RunID = "ffff" }),
			with(goodReplica("a"), func(c *Candidate) { c.Probe.RunID = "" })},
		{"address breaks a full tie",
			goodReplica("10.0.0.2:6379"),
			goodReplica("10.0.0.3:6379")},
		{"address breaks a tie of run ids equal but for case",
			with(goodReplica("a"), func(c *Candidate) { c.Probe.RunID = "ABCD" }),
			with(goodReplica("b"), func(c *Candidate) { c.Probe.RunID = "abcd" })},
		{"address breaks a tie of empty run ids",
			with(goodReplica("a"), func(c *Candidate) { c.Probe.RunID = "" }),
			with(goodReplica("b"), func(c *Candidate) { c.Probe.RunID = "" })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][]Candidate{{tc.a, tc.b}, {tc.b, tc.a}} {
				ch := SelectReplica(Selection{Replicas: order, DownAfter: downAfter30, Now: selNow})
				want := []string{tc.a.Addr, tc.b.Addr}
				if !ch.OK || ch.Winner != tc.a.Addr || !reflect.DeepEqual(ch.Ranked, want) {
					t.Fatalf("got %+v, want ranking %v", ch, want)
				}
			}
		})
	}
}

func TestSelectReplicaMixed(t *testing.T) {
	ch := SelectReplica(Selection{
		Replicas: []Candidate{
			with(goodReplica("c"), func(c *Candidate) { c.Probe.Priority = 0 }),
			with(goodReplica("b"), func(c *Candidate) { c.Probe.Offset = 500 }),
			goodReplica("d"),
			with(goodReplica("a"), func(c *Candidate) { c.SDown = true }),
		},
		MasterSDownSince: selNow.Add(-time.Minute),
		DownAfter:        downAfter30,
		Now:              selNow,
	})
	want := Choice{
		Winner:   "d",
		OK:       true,
		Ranked:   []string{"d", "b"},
		Rejected: []Rejection{{"a", "sdown"}, {"c", "priority 0"}},
	}
	if !reflect.DeepEqual(ch, want) {
		t.Fatalf("got %+v\nwant %+v", ch, want)
	}
	if none := SelectReplica(Selection{Now: selNow}); none.OK || none.Winner != "" {
		t.Fatalf("empty input chose %+v", none)
	}
}
