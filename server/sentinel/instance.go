package sentinel

import (
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Sentinel's defaults, shown when a stored setting is zero.
const (
	defaultDownAfterMs       = 30000
	defaultFailoverTimeoutMs = 180000
	defaultParallelSyncs     = 1
	defaultSlavePriority     = 100
)

// splitAddr splits host:port as Sentinel prints an address: host and port
// as two words, IPv6 without brackets. A malformed address (never stored by
// the fsm) prints whole with port 0 rather than failing the reply.
func splitAddr(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, "0"
	}
	return h, p
}

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

// msSince is Sentinel's "milliseconds ago"; a time in the future (clock
// skew between the leader that stamped it and this node) shows as 0.
func msSince(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return fmtInt(d.Milliseconds())
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func settings(m *fsmv1.Master) (quorum, downAfter, failoverTimeout, parallel int64) {
	s := m.GetSettings()
	quorum, downAfter, failoverTimeout, parallel = int64(s.GetQuorum()), s.GetDownAfterMs(), s.GetFailoverTimeoutMs(), int64(s.GetParallelSyncs())
	if downAfter == 0 {
		downAfter = defaultDownAfterMs
	}
	if failoverTimeout == 0 {
		failoverTimeout = defaultFailoverTimeoutMs
	}
	if parallel == 0 {
		parallel = defaultParallelSyncs
	}
	return
}

// flagOrder is Sentinel's order of the flags tokens.
var flagOrder = []string{
	"s_down", "o_down", "master", "slave", "sentinel", "disconnected", "master_down",
	"failover_in_progress", "promoted", "reconf_sent", "reconf_inprog", "reconf_done",
	"force_failover", "script_kill_sent", "master_reboot",
}

type flagSet map[string]bool

func (f flagSet) String() string {
	var b strings.Builder
	for _, k := range flagOrder {
		if f[k] {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k)
		}
	}
	return b.String()
}

// failoverState maps the journal phase to Sentinel's failover-state names.
func failoverState(f *fsmv1.Failover) string {
	switch f.GetPhase() {
	case fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING:
		return "wait_promotion"
	case fsmv1.FailoverPhase_FAILOVER_PHASE_RECONF_REPLICAS:
		return "reconf_slaves"
	}
	return "none"
}

// pingFields are last-ping-sent, last-ok-ping-reply and last-ping-reply.
// Without a view of its own the node has never pinged the instance, which
// Sentinel shows as the time since it started knowing it (created).
func pingFields(now time.Time, v InstanceView, has bool, created time.Time) (sent, ok, reply string) {
	if !has {
		return "0", msSince(now, created), msSince(now, created)
	}
	sent, ok, reply = "0", msSince(now, created), msSince(now, created)
	if !v.LastPingSent.IsZero() {
		sent = msSince(now, v.LastPingSent)
	}
	if !v.LastOKPingReply.IsZero() {
		ok = msSince(now, v.LastOKPingReply)
	}
	if !v.LastPingReply.IsZero() {
		reply = msSince(now, v.LastPingReply)
	}
	return sent, ok, reply
}

// view holds what the front end needs to describe one master: the record,
// the number of peers and this node's id, gathered once per reply.
type view struct {
	s      *Server
	now    time.Time
	myID   string
	listed int // peers SENTINELS shows
}

func (s *Server) newView() *view {
	return &view{s: s, now: time.Now(), myID: s.backend.MyID(), listed: len(listedPeers(s.backend.Peers(false)))}
}

// ownVote is this node's committed opinion of the master, the fallback for
// s_down when the node has no probe view of the instance.
func (v *view) ownVote(m *fsmv1.Master) *fsmv1.Vote {
	for _, vote := range m.GetVotes() {
		if RunID(vote.GetNodeId()) == v.myID && vote.GetAddress() == m.GetAddress() {
			return vote
		}
	}
	return nil
}

// masterDown reports s_down and since when, from this node's view.
func (v *view) masterDown(m *fsmv1.Master, iv InstanceView, has bool) (bool, time.Time) {
	if has {
		return iv.SDown, iv.SDownSince
	}
	if vote := v.ownVote(m); vote.GetDown() {
		return true, fromNanos(vote.GetAtUnixNanos())
	}
	return false, time.Time{}
}

