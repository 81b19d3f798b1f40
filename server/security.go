package server

import (
	"errors"

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
		s.log.Info("reloaded certificates and tokens", "tls", s.tls != nil, "tokens", n)
	}
	return err
}
