package probe

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// formatInfo writes info the way Redis lays out INFO, with CRLF line ends.
func formatInfo(info Info, oldReplicaFormat bool) string {
	var b strings.Builder
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}
	line("# Server")
	line("redis_version:%s", info.RedisVersion)
	line("run_id:%s", info.RunID)
	line("")
	line("# Replication")
	line("role:%s", info.Role)
	if info.MasterHost != "" {
		line("master_host:%s", info.MasterHost)
	}
	line("master_port:%d", info.MasterPort)
	if info.MasterLinkStatus != "" {
		line("master_link_status:%s", info.MasterLinkStatus)
	}
	line("slave_repl_offset:%d", info.SlaveReplOffset)
	if info.HasMasterLinkDownSince {
		line("master_link_down_since_seconds:%d", info.MasterLinkDownSinceSeconds)
	}
	line("slave_priority:%d", info.ReplicaPriority)
	if info.ReplicaAnnounced {
		line("replica_announced:1")
	} else {
		line("replica_announced:0")
	}
	line("connected_slaves:%d", len(info.ConnectedReplicas))
	for n, r := range info.ConnectedReplicas {
		if oldReplicaFormat {
			line("slave%d:%s,%d,%s", n, r.IP, r.Port, r.State)
		} else {
			line("slave%d:ip=%s,port=%d,state=%s,offset=%d,lag=%d", n, r.IP, r.Port, r.State, r.Offset, r.Lag)
		}
	}
	if info.MasterFailoverState != "" {
		line("master_failover_state:%s", info.MasterFailoverState)
	}
	line("master_replid:%s", info.MasterReplID)
	line("master_replid2:%s", info.MasterReplID2)
	line("master_repl_offset:%d", info.MasterReplOffset)
	line("second_repl_offset:%d", info.SecondReplOffset)
	line("")
	line("# Persistence")
	if info.Loading {
		line("loading:1")
	} else {
		line("loading:0")
	}
	if info.HasKeyspace {
		line("")
		line("# Keyspace")
	}
	if info.Keys != 0 {
		line("db0:keys=%d,expires=0,avg_ttl=0", info.Keys)
	}
	return b.String()
}

func genInfo(oldReplicaFormat bool) *rapid.Generator[Info] {
	return rapid.Custom(func(t *rapid.T) Info {
		info := Info{
			RunID:            rapid.StringMatching(`[0-9a-f]{0,40}`).Draw(t, "run_id"),
			RedisVersion:     rapid.StringMatching(`[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,3}`).Draw(t, "version"),
			Role:             rapid.SampledFrom([]Role{RoleMaster, RoleSlave}).Draw(t, "role"),
			MasterHost:       rapid.StringMatching(`[a-z0-9.:-]{0,30}`).Draw(t, "master_host"),
			MasterPort:       rapid.IntRange(0, 65535).Draw(t, "master_port"),
			MasterLinkStatus: rapid.SampledFrom([]string{"", LinkStatusUp, LinkStatusDown}).Draw(t, "link"),
			ReplicaPriority:  rapid.IntRange(0, 1000).Draw(t, "priority"),
			SlaveReplOffset:  rapid.Int64().Draw(t, "slave_offset"),
			MasterReplOffset: rapid.Int64().Draw(t, "master_offset"),
			ReplicaAnnounced: rapid.Bool().Draw(t, "announced"),
			MasterFailoverState: rapid.SampledFrom([]string{
				"", "no-failover", "waiting-for-sync", "failover-in-progress",
			}).Draw(t, "failover_state"),
		}
		if rapid.Bool().Draw(t, "replid") {
			info.MasterReplID = rapid.StringMatching(`[0-9a-f]{40}`).Draw(t, "master_replid")
			info.MasterReplID2 = rapid.StringMatching(`[0-9a-f]{40}`).Draw(t, "master_replid2")
			info.SecondReplOffset = rapid.Int64Range(-1, 1<<50).Draw(t, "second_repl_offset")
		}
		info.Loading = rapid.Bool().Draw(t, "loading")
		if info.HasKeyspace = rapid.Bool().Draw(t, "keyspace"); info.HasKeyspace {
			info.Keys = rapid.Int64Range(0, 1<<40).Draw(t, "keys")
		}
		if rapid.Bool().Draw(t, "link_down_since") {
			info.HasMasterLinkDownSince = true
			info.MasterLinkDownSinceSeconds = rapid.Int64Range(-1, 1<<40).Draw(t, "down_since")
		}
		n := rapid.IntRange(0, 5).Draw(t, "replicas")
		for i := range n {
			r := ReplicaInfo{
				IP:    rapid.StringMatching(`[a-z0-9.:]{1,39}`).Draw(t, fmt.Sprintf("ip%d", i)),
				Port:  rapid.IntRange(0, 65535).Draw(t, fmt.Sprintf("port%d", i)),
				State: rapid.SampledFrom([]string{"online", "wait_bgsave", "send_bulk"}).Draw(t, fmt.Sprintf("state%d", i)),
			}
			if !oldReplicaFormat {
				r.Offset = rapid.Int64().Draw(t, fmt.Sprintf("offset%d", i))
				r.Lag = rapid.Int64Range(0, 1<<20).Draw(t, fmt.Sprintf("lag%d", i))
			}
			info.ConnectedReplicas = append(info.ConnectedReplicas, r)
		}
		return info
	})
}

