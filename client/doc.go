// Package client is Raftinel's Go client. It owns the application's side of
// the gRPC API: a Client over several nodes that fails over between them,
// retries with backoff while the cluster answers Unavailable and follows the
// leader hint of "not leader" errors; a Watcher that keeps one master's
// current address through reconnects and never goes back to an older
// epoch; and NewRedisClient, a go-redis client that always talks to the
// master the Watcher knows.
//
// It depends on the generated API (proto/gen), grpc and go-redis only; it
// must not import the server, the FSM or the probes.
package client
