package server

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/raftinel/raftinel/internal/testwait"
	coordinatorv1 "github.com/raftinel/raftinel/proto/gen/coordinator/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Certificates rotated under load (new keys for every node, then Reload,
// which SIGHUP calls): open WatchMaster streams go on and see the next
// change, new connections get the new certificates, and the cluster keeps
// committing.
func TestCertificateRotationKeepsStreams(t *testing.T) {
	c := newSecureCluster(t, 3, "")
	cl := coordinatorv1.NewCoordinatorServiceClient(dialWith(t, c.leader().srv.GRPCAddr(), credentials.NewTLS(c.pki.clientTLS("", ""))))
	addr := unusedAddr(t)
	testwait.For(t, 30*time.Second, "monitor", func() error {
		_, err := cl.Monitor(ctxT(t, 5*time.Second), &coordinatorv1.MonitorRequest{Name: "m", Address: addr,
			Settings: &coordinatorv1.MasterSettings{Quorum: 2, DownAfter: durationpb.New(time.Hour), FailoverTimeout: durationpb.New(time.Hour)}})
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return err
	})
	// Every node has applied the master before its stream opens: a
	// follower behind the leader would answer NotFound.
	testwait.For(t, 10*time.Second, "every node knows the master", func() error {
		for _, nd := range c.nodes {
			if _, _, ok := nd.srv.FSM().Master("m"); !ok {
				return fmt.Errorf("%s has not applied the master yet", nd.id)
			}
		}
		return nil
	})
	// One stream per node, each on its own connection.
	var streams []coordinatorv1.CoordinatorService_WatchMasterClient
	for _, nd := range c.nodes {
		conn := dialWith(t, nd.srv.GRPCAddr(), credentials.NewTLS(c.pki.clientTLS("", "")))
		st, err := coordinatorv1.NewCoordinatorServiceClient(conn).WatchMaster(ctxT(t, 2*time.Minute), &coordinatorv1.WatchMasterRequest{Name: "m"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatalf("first update from %s: %v", nd.id, err)
		}
		streams = append(streams, st)
	}
	// Load: reads on fresh connections and writes, while certificates rotate.
	stop := make(chan struct{})
	loadErr := make(chan error, 1)
	go func() {
		defer close(loadErr)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			nd := c.nodes[i%len(c.nodes)]
			conn := dialWith(t, nd.srv.GRPCAddr(), credentials.NewTLS(c.pki.clientTLS("", "")))
			if _, err := coordinatorv1.NewCoordinatorServiceClient(conn).GetMaster(ctxT(t, 5*time.Second), &coordinatorv1.GetMasterRequest{Name: "m"}); err != nil {
				loadErr <- fmt.Errorf("read from %s during the rotation: %w", nd.id, err)
				return
			}
			_ = conn.Close()
		}
	}()
	old := map[string]string{}
	for _, nd := range c.nodes {
		old[nd.id] = nd.srv.tls.Leaf().SerialNumber.String()
		c.pki.issue(nd.id, "") // rewrites the node's files in place
		if err := nd.srv.Reload(); err != nil {
			t.Fatal(err)
		}
		if nd.srv.tls.Leaf().SerialNumber.String() == old[nd.id] {
			t.Fatalf("%s still has its old certificate", nd.id)
		}
	}
	close(stop)
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	// New connections see the new certificates.
	for _, nd := range c.nodes {
		conn, err := tls.Dial("tcp", nd.srv.GRPCAddr(), c.pki.clientTLS("", ""))
		if err != nil {
			t.Fatal(err)
		}
		got := conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
		conn.Close()
		if got == old[nd.id] {
			t.Fatalf("%s still presents its old certificate to new connections", nd.id)
		}
	}
	// The cluster still commits, and every stream opened before the
	// rotation sees the change.
	epoch := promoteTo(t, c.leader().srv, "m", unusedAddr(t))
	for i, st := range streams {
		for {
			u, err := st.Recv()
			if err != nil {
				t.Fatalf("stream on %s after the rotation: %v", c.nodes[i].id, err)
			}
			if u.GetEpoch() == epoch {
				break
			}
		}
	}
}