func TestParseInfoRoundTrip(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("oldReplicaFormat=%v", old), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				want := genInfo(old).Draw(t, "info")
				text := formatInfo(want, old)
				// Unknown fields anywhere must not change the result.
				if rapid.Bool().Draw(t, "noise") {
					text = "x_future_field:" + rapid.StringMatching(`[ -~]{0,20}`).Draw(t, "noise_value") + "\r\n" + text
				}
				got, err := ParseInfo(text)
				if err != nil {
					t.Fatalf("ParseInfo(%q): %v", text, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("round trip of %q:\n got %+v\nwant %+v", text, got, want)
				}
			})
		})
	}
}

// FuzzParseInfo checks that ParseInfo never panics and that whatever it
// accepts survives a format-and-parse round trip unchanged.
func FuzzParseInfo(f *testing.F) {
	for _, name := range []string{"master.txt", "replica_up.txt", "replica_link_down.txt", "replica_never_connected.txt"} {
		f.Add(readSample(f, name))
	}
	f.Add("role:master\nslave0:10.0.0.2,6380,online\n")
	f.Add("role:slave\nreplica_priority:0\nreplica_announced:0\nmaster_link_down_since_seconds:-1\n")
	f.Add("role:master\nslave0:ip=::1,port=6380,state=online,offset=1,lag=0,x=y\n")
	f.Add("role:master\nmaster_replid:ab\nmaster_replid2:cd\nsecond_repl_offset:7\n# Keyspace\ndb0:keys=3,expires=0\ndb9:keys=4\n")
	f.Add("# Keyspace\r\nrole:slave\r\n")
	f.Add("# Persistence\r\nloading:1\r\nasync_loading:0\r\nrole:master\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		info, err := ParseInfo(text)
		if err != nil {
			return
		}
		if info.Role != RoleMaster && info.Role != RoleSlave {
			t.Fatalf("accepted role %q", info.Role)
		}
		for _, r := range info.ConnectedReplicas {
			if r.IP == "" || r.Port < 0 || r.Port > 65535 {
				t.Fatalf("accepted replica %+v", r)
			}
		}
		again, err := ParseInfo(formatInfo(info, false))
		if err != nil {
			t.Fatalf("re-parsing the formatted result: %v", err)
		}
		if !reflect.DeepEqual(again, info) {
			t.Fatalf("round trip changed the result:\n got %+v\nwant %+v", again, info)
		}
	})
}
