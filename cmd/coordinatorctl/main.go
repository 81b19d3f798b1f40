// Command coordinatorctl is the operator's CLI for a Raftinel cluster. It
// owns argument parsing, the choice of which node to talk to, rendering of
// answers as tables or JSON, and the mapping of failures to exit codes. It
// holds no state and decides nothing: every check of a master's settings is
// the server's, so the CLI and the API can never disagree about what is
// valid.
//
// It speaks only the public gRPC API (proto/gen/coordinator/v1) and must not
// import the server or the state machine packages.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
