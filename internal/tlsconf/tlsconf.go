// Package tlsconf builds the TLS configuration of Trine's listeners and
// clients from PEM files, and reloads a listener's certificate (on SIGHUP)
// without dropping its connections: every handshake reads the current
// one.
//
// Concurrency: the functions run on their caller's goroutine and the
// configs they return are safe for concurrent use once built; the package
// starts no goroutines.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
)

// Files names a listener's PEM files: its certificate chain and key, and
// optionally the CA that signs client certificates (mTLS).
type Files struct {
	Cert, Key string
	ClientCA  string
}

// Enabled reports whether the files turn TLS on.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" }

// Check reports a setting that cannot work: a certificate without a key,
// or a client CA without a certificate.
func (f Files) Check() error {
	switch {
	case (f.Cert == "") != (f.Key == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case f.ClientCA != "" && f.Cert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	return nil
}

// Server is a listener's TLS: the certificate in use and, with a client
// CA, the pool that verifies clients, both replaced by Reload.
type Server struct {
	files      Files
	clientAuth bool
	state      atomic.Pointer[serverState]
}

type serverState struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

// NewServer loads f. With clientAuth and f.ClientCA set, clients must
// present a certificate signed by that CA; without clientAuth the CA is
// ignored (listeners for browsers and http callers).
func NewServer(f Files, clientAuth bool) (*Server, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	s := &Server{files: f, clientAuth: clientAuth && f.ClientCA != ""}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again. On an error the files in use stay, and new
// handshakes go on with them.
func (s *Server) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("TLS certificate %s, key %s: %w", s.files.Cert, s.files.Key, err)
	}
	st := &serverState{cert: &cert}
	if s.clientAuth {
		if st.pool, err = LoadPool(s.files.ClientCA); err != nil {
			return err
		}
	}
	s.state.Store(st)
	return nil
}

// MutualTLS reports whether clients must present a certificate.
func (s *Server) MutualTLS() bool { return s.clientAuth }

// Config returns the listener's tls.Config, offering protocols nextProtos
// (ALPN). Each handshake takes the certificate and client CA current at
// that moment.
func (s *Server) Config(nextProtos ...string) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: nextProtos}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			st := s.state.Load()
			c := base.Clone()
			c.Certificates = []tls.Certificate{*st.cert}
			if st.pool != nil {
				c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, st.pool
			}
			return c, nil
		},
	}
}

// Listen wraps l so that it speaks TLS with s, for HTTP/1.1 servers (the
// WebSocket and SSE listeners, http triggers).
func (s *Server) Listen(l net.Listener) net.Listener {
	return tls.NewListener(l, s.Config("http/1.1"))
}

// LoadPool reads a PEM file of CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("TLS CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("TLS CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// Identity is the name a verified client certificate gives its holder:
// its first DNS or URI SAN, else its email SAN, else its Common Name. It
// is "" when the connection has no verified client certificate.
func Identity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	leaf := cs.VerifiedChains[0][0]
	switch {
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String()
	case len(leaf.EmailAddresses) > 0:
		return leaf.EmailAddresses[0]
	}
	return leaf.Subject.CommonName
}

// SplitScheme takes a scheme off an engine address: grpcs:// and tls://
// ask for TLS, grpc:// and none for plain text.
func SplitScheme(addr string) (host string, useTLS bool) {
	for _, p := range []string{"grpcs://", "tls://"} {
		if rest, ok := strings.CutPrefix(addr, p); ok {
			return rest, true
		}
	}
	return strings.TrimPrefix(addr, "grpc://"), false
}

// Client is a client's TLS: the engine is verified with the CAs in caFile
// (the system's roots when ""), and certFile/keyFile, when set, are the
// client certificate for an engine that requires mTLS.
func Client(caFile, certFile, keyFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadPool(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	switch {
	case (certFile == "") != (keyFile == ""):
		return nil, errors.New("a client certificate and its key go together")
	case certFile != "":
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s, key %s: %w", certFile, keyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
