package server

import (
	"context"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthService is grpc-go's health server with one change: a Watch stream
// ends when the node stops. grpc-go's own Watch only ends when the client
// leaves, which would hold GracefulStop (and so Shutdown) until its
// deadline whenever a load balancer keeps a health watch open.
type healthService struct {
	*health.Server
	stop context.Context // the node's context, cancelled by Shutdown
}

func (h healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(h.stop, cancel)()
	err := h.Server.Watch(req, watchStream{Health_WatchServer: stream, ctx: ctx})
	if h.stop.Err() != nil {
		return errShuttingDown
	}
	return err
}

// watchStream is a health watch stream with the node's lifetime folded
// into its context.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w watchStream) Context() context.Context { return w.ctx }
