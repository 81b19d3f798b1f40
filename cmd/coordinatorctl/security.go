package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/raftinel/raftinel/security"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// securityFlags are the global flags of a secured cluster.
type securityFlags struct {
	ca, cert, key, token string
}

const envToken = "COORDINATOR_TOKEN"

func (f *securityFlags) register(pf *pflag.FlagSet, getenv func(string) string) {
	for _, d := range []struct {
		p         *string
		name, env string
		usage     string
	}{
		{&f.ca, "tls-ca", "COORDINATOR_TLS_CA", "CA certificate (PEM) to verify the nodes with; turns TLS on"},
		{&f.cert, "tls-cert", "COORDINATOR_TLS_CERT", "client certificate (PEM) to present, with --tls-key"},
		{&f.key, "tls-key", "COORDINATOR_TLS_KEY", "key of --tls-cert (PEM)"},
		{&f.token, "token", envToken, "API token sent as 'authorization: Bearer TOKEN' (prefer the environment variable: flags show in ps)"},
	} {
		*d.p = getenv(d.env)
		pf.StringVar(d.p, d.name, *d.p, d.usage+" (env "+d.env+")")
	}
}

// dialOptions are the transport credentials and the token for addrs.
func (f *securityFlags) dialOptions(addrs []string) ([]grpc.DialOption, error) {
	if (f.cert == "") != (f.key == "") {
		return nil, usageErrorf("--tls-cert and --tls-key go together")
	}
	if f.ca == "" && f.cert != "" {
		return nil, usageErrorf("--tls-cert needs --tls-ca, to verify the nodes with")
	}
	var opts []grpc.DialOption
	if f.ca == "" {
		if f.token != "" {
			for _, a := range addrs {
				if host, _, _ := net.SplitHostPort(a); !isLoopbackHost(host) {
					return nil, usageErrorf("--token without --tls-ca to %s: the token would travel in plaintext; give --tls-ca", a)
				}
			}
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, usageErrorf("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageErrorf("--tls-ca %s: no PEM certificate in it", f.ca)
		}
		cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if f.cert != "" {
			c, err := tls.LoadX509KeyPair(f.cert, f.key)
			if err != nil {
				return nil, usageErrorf("--tls-cert/--tls-key: %v", err)
			}
			cfg.Certificates = []tls.Certificate{c}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if f.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: strings.TrimSpace(f.token), secure: f.ca != ""}))
	}
	return opts, nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer sends the token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

func tlsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Create a development CA and node or client certificates",
		Long: `tls creates a CA and certificates for a development or test cluster (as
'consul tls' does). Node certificates carry the URI SAN raftinel://node/ID,
which is how nodes know each other; client certificates carry none.`,
	}
	var dir string
	createCA := &cobra.Command{
		Use:   "create-ca --dir DIR",
		Short: "Create a CA in DIR (ca.pem, ca-key.pem)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErrorf("--dir is required")
			}
			path, err := security.CreateCADir(dir)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			_, err = fmt.Fprintf(a.stdout, "created CA %s (key %s/%s: keep it private)\n", path, dir, security.CAKeyFile)
			return err
		},
	}
	createCA.Flags().StringVar(&dir, "dir", "", "directory for the CA's files")
	var node, clientName, serverName string
	var ips, dns []string
	createCert := &cobra.Command{
		Use:   "create-cert --dir DIR (--node ID | --client NAME | --server NAME) [--ip IP]... [--dns NAME]...",
		Short: "Issue a node, client or server (redis-server) certificate with the CA in DIR (NAME.pem, NAME-key.pem)",
		Example: `  coordinatorctl tls create-ca --dir certs
  coordinatorctl tls create-cert --dir certs --node n1 --ip 127.0.0.1
  coordinatorctl tls create-cert --dir certs --client alice
  coordinatorctl tls create-cert --dir certs --server redis1 --ip 127.0.0.1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usageErrorf("--dir is required")
			}
			given := 0
			for _, k := range []string{node, clientName, serverName} {
				if k != "" {
					given++
				}
			}
			if given != 1 {
				return usageErrorf("give exactly one of --node ID, --client NAME and --server NAME")
			}
			req := security.CertRequest{Node: node, Client: clientName, Server: serverName, DNSNames: dns}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return usageErrorf("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, ip)
			}
			if node != "" && len(req.IPs) == 0 && len(dns) == 0 {
				return usageErrorf("a node certificate needs the addresses clients reach the node at: --ip and/or --dns")
			}
			if serverName != "" && len(req.IPs) == 0 && len(dns) == 0 {
				return usageErrorf("a server certificate needs the addresses the server is reached at (the nodes check them): --ip and/or --dns")
			}
			certPath, keyPath, err := security.IssueToDir(dir, req)
			if err != nil {
				return &exitError{code: exitFailure, err: err}
			}
			_, err = fmt.Fprintf(a.stdout, "created %s and %s\n", certPath, keyPath)
			return err
		},
	}
	createCert.Flags().StringVar(&dir, "dir", "", "directory holding the CA (from create-ca); the certificate is written there")
	createCert.Flags().StringVar(&node, "node", "", "node id: a node certificate (URI SAN raftinel://node/ID)")
	createCert.Flags().StringVar(&clientName, "client", "", "client name: a client certificate (CN=NAME)")
	createCert.Flags().StringVar(&serverName, "server", "", "server name: a certificate for a monitored redis-server (tls-cert-file; serves, and dials its master with tls-replication), naming no node")
	createCert.Flags().StringSliceVar(&ips, "ip", nil, "IP address the node or server is reached at (repeatable)")
	createCert.Flags().StringSliceVar(&dns, "dns", nil, "DNS name the node or server is reached at (repeatable)")
	cmd.AddCommand(createCA, createCert)
	return cmd
}
