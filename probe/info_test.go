package probe

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The testdata files are `INFO server replication` from redis-server 7.0.15,
// byte for byte (CRLF line ends included) except for the executable and
// config_file lines, which were replaced so that they name no real machine.
func readSample(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

const zeroReplID = "0000000000000000000000000000000000000000"

func TestParseInfoSamples(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Info
	}{
		{"master.txt", Info{
			RunID: "eef3b8e9113ffc03813ae8916284b952ac31d148", RedisVersion: "7.0.15", Role: RoleMaster,
			ReplicaPriority: 100, MasterReplOffset: 50, ReplicaAnnounced: true, MasterFailoverState: "no-failover",
			MasterReplID: "de3c2131c1e6a871f9a4b0715881b5169c7a8fcc", MasterReplID2: zeroReplID, SecondReplOffset: -1,
			ConnectedReplicas: []ReplicaInfo{
				{IP: "127.0.0.1", Port: 17003, State: "online", Offset: 50, Lag: 0},
				{IP: "127.0.0.1", Port: 17002, State: "online", Offset: 50, Lag: 0},
			},
		}},
		{"replica_up.txt", Info{
			RunID: "8cb254f10857db5bb56972cdfa5ebbd6c7fdb5ab", RedisVersion: "7.0.15", Role: RoleSlave,
			MasterHost: "127.0.0.1", MasterPort: 17001, MasterLinkStatus: LinkStatusUp,
			ReplicaPriority: 7, SlaveReplOffset: 50, MasterReplOffset: 50, ReplicaAnnounced: true,
			MasterFailoverState: "no-failover",
			MasterReplID:        "de3c2131c1e6a871f9a4b0715881b5169c7a8fcc", MasterReplID2: zeroReplID, SecondReplOffset: -1,
		}},
		{"replica_link_down.txt", Info{
			RunID: "8cb254f10857db5bb56972cdfa5ebbd6c7fdb5ab", RedisVersion: "7.0.15", Role: RoleSlave,
			MasterHost: "127.0.0.1", MasterPort: 17001, MasterLinkStatus: LinkStatusDown,
			MasterLinkDownSinceSeconds: 2, HasMasterLinkDownSince: true,
			ReplicaPriority: 7, SlaveReplOffset: 50, MasterReplOffset: 50, ReplicaAnnounced: true,
			MasterFailoverState: "no-failover",
			MasterReplID:        "de3c2131c1e6a871f9a4b0715881b5169c7a8fcc", MasterReplID2: zeroReplID, SecondReplOffset: -1,
		}},
		{"replica_never_connected.txt", Info{
			RunID: "57dbc95daa307d73ba7e705c0c604ce2adf79e8b", RedisVersion: "7.0.15", Role: RoleSlave,
			MasterHost: "127.0.0.1", MasterPort: 17009, MasterLinkStatus: LinkStatusDown,
			MasterLinkDownSinceSeconds: -1, HasMasterLinkDownSince: true,
			ReplicaPriority: 100, SlaveReplOffset: 1, MasterReplOffset: 0, ReplicaAnnounced: true,
			MasterFailoverState: "no-failover",
			MasterReplID:        "6a6af082aab1753ae19911b66d84beee78a1062a", MasterReplID2: zeroReplID, SecondReplOffset: -1,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			text := readSample(t, tc.file)
			got, err := ParseInfo(text)
			if err != nil {
				t.Fatalf("ParseInfo: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseInfo:\n got %+v\nwant %+v", got, tc.want)
			}
			// The same text with bare LF line ends (what some proxies and
			// hand-written fixtures produce) must read the same.
			got, err = ParseInfo(strings.ReplaceAll(text, "\r\n", "\n"))
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("LF-only text: %+v, %v", got, err)
			}
		})
	}
}

