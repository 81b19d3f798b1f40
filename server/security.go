package server

import (
	"context"
	"crypto/tls"
	"errors"

	fsmv1 "github.com/raftinel/raftinel/proto/gen/coordinator/fsm/v1"

	"github.com/raftinel/raftinel/security"
)

// loadSecurity reads the TLS files and the auth file the config names, and
// warns when the node serves plaintext beyond loopback.
func (s *Server) loadSecurity() error {
	cfg := s.cfg
	if cfg.tlsOn() {
		t, err := security.LoadTLS(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile, cfg.ID)
		if err != nil {
			return err
		}
		s.tls = t
	} else {
		for _, a := range cfg.exposedAddrs() {
			if !isLoopback(a.addr) {
				s.log.Warn("serving plaintext on an address other than loopback: anyone who reaches it can drive the cluster; give --tls-cert, --tls-key and --tls-ca (and --auth-file)", "flag", a.flag, "addr", a.addr)
			}
		}
	}
	if cfg.redisTLSOn() {
		r, err := security.LoadRedisTLS(cfg.RedisTLSCAFile, cfg.RedisTLSCertFile, cfg.RedisTLSKeyFile, cfg.RedisTLSServerName)
		if err != nil {
			return err
		}
		s.redisTLS = r
	}
	if cfg.AuthFile != "" {
		a, err := security.LoadAuthFile(cfg.AuthFile)
		if err != nil {
			return err
		}
		s.auth = a
	}
	return nil
}

// Reload re-reads the TLS files and the auth file (on SIGHUP). New
// connections use the new certificates and every call the new tokens at
// once; open connections and streams are left alone. A file that fails to
// load leaves what is in use unchanged, and the error says which.
func (s *Server) Reload() error {
	var errs []error
	if s.tls != nil {
		if err := s.tls.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.redisTLS != nil {
		if err := s.redisTLS.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.auth != nil {
		if err := s.auth.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	if err != nil {
		s.log.Error("reload", "err", err)
	} else {
		n := 0
		if s.auth != nil {
			n = len(s.auth.Tokens())
		}
		s.log.Info("reloaded certificates and tokens", "tls", s.tls != nil, "redis_tls", s.redisTLS != nil, "tokens", n)
	}
	return err
}

// redisTLSConfig is what the probe and the leader's connections dial
// Redis with: nil (plaintext) without --redis-tls-ca.
func (s *Server) redisTLSConfig() func(host string) *tls.Config {
	if s.redisTLS == nil {
		return nil
	}
	return s.redisTLS.ClientConfig
}

// isManual tells the commands a user's call commits (as opposed to the
// nodes' votes and the leader's own failover steps).
func isManual(cmd *fsmv1.Command) bool {
	switch k := cmd.GetKind().(type) {
	case *fsmv1.Command_RegisterNode, *fsmv1.Command_DeregisterNode, *fsmv1.Command_MonitorMaster,
		*fsmv1.Command_RemoveMaster, *fsmv1.Command_SetMasterOptions, *fsmv1.Command_ResetMaster:
		return true
	case *fsmv1.Command_BeginFailover:
		return k.BeginFailover.GetReason() == "manual"
	}
	return false
}

// stampActor records, on a manual command, who asked for it and from
// where (the identity the receiving node authenticated), and writes the
// audit line. A node's own registration is not a manual action.
func (s *Server) stampActor(ctx context.Context, cmd *fsmv1.Command) {
	id, ok := security.IdentityFrom(ctx)
	if !ok || !isManual(cmd) || (id.Kind == security.KindNode && !id.Forwarded && isOwnRegistration(cmd, id.Name)) {
		return
	}
	cmd.Actor = &fsmv1.Actor{Who: id.Who(), From: id.From}
	s.log.Info("audit", "who", id.Who(), "from", id.From, "action", commandKind(cmd))
}

func isOwnRegistration(cmd *fsmv1.Command, nodeID string) bool {
	r, ok := cmd.GetKind().(*fsmv1.Command_RegisterNode)
	return ok && r.RegisterNode.GetNode().GetId() == nodeID
}

// commandKind is the name of the command's kind ("monitor_master").
func commandKind(cmd *fsmv1.Command) string {
	m := cmd.ProtoReflect()
	if f := m.WhichOneof(m.Descriptor().Oneofs().ByName("kind")); f != nil {
		return string(f.Name())
	}
	return "none"
}
