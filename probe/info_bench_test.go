package probe

import "testing"

// The reply the fence reads with every PING of a fenced master on the
// leader: INFO replication of a master with two replicas.
const masterReplicationInfo = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nmin_slaves_good_slaves:2\r\n" +
	"slave0:ip=127.0.0.1,port=20001,state=online,offset=123456789,lag=0\r\n" +
	"slave1:ip=127.0.0.1,port=20002,state=online,offset=123456789,lag=1\r\n" +
	"master_failover_state:no-failover\r\nmaster_replid:8c3b0ac1ab27d0f6a4d8a7d5f1a6e2c4b9e3d7f1\r\n" +
	"master_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:123456789\r\n" +
	"second_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\n" +
	"repl_backlog_first_byte_offset:122408214\r\nrepl_backlog_histlen:1048576\r\n"

func BenchmarkParseInfo(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInfo(masterReplicationInfo); err != nil {
			b.Fatal(err)
		}
	}
}
