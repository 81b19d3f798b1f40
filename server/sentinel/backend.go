package sentinel

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"time"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"
)

// Backend is what the front end needs from the node.
//
// Every method may be called from many connection goroutines at once. The
// read methods (MyID, State, Instance, Peers, Tilt) are called on the request
// path of every command, so they must not wait for Raft or the network.
// Values returned are owned by the front end afterwards only in the sense
// that it reads them: it never mutates a State it was given, so a Backend may
// hand out the same immutable State to several callers.
type Backend interface {
	// MyID is this node's Sentinel run id: 40 hex characters, stable across restarts.
	// It must be RunID(node id), so that peers list this node under the same
	// name and events carrying this node's id are recognised as its own.
	MyID() string
	// State is the replicated state as this node has applied it, read-only
	// (it may be shared with other callers).
	State() *fsmv1.State
	// Instance is this node's own view of one Redis instance (masters and replicas).
	Instance(addr string) (InstanceView, bool)
	// Peers are the other coordinator nodes (never this one), with their
	// Sentinel addresses ("" when unknown). With reach, also whether this
	// node can reach them, which may wait for a round of probes (half a
	// second at most) when nobody asked lately; without, Reachable is
	// false and the call waits for nothing.
	Peers(reach bool) []Peer
	// Tilt reports whether this node is in TILT and since when.
	Tilt() (bool, time.Time)
	// Writes; they go through Raft. Errors carry Sentinel's text where one exists.
	Monitor(ctx context.Context, name, addr string, quorum int) error
	Remove(ctx context.Context, name string) error
	Set(ctx context.Context, name string, options [][2]string) error
	Reset(ctx context.Context, name string) error
	// Failover starts a failover and returns at once. It returns ErrInProgress
	// or ErrNoGoodReplica (sentinel-package error values) when applicable.
	Failover(ctx context.Context, name string) error
	// Events delivers every event this node applies, in order, from now on;
	// cancel releases it. A slow consumer must not block the node: the
	// channel is buffered and the backend closes it if the consumer falls behind.
	Events() (events <-chan *fsmv1.Event, cancel func())
}

// StateNotifier is optional. A Backend that implements it lets the front end
// clone the state once per change instead of once per command: clients such
// as go-redis send GET-MASTER-ADDR-BY-NAME on every new connection, and a
// full State clone per call would dominate the cost of answering it.
//
// Changed returns a channel that is closed at the next change of State, and
// the applied index (unused here). It has the signature of fsm.FSM.Changed,
// so a node can forward it directly. The front end calls Changed before
// State, so no change between the two is missed.
type StateNotifier interface {
	Changed() (<-chan struct{}, uint64)
}

// Voucher is optional. A Backend that implements it lets the front end
// stop naming masters while the node cannot vouch for its copy of the state
// (a node cut off from the Raft leader for too long may hold a master that
// the others have since failed over).
//
// While Vouches is false, the discovery commands (SENTINEL
// GET-MASTER-ADDR-BY-NAME, MASTERS, MASTER, REPLICAS, SLAVES, SENTINELS)
// and SUBSCRIBE/PSUBSCRIBE close the connection without a reply: every
// Sentinel client library moves on to its next sentinel after a closed
// connection, where an error reply fails the application's call in some
// (redis-py reads SENTINEL MASTERS and lets a reply error through).
type Voucher interface {
	// Vouches reports whether this node may name masters to clients now.
	// It is called on every discovery command, so it must not block.
	Vouches() bool
}

// InstanceView is this node's own observation of one Redis instance, as the
// probes see it. The front end prefers it to the replicated record for the
// link, ping and flag fields, because Sentinel reports its own view there.
type InstanceView struct {
	// LastPingSent is when the oldest PING still unanswered was sent, zero
	// when none is pending (Sentinel's act_ping_time). LastOKPingReply is
	// the last valid reply (PONG, LOADING, MASTERDOWN) and LastPingReply the
	// last reply of any kind. Zero means never.
	LastPingSent, LastOKPingReply, LastPingReply time.Time // zero = never
	SDown                                        bool
	SDownSince                                   time.Time
	Disconnected                                 bool
	InfoRefresh                                  time.Time // when INFO was last parsed; zero = never
	RoleReported                                 string
	RoleReportedTime                             time.Time
	RunID                                        string
	MasterLinkDownSince                          time.Duration // replicas: as reported
	MasterHost                                   string
	MasterPort                                   int
	MasterLinkUp                                 bool
	SlavePriority                                int
	SlaveReplOffset                              int64
	ReplicaAnnounced                             bool
	// MasterReboot is Sentinel's master_reboot flag: the instance is a
	// recorded master that restarted and has not answered PONG since,
	// with master-reboot-down-after-period set.
	MasterReboot bool
}

// Peer is another coordinator node as this node sees it.
type Peer struct {
	ID           string
	SentinelAddr string
	Reachable    bool // set only when asked for (Backend.Peers)
}

// Errors a Backend returns so that the reply carries Sentinel's exact text.
// They may be wrapped; the front end matches them with errors.Is.
var (
	// ErrInProgress: a failover of that master is already running.
	ErrInProgress = errors.New("INPROG Failover already in progress")
	// ErrNoGoodReplica: no replica passes the promotion rules.
	ErrNoGoodReplica = errors.New("NOGOODSLAVE No suitable replica to promote")
	// ErrNoSuchMaster: the master is not monitored. The front end checks
	// names against the state first; this covers a master removed between
	// that check and the write.
	ErrNoSuchMaster = errors.New("ERR No such master with that name")
)

// RunID is the Sentinel run id of a coordinator node: the hex SHA-1 of its
// node id. Sentinel's run ids are 40 hex characters and clients treat them as
// opaque; deriving it from the node id (rather than drawing it at random like
// Sentinel does) makes it stable across restarts and lets every node compute
// every other node's id without asking.
func RunID(nodeID string) string {
	sum := sha1.Sum([]byte(nodeID))
	return hex.EncodeToString(sum[:])
}
