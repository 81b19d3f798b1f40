package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
)

const (
	envAddr     = "COORDINATOR_ADDR"
	defaultAddr = "127.0.0.1:7100"
)

// app holds the global flags and where output goes; commands read it when
// they run, after cobra has parsed every flag.
type app struct {
	addr    string
	output  outputFormat
	timeout positiveDuration
	stdout  io.Writer
	sec     securityFlags
}

// client builds the connection list lazily, so `help` and `completion`
// work even when COORDINATOR_ADDR holds garbage.
func (a *app) client() (*client, error) {
	addrs, err := parseAddrs(a.addr)
	if err != nil {
		return nil, err
	}
	opts, err := a.sec.dialOptions(addrs)
	if err != nil {
		return nil, err
	}
	return newClient(addrs, time.Duration(a.timeout), opts...), nil
}

// show prints a read's answer as JSON or through its table renderer.
func show[M proto.Message](a *app, m M, render func(io.Writer, M) error) error {
	if a.output == outputJSON {
		return writeJSON(a.stdout, m)
	}
	return render(a.stdout, m)
}

// confirm prints a write's answer: the confirmation line, or the response
// message for scripts.
func (a *app) confirm(m proto.Message, line string) error {
	if a.output == outputJSON {
		return writeJSON(a.stdout, m)
	}
	_, err := fmt.Fprintln(a.stdout, line)
	return err
}

// runE adapts a command body to cobra: it opens the client and makes sure
// every failure leaves with an exit code chosen here, never cobra's
// default.
func (a *app) runE(body func(ctx context.Context, c *client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		defer c.Close()
		return fromCall(body(cmd.Context(), c, args))
	}
}

func newRootCmd(getenv func(string) string, stdout, stderr io.Writer) *cobra.Command {
	a := &app{addr: defaultAddr, output: outputTable, timeout: positiveDuration(5 * time.Second), stdout: stdout}
	if v := getenv(envAddr); v != "" {
		a.addr = v
	}
	root := &cobra.Command{
		Use:   "coordinatorctl",
		Short: "Operate a Raftinel cluster",
		Long: `coordinatorctl operates a Raftinel cluster through its gRPC API: cluster
membership and status, and the Redis masters the cluster monitors.

Any node will do: reads are answered from the node's own state, writes are
forwarded to the leader. With several addresses in --addr the first one that
answers is used; a node that is down or has no leader to forward to is
skipped.

With -o json a command prints its API response message in the proto3 JSON
mapping: field names are the .proto names (snake_case), every field is
present, 64-bit integers are strings and durations are like "1.500s".

The streaming commands (watch, events --follow) print one line per change,
or with -o json one compact JSON object per line, and go on through another
node when theirs stops.

Shell completion: 'coordinatorctl completion bash|zsh|fish|powershell' prints
the script; 'coordinatorctl completion bash --help' says how to load it.

Exit codes: 0 success, 1 failure (no node reachable, no quorum, timeout),
2 usage error, 3 master or node not found, 4 invalid value or already exists,
5 failover aborted, 6 refused (no token, an invalid one, or too weak a role).

A secured cluster (nodes started with --tls-cert/--tls-key/--tls-ca and
--auth-file) takes --tls-ca (and a client certificate with --tls-cert and
--tls-key, when asked for) and --token; each also reads its COORDINATOR_*
variable.`,
		Example: `  export COORDINATOR_ADDR=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
  coordinatorctl status
  coordinatorctl monitor mymaster 127.0.0.1:6379 --quorum 2 --down-after 5s
  coordinatorctl masters -o json`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.addr, "addr", a.addr, "comma-separated gRPC host:port of cluster nodes, tried in order (env "+envAddr+")")
	pf.VarP(&a.output, "output", "o", "output format: table or json")
	pf.Var(&a.timeout, "timeout", "deadline of each call to the cluster, across all addresses tried")
	a.sec.register(pf, getenv)

	root.AddGroup(&cobra.Group{ID: "cluster", Title: "Cluster:"}, &cobra.Group{ID: "masters", Title: "Monitored masters:"},
		&cobra.Group{ID: "security", Title: "Security:"})
	tls := tlsCmd(a)
	tls.GroupID = "security"
	root.AddCommand(tls)
	for _, c := range []*cobra.Command{statusCmd(a), membersCmd(a), removeNodeCmd(a), transferLeadershipCmd(a), checkFormatCmd(a), snapshotCmd(a)} {
		c.GroupID = "cluster"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{monitorCmd(a), removeCmd(a), setCmd(a), mastersCmd(a), masterCmd(a), failoverCmd(a), explainCmd(a), watchCmd(a), eventsCmd(a)} {
		c.GroupID = "masters"
		root.AddCommand(c)
	}
	return root
}

// run executes the CLI and returns the process's exit code. A failure is
// one line on stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	root := newRootCmd(getenv, stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	code := exitCode(err)
	if err != nil {
		msg := oneLine(err.Error())
		if code == exitUsage && cmd != nil {
			msg += fmt.Sprintf(" (see '%s --help')", cmd.CommandPath())
		}
		fmt.Fprintf(stderr, "coordinatorctl: %s\n", msg)
	}
	return code
}