// masterFields is SENTINEL MASTER's map, in Sentinel's order.
func (v *view) masterFields(m *fsmv1.Master) []string {
	addr := m.GetAddress()
	host, port := splitAddr(addr)
	iv, has := v.s.backend.Instance(addr)
	created := fromNanos(m.GetMonitoredAtUnixNanos())
	sdown, sdownSince := v.masterDown(m, iv, has)
	quorum, downAfter, failoverTimeout, parallel := settings(m)

	runID := m.GetMasterRunId()
	if has && iv.RunID != "" {
		runID = iv.RunID
	}
	flags := flagSet{"s_down": sdown, "o_down": m.GetOdown(), "master": true,
		"disconnected": has && iv.Disconnected, "failover_in_progress": m.GetFailover() != nil,
		"master_reboot": has && iv.MasterReboot}

	out := make([]string, 0, 2*24)
	out = append(out, "name", m.GetName(), "ip", host, "port", port, "runid", runID, "flags", flags.String(),
		"link-pending-commands", "0", "link-refcount", "1")
	if m.GetFailover() != nil {
		out = append(out, "failover-state", failoverState(m.GetFailover()))
	}
	sent, ok, reply := pingFields(v.now, iv, has, created)
	out = append(out, "last-ping-sent", sent, "last-ok-ping-reply", ok, "last-ping-reply", reply)
	if sdown {
		out = append(out, "s-down-time", msSince(v.now, sdownSince))
	}
	if m.GetOdown() {
		out = append(out, "o-down-time", msSince(v.now, fromNanos(m.GetOdownSinceUnixNanos())))
	}
	infoRefresh, role, roleTime := "0", "master", msSince(v.now, created)
	if has && !iv.InfoRefresh.IsZero() {
		infoRefresh = msSince(v.now, iv.InfoRefresh)
		if iv.RoleReported != "" {
			role = iv.RoleReported
		}
		if !iv.RoleReportedTime.IsZero() {
			roleTime = msSince(v.now, iv.RoleReportedTime)
		}
	}
	out = append(out, "down-after-milliseconds", fmtInt(downAfter),
		"info-refresh", infoRefresh, "role-reported", role, "role-reported-time", roleTime,
		"config-epoch", strconv.FormatUint(m.GetEpoch(), 10),
		"num-slaves", strconv.Itoa(len(m.GetReplicas())),
		"num-other-sentinels", strconv.Itoa(v.listed),
		"quorum", fmtInt(quorum), "failover-timeout", fmtInt(failoverTimeout), "parallel-syncs", fmtInt(parallel))
	// Sentinel lists the scripts after parallel-syncs, only when set.
	if p := m.GetSettings().GetNotificationScript(); p != "" {
		out = append(out, "notification-script", p)
	}
	if p := m.GetSettings().GetClientReconfigScript(); p != "" {
		out = append(out, "client-reconfig-script", p)
	}
	return out
}

// replica merges the replicated record with this node's own view: the view
// wins for link, ping and flags, and for the INFO fields once this node has
// parsed an INFO of its own.
type replica struct {
	rec  *fsmv1.Replica
	iv   InstanceView
	has  bool // a probe view exists
	info bool // the view includes a parsed INFO
}

func (v *view) replica(r *fsmv1.Replica) replica {
	iv, has := v.s.backend.Instance(r.GetAddress())
	return replica{rec: r, iv: iv, has: has, info: has && !iv.InfoRefresh.IsZero()}
}

// announced is replica-announced. A record without INFO yet (for example
// the old master right after a promotion) counts as announced, as Sentinel
// assumes until INFO says otherwise.
func (r replica) announced() bool {
	if r.info {
		return r.iv.ReplicaAnnounced
	}
	return r.rec.GetRole() == "" || r.rec.GetAnnounced()
}

// replicaFields is one entry of SENTINEL REPLICAS, in Sentinel's order.
func (v *view) replicaFields(m *fsmv1.Master, r replica) []string {
	rec := r.rec
	host, port := splitAddr(rec.GetAddress())
	created := fromNanos(m.GetMonitoredAtUnixNanos())
	observed := fromNanos(rec.GetObservedAtUnixNanos())
	_, downAfter, _, _ := settings(m)

	sdown, disconnected := rec.GetSdown(), rec.GetDisconnected()
	sdownSince := observed
	if r.has {
		sdown, disconnected, sdownSince = r.iv.SDown, r.iv.Disconnected, r.iv.SDownSince
	}
	flags := flagSet{"s_down": sdown, "slave": true, "disconnected": disconnected}
	if f := m.GetFailover(); f != nil {
		flags["promoted"] = f.GetCandidate() == rec.GetAddress() && f.GetPhase() == fsmv1.FailoverPhase_FAILOVER_PHASE_PROMOTING
		for _, rc := range f.GetReconf() {
			if rc.GetAddress() != rec.GetAddress() {
				continue
			}
			switch rc.GetPhase() {
			case fsmv1.ReconfPhase_RECONF_PHASE_SENT:
				flags["reconf_sent"] = true
			case fsmv1.ReconfPhase_RECONF_PHASE_IN_PROGRESS:
				flags["reconf_inprog"] = true
			case fsmv1.ReconfPhase_RECONF_PHASE_DONE:
				flags["reconf_done"] = true
			}
		}
	}

	// INFO-derived fields: this node's INFO, else the leader's record, else
	// Sentinel's initial values.
	runID, role := rec.GetRunId(), rec.GetRole()
	infoRefresh, roleTime := "0", msSince(v.now, created)
	if role != "" && !observed.IsZero() {
		infoRefresh, roleTime = msSince(v.now, observed), msSince(v.now, observed)
	}
	linkDown, linkUp := rec.GetMasterLinkDownMs(), rec.GetMasterLinkUp()
	mhost, mport := rec.GetMasterHost(), int64(rec.GetMasterPort())
	prio, offset := int64(rec.GetPriority()), rec.GetOffset()
	if role == "" {
		prio = defaultSlavePriority
	}
	if r.has && r.iv.RunID != "" {
		runID = r.iv.RunID
	}
	if r.info {
		infoRefresh = msSince(v.now, r.iv.InfoRefresh)
		if r.iv.RoleReported != "" {
			role = r.iv.RoleReported
		}
		if !r.iv.RoleReportedTime.IsZero() {
			roleTime = msSince(v.now, r.iv.RoleReportedTime)
		}
		linkDown, linkUp = r.iv.MasterLinkDownSince.Milliseconds(), r.iv.MasterLinkUp
		mhost, mport = r.iv.MasterHost, int64(r.iv.MasterPort)
		prio, offset = int64(r.iv.SlavePriority), r.iv.SlaveReplOffset
	}
	if role == "" {
		role = "slave"
	}
	if mhost == "" {
		mhost = "?"
	}
	linkStatus := "err"
	if linkUp {
		linkStatus = "ok"
	}

	out := make([]string, 0, 2*24)
	out = append(out, "name", net.JoinHostPort(host, port), "ip", host, "port", port, "runid", runID,
		"flags", flags.String(), "link-pending-commands", "0", "link-refcount", "1")
	sent, ok, reply := pingFields(v.now, r.iv, r.has, created)
	out = append(out, "last-ping-sent", sent, "last-ok-ping-reply", ok, "last-ping-reply", reply)
	if sdown {
		out = append(out, "s-down-time", msSince(v.now, sdownSince))
	}
	out = append(out, "down-after-milliseconds", fmtInt(downAfter),
		"info-refresh", infoRefresh, "role-reported", role, "role-reported-time", roleTime,
		"master-link-down-time", fmtInt(linkDown), "master-link-status", linkStatus,
		"master-host", mhost, "master-port", fmtInt(mport),
		"slave-priority", fmtInt(prio), "slave-repl-offset", fmtInt(offset),
		"replica-announced", boolStr(r.announced()))
	return out
}