func TestParseInfoSynthetic(t *testing.T) {
	base := Info{Role: RoleMaster, ReplicaPriority: 100, ReplicaAnnounced: true}
	with := func(f func(*Info)) Info {
		i := base
		f(&i)
		return i
	}
	for _, tc := range []struct {
		name string
		text string
		want Info
	}{
		{"defaults", "role:master\r\n", base},
		{"replica_priority spelling", "role:slave\r\nreplica_priority:0\r\n",
			with(func(i *Info) { i.Role, i.ReplicaPriority = RoleSlave, 0 })},
		{"unannounced", "role:slave\nreplica_announced:0\n",
			with(func(i *Info) { i.Role, i.ReplicaAnnounced = RoleSlave, false })},
		{"failover in progress", "role:master\nmaster_failover_state:waiting-for-sync\n",
			with(func(i *Info) { i.MasterFailoverState = "waiting-for-sync" })},
		{"old replica format", "role:master\nslave0:10.0.0.2,6380,online\nslave1:10.0.0.3,6381\n",
			with(func(i *Info) {
				i.ConnectedReplicas = []ReplicaInfo{
					{IP: "10.0.0.2", Port: 6380, State: "online"},
					{IP: "10.0.0.3", Port: 6381},
				}
			})},
		{"ipv6 replica and unknown replica fields", "role:master\nslave0:ip=::1,port=6380,state=wait_bgsave,offset=0,lag=3,future=x\n",
			with(func(i *Info) {
				i.ConnectedReplicas = []ReplicaInfo{{IP: "::1", Port: 6380, State: "wait_bgsave", Lag: 3}}
			})},
		{"unknown and odd lines ignored", "# Replication\r\nrole:master\r\nsome_future_field:abc\r\nno colon here\r\n\r\nslave_read_only:1\r\nslaveX:ip=a,port=b\r\n",
			base},
		{"last duplicate wins", "role:slave\nrole:master\n", base},
		{"replication ids", "role:master\nmaster_replid:aa11\nmaster_replid2:bb22\nsecond_repl_offset:1234\n",
			with(func(i *Info) { i.MasterReplID, i.MasterReplID2, i.SecondReplOffset = "aa11", "bb22", 1234 })},
		{"loading", "role:master\r\n# Persistence\r\nloading:1\r\nasync_loading:0\r\n",
			with(func(i *Info) { i.Loading = true })},
		{"fence in force", "role:master\r\nconnected_slaves:0\r\nmin_slaves_good_slaves:0\r\n",
			with(func(i *Info) { i.MinReplicasOn = true })},
		{"empty keyspace", "# Replication\r\nrole:master\r\n\r\n# Keyspace\r\n",
			with(func(i *Info) { i.HasKeyspace = true })},
		{"keys summed over databases", "role:master\n# Keyspace\ndb0:keys=10,expires=2,avg_ttl=0\ndb3:keys=5,expires=0,avg_ttl=0,subexpiry=0\n",
			with(func(i *Info) { i.HasKeyspace, i.Keys = true, 15 })},
		{"keys without the header", "role:master\ndb0:keys=1,expires=0,avg_ttl=0\n",
			with(func(i *Info) { i.Keys = 1 })},
		{"keys saturate", "role:master\n# Keyspace\ndb0:keys=9223372036854775807\ndb1:keys=1\n",
			with(func(i *Info) { i.HasKeyspace, i.Keys = true, 9223372036854775807 })},
		{"other headers and db-like fields", "#keyspace\nrole:master\ndbfilename:dump.rdb\ndb:keys=3\n# Server\n",
			with(func(i *Info) { i.HasKeyspace = true })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInfo(tc.text)
			if err != nil {
				t.Fatalf("ParseInfo: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseInfoErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, wantErr string
	}{
		{"empty", "", "no role"},
		{"only server section", readSample(t, "master.txt")[:200], "no role"},
		{"unknown role", "role:sentinel\n", "unknown role"},
		{"bad master_port", "role:slave\nmaster_port:http\n", "master_port"},
		{"master_port out of range", "role:slave\nmaster_port:70000\n", "bad port"},
		{"bad link status", "role:slave\nmaster_link_status:maybe\n", "link status"},
		{"bad link down since", "role:slave\nmaster_link_down_since_seconds:1.5\n", "master_link_down_since_seconds"},
		{"negative priority", "role:slave\nslave_priority:-1\n", "out of range"},
		{"huge priority", "role:slave\nslave_priority:99999999999\n", "out of range"},
		{"bad offset", "role:slave\nslave_repl_offset:x\n", "slave_repl_offset"},
		{"bad master offset", "role:master\nmaster_repl_offset:\n", "master_repl_offset"},
		{"bad announced", "role:slave\nreplica_announced:yes\n", "replica_announced"},
		{"replica without port", "role:master\nslave0:ip=1.2.3.4,state=online\n", "ip= and port="},
		{"replica bad port", "role:master\nslave0:ip=1.2.3.4,port=x\n", "port"},
		{"replica bad lag", "role:master\nslave0:ip=1.2.3.4,port=1,lag=?\n", "lag"},
		{"old replica format without port", "role:master\nslave0:1.2.3.4\n", "ip,port"},
		{"bad loading", "role:master\nloading:yes\n", "loading"},
		{"bad second_repl_offset", "role:master\nsecond_repl_offset:none\n", "second_repl_offset"},
		{"keyspace without keys", "role:master\ndb0:expires=0,avg_ttl=0\n", "no keys="},
		{"keyspace bad keys", "role:master\ndb0:keys=many,expires=0\n", "keyspace keys"},
		{"keyspace negative keys", "role:master\ndb0:keys=-1\n", "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseInfo(tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseInfo error = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	if _, err := ParseInfo("# Server\r\n"); !errors.Is(err, ErrNoRole) {
		t.Fatalf("error %v is not ErrNoRole", err)
	}
}

func TestParseInfoErrorIsShortForHugeValues(t *testing.T) {
	_, err := ParseInfo("role:slave\nmaster_port:" + strings.Repeat("9", 1<<16) + "\n")
	if err == nil || len(err.Error()) > 400 {
		t.Fatalf("error of %d bytes: want a short error", len(err.Error()))
	}
}

func TestInfoCloneIsDeep(t *testing.T) {
	orig, err := ParseInfo(readSample(t, "master.txt"))
	if err != nil {
		t.Fatal(err)
	}
	c := orig.Clone()
	c.ConnectedReplicas[0].Port = 1
	if orig.ConnectedReplicas[0].Port == 1 {
		t.Fatal("Clone shares the replica slice")
	}
}
