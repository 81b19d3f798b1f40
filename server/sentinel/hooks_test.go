package sentinel

import (
	"slices"
	"testing"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// SENTINEL MASTER lists the scripts after parallel-syncs once they are set,
// as Sentinel does; SET passes script options on only when the node allows
// them, else answers Sentinel's deny-scripts-reconfig error.
func TestScriptsInMasterAndSet(t *testing.T) {
	f, s := startFake(t, Config{AllowScriptReconfig: true})
	f.update(func(st *fsmv1.State) {
		st.Masters["mymaster"].Settings.NotificationScript = "/bin/n.sh"
		st.Masters["mymaster"].Settings.ClientReconfigScript = "/bin/r.sh"
	})
	c := dial(t, s.Addr())
	keys, m := pairs(t, c.value("SENTINEL", "MASTER", "mymaster"))
	i := slices.Index(keys, "parallel-syncs")
	if i < 0 || !slices.Equal(keys[i+1:], []string{"notification-script", "client-reconfig-script"}) ||
		m["notification-script"] != "/bin/n.sh" || m["client-reconfig-script"] != "/bin/r.sh" {
		t.Fatalf("MASTER keys %v, values %v", keys, m)
	}
	if got := c.do("SENTINEL", "SET", "mymaster", "notification-script", "/bin/x.sh"); got != "+OK\r\n" {
		t.Fatalf("SET with scripts allowed: %q", got)
	}

	_, denied := startFake(t, Config{})
	c = dial(t, denied.Addr())
	if got := c.do("SENTINEL", "SET", "mymaster", "client-reconfig-script", "/bin/x.sh"); got != "-ERR Reconfiguration of scripts path is denied for security reasons. Check the deny-scripts-reconfig configuration directive in your Sentinel configuration\r\n" {
		t.Fatalf("SET with scripts denied: %q", got)
	}
}
