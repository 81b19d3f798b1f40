package probe

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Role is the replication role an instance reports in INFO.
type Role string

// The roles as Redis spells them in INFO replication.
const (
	RoleMaster Role = "master"
	RoleSlave  Role = "slave"
)

// Values of master_link_status.
const (
	LinkStatusUp   = "up"
	LinkStatusDown = "down"
)

// DefaultReplicaPriority is what Redis uses when replica-priority is unset,
// and what ParseInfo reports when INFO omits the field.
const DefaultReplicaPriority = 100

// Info is what Raftinel reads from INFO server, replication, persistence
// and keyspace.
type Info struct {
	RunID        string
	RedisVersion string
	Role         Role

	// MasterHost and MasterPort are the master a replica follows.
	MasterHost string
	MasterPort int
	// MasterLinkStatus is LinkStatusUp or LinkStatusDown on a replica.
	MasterLinkStatus string
	// MasterLinkDownSinceSeconds is valid only when HasMasterLinkDownSince:
	// Redis prints the field only while the link is down, and prints -1
	// when the link has never been up since the server started.
	MasterLinkDownSinceSeconds int64
	HasMasterLinkDownSince     bool

	// ReplicaPriority is slave_priority (replica_priority in some
	// versions); 0 means never promote.
	ReplicaPriority int
	// SlaveReplOffset is the replication offset a replica has processed.
	SlaveReplOffset int64
	// MasterReplOffset is the replication offset of the stream this
	// instance holds (its own as a master, its master's as a replica).
	MasterReplOffset int64
	// ReplicaAnnounced is false for replica-announced no: Sentinel hides
	// such replicas from clients but still fails over to them.
	ReplicaAnnounced bool
	// MasterFailoverState is the state of a FAILOVER command in progress:
	// no-failover, waiting-for-sync or failover-in-progress. Empty on
	// servers older than 6.2.
	MasterFailoverState string

	// MasterReplID is master_replid, the replication history this instance
	// holds: a master's own, a replica's as of its last sync. A master
	// that restarts without persistence starts a new one (at offset 0).
	MasterReplID string
	// MasterReplID2 and SecondReplOffset are master_replid2 and
	// second_repl_offset: the previous history, which replicas can still
	// continue with a partial resync up to that offset (all zeros and -1
	// when there is none). A master restarted from an RDB file (Redis 7)
	// keeps its old history here.
	MasterReplID2    string
	SecondReplOffset int64

	// Loading is INFO persistence's loading:1: the server is still loading
	// its dataset (RDB or AOF) after a start, answering LOADING to most
	// commands; its keyspace and replication ids are not final yet.
	Loading bool

	// HasKeyspace reports that the text included INFO's Keyspace section;
	// only then does Keys mean anything (a section not asked for is not an
	// empty keyspace).
	HasKeyspace bool
	// Keys is the number of keys in every database (the sum of the dbN
	// lines' keys=); 0 for an empty keyspace, which has no dbN line.
	Keys int64

	// ConnectedReplicas are the slaveN lines of a master, in INFO's order.
	ConnectedReplicas []ReplicaInfo

	// MinReplicasOn is the presence of min_slaves_good_slaves, which Redis
	// prints only while both min-replicas-to-write and
	// min-replicas-max-lag are above 0: it says whether a fence is in
	// force, not which.
	MinReplicasOn bool
}

// ReplicaInfo is one slaveN line of a master's INFO.
type ReplicaInfo struct {
	IP    string
	Port  int
	State string // online, wait_bgsave, send_bulk, ...
	// Offset and Lag (seconds since the last REPLCONF ACK) are zero in the
	// old "ip,port,state" format, which does not carry them.
	Offset int64
	Lag    int64
}

// Clone returns a deep copy, so a caller can keep or change it without
// sharing the replica slice.
func (i Info) Clone() Info {
	if i.ConnectedReplicas != nil {
		i.ConnectedReplicas = append([]ReplicaInfo(nil), i.ConnectedReplicas...)
	}
	return i
}

// MasterLinkUp reports master_link_status:up.
func (i Info) MasterLinkUp() bool { return i.MasterLinkStatus == LinkStatusUp }

// ErrNoRole means the text had no role field: it is not the INFO
// replication output of a Redis server, or it was cut short.
var ErrNoRole = errors.New("INFO has no role field")