// sentinelFields is one entry of SENTINEL SENTINELS. The Backend reports
// only reachability, so an unreachable peer is shown the way Sentinel
// shows a dead one (s_down, disconnected) with its times counted from when
// this front end first saw it unreachable.
func (v *view) sentinelFields(m *fsmv1.Master, p Peer, downSince map[string]time.Time) []string {
	host, port := splitAddr(p.SentinelAddr)
	rid := RunID(p.ID)
	_, downAfter, _, _ := settings(m)
	since, down := downSince[p.ID]
	masterDown := false
	for _, vote := range m.GetVotes() {
		if vote.GetNodeId() == p.ID && vote.GetDown() && vote.GetAddress() == m.GetAddress() {
			masterDown = true
		}
	}
	flags := flagSet{"s_down": down, "sentinel": true, "disconnected": down, "master_down": masterDown}
	ago := "0"
	if down {
		ago = msSince(v.now, since)
	}
	out := make([]string, 0, 2*16)
	out = append(out, "name", rid, "ip", host, "port", port, "runid", rid, "flags", flags.String(),
		"link-pending-commands", "0", "link-refcount", "1",
		"last-ping-sent", ago, "last-ok-ping-reply", ago, "last-ping-reply", ago)
	if down {
		out = append(out, "s-down-time", ago)
	}
	out = append(out, "down-after-milliseconds", fmtInt(downAfter),
		"last-hello-message", ago, "voted-leader", "?", "voted-leader-epoch", "0")
	return out
}

// masterNames returns the monitored masters' names in order.
func masterNames(st *fsmv1.State) []string {
	names := make([]string, 0, len(st.GetMasters()))
	for name := range st.GetMasters() {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// masterStatus is the INFO status word: odown, sdown or ok.
func (v *view) masterStatus(m *fsmv1.Master) string {
	if m.GetOdown() {
		return "odown"
	}
	iv, has := v.s.backend.Instance(m.GetAddress())
	if down, _ := v.masterDown(m, iv, has); down {
		return "sdown"
	}
	return "ok"
}

func (s *Server) infoSentinel() string {
	st := s.state()
	v := s.newView()
	tilt, since := s.backend.Tilt()
	tiltSince := "-1"
	if tilt {
		tiltSince = fmtInt(int64(v.now.Sub(since) / time.Second))
	}
	var b strings.Builder
	b.WriteString("# Sentinel\r\n")
	b.WriteString("sentinel_masters:" + strconv.Itoa(len(st.GetMasters())) + "\r\n")
	b.WriteString("sentinel_tilt:" + boolStr(tilt) + "\r\n")
	b.WriteString("sentinel_tilt_since_seconds:" + tiltSince + "\r\n")
	b.WriteString("sentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n")
	for i, name := range masterNames(st) {
		m := st.GetMasters()[name]
		host, port := splitAddr(m.GetAddress())
		fmtLine := "master" + strconv.Itoa(i) + ":name=" + name + ",status=" + v.masterStatus(m) +
			",address=" + host + ":" + port + ",slaves=" + strconv.Itoa(len(m.GetReplicas())) +
			",sentinels=" + strconv.Itoa(v.listed+1) + "\r\n"
		b.WriteString(fmtLine)
	}
	return b.String()
}