// ParseInfo parses the text of INFO (at least the server and replication
// sections). Lines it does not know are ignored, so newer Redis versions
// can add fields; a known field with a value it cannot read is an error,
// because acting on half-understood topology is worse than not acting.
func ParseInfo(text string) (Info, error) {
	info := Info{ReplicaPriority: DefaultReplicaPriority, ReplicaAnnounced: true}
	sawRole := false
	n := 0
	// SplitSeq, not Split: the fence reads a fenced master's INFO with
	// every PING on the leader, and the slice of lines was most of what a
	// parse allocated.
	for line := range strings.SplitSeq(text, "\n") {
		n++
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if line[0] == '#' {
			// A section header; only Keyspace's matters, because the
			// section has no line at all when every database is empty.
			if strings.EqualFold(strings.TrimSpace(line[1:]), "keyspace") {
				info.HasKeyspace = true
			}
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if err := info.set(key, value); err != nil {
			return Info{}, fmt.Errorf("INFO line %d (%s): %w", n, clip(line), err)
		}
		if key == "role" {
			sawRole = true
		}
	}
	if !sawRole {
		return Info{}, ErrNoRole
	}
	return info, nil
}

func (i *Info) set(key, value string) error {
	var err error
	switch key {
	case "run_id":
		i.RunID = value
	case "redis_version":
		i.RedisVersion = value
	case "role":
		switch Role(value) {
		case RoleMaster, RoleSlave:
			i.Role = Role(value)
		default:
			return fmt.Errorf("unknown role %q", clip(value))
		}
	case "master_host":
		i.MasterHost = value
	case "master_port":
		i.MasterPort, err = parsePort(value)
	case "master_link_status":
		if value != LinkStatusUp && value != LinkStatusDown {
			return fmt.Errorf("unknown link status %q", clip(value))
		}
		i.MasterLinkStatus = value
	case "master_link_down_since_seconds":
		i.MasterLinkDownSinceSeconds, err = parseInt(value)
		i.HasMasterLinkDownSince = err == nil
	case "slave_priority", "replica_priority":
		var p int64
		p, err = parseInt(value)
		switch {
		case err != nil:
		case p < 0 || p > math.MaxInt32:
			err = fmt.Errorf("priority %d out of range", p)
		default:
			i.ReplicaPriority = int(p)
		}
	case "slave_repl_offset":
		i.SlaveReplOffset, err = parseInt(value)
	case "master_repl_offset":
		i.MasterReplOffset, err = parseInt(value)
	case "replica_announced":
		i.ReplicaAnnounced, err = parseFlag(key, value)
	case "master_failover_state":
		i.MasterFailoverState = value
	case "loading":
		i.Loading, err = parseFlag(key, value)
	case "master_replid":
		i.MasterReplID = value
	case "master_replid2":
		i.MasterReplID2 = value
	case "second_repl_offset":
		i.SecondReplOffset, err = parseInt(value)
	case "min_slaves_good_slaves":
		i.MinReplicasOn = true
	default:
		if isNumbered(key, "db") {
			var n int64
			if n, err = parseDBKeys(value); err == nil {
				i.Keys = satAddKeys(i.Keys, n)
			}
			break
		}
		if isReplicaKey(key) {
			var r ReplicaInfo
			if r, err = parseReplica(value); err == nil {
				i.ConnectedReplicas = append(i.ConnectedReplicas, r)
			}
		}
	}
	return err
}

// isReplicaKey matches slave0, slave1, ... but not slave_priority and the
// other slave_* fields.
func isReplicaKey(key string) bool { return isNumbered(key, "slave") }

// isNumbered matches prefix followed by one or more digits.
func isNumbered(key, prefix string) bool {
	digits, ok := strings.CutPrefix(key, prefix)
	if !ok || digits == "" {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}

// parseDBKeys reads keys= from a Keyspace line,
// "keys=..,expires=..,avg_ttl=..[,subexpiry=..]".
func parseDBKeys(value string) (int64, error) {
	for part := range strings.SplitSeq(value, ",") {
		k, v, _ := strings.Cut(part, "=")
		if k != "keys" {
			continue
		}
		n, err := parseInt(v)
		if err != nil {
			return 0, fmt.Errorf("keyspace keys: %w", err)
		}
		if n < 0 {
			return 0, fmt.Errorf("keyspace keys %d is negative", n)
		}
		return n, nil
	}
	return 0, errors.New("keyspace entry has no keys=")
}

// satAddKeys adds two non-negative key counts without wrapping.
func satAddKeys(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// parseReplica reads "ip=..,port=..,state=..,offset=..,lag=.." and the
// pre-2.8 form "ip,port,state" that Sentinel also still accepts.
func parseReplica(value string) (ReplicaInfo, error) {
	var r ReplicaInfo
	if !strings.Contains(value, "=") {
		parts := strings.Split(value, ",")
		if len(parts) < 2 || parts[0] == "" {
			return r, errors.New("replica entry needs at least ip,port")
		}
		port, err := parsePort(parts[1])
		if err != nil {
			return r, err
		}
		r.IP, r.Port = parts[0], port
		if len(parts) > 2 {
			r.State = parts[2]
		}
		return r, nil
	}
	var sawIP, sawPort bool
	for part := range strings.SplitSeq(value, ",") {
		k, v, _ := strings.Cut(part, "=")
		var err error
		switch k {
		case "ip":
			r.IP, sawIP = v, v != ""
		case "port":
			r.Port, err = parsePort(v)
			sawPort = err == nil
		case "state":
			r.State = v
		case "offset":
			r.Offset, err = parseInt(v)
		case "lag":
			r.Lag, err = parseInt(v)
		}
		if err != nil {
			return ReplicaInfo{}, fmt.Errorf("replica field %s: %w", k, err)
		}
	}
	if !sawIP || !sawPort {
		return ReplicaInfo{}, errors.New("replica entry needs ip= and port=")
	}
	return r, nil
}

func parseInt(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad integer %q", clip(s))
	}
	return n, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", clip(s))
	}
	return int(p), nil
}

// clip keeps error messages short when the input is garbage.
func clip(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// parseFlag reads a 0 or 1 field of INFO.
func parseFlag(key, value string) (bool, error) {
	switch value {
	case "1":
		return true, nil
	case "0":
		return false, nil
	}
	return false, fmt.Errorf("%s is %q, want 0 or 1", key, clip(value))
}
