package tlsconf

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"time"
)

// Mismatch is why a connection to a server failed for want of the right
// TLS settings, as Diagnose finds it.
type Mismatch int

const (
	// NoMismatch: TLS settings are not what failed (or Diagnose could not
	// tell).
	NoMismatch Mismatch = iota
	// ServerSpeaksTLS: a plaintext client reached a TLS listener.
	ServerSpeaksTLS
	// ClientCertRequired: a TLS client without a certificate reached a
	// listener that requires one (mTLS).
	ClientCertRequired
)

// diagnoseTimeout bounds the probe, which runs after a failure only.
const diagnoseTimeout = 2 * time.Second

// Diagnose probes addr after a failed connection made with client (nil:
// plaintext), to tell a TLS mismatch from other failures, which report
// only "error reading server preface: EOF" or "broken pipe". dial opens
// the TCP connection (nil: net.Dialer).
func Diagnose(ctx context.Context, addr string, client *tls.Config, dial func(context.Context, string) (net.Conn, error)) Mismatch {
	if client != nil && (len(client.Certificates) > 0 || client.GetClientCertificate != nil) {
		return NoMismatch
	}
	ctx, cancel := context.WithTimeout(ctx, diagnoseTimeout)
	defer cancel()
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	raw, err := dial(ctx, addr)
	if err != nil {
		return NoMismatch
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12} //nolint:gosec // a probe: nothing is sent
	if host, _, err := net.SplitHostPort(addr); err == nil && net.ParseIP(host) == nil {
		cfg.ServerName = host
	}
	c := tls.Client(raw, cfg)
	err = c.HandshakeContext(ctx)
	switch {
	case client == nil && err == nil:
		return ServerSpeaksTLS
	case client == nil:
		return NoMismatch
	case certRequired(err):
		return ClientCertRequired // TLS 1.2 refuses in the handshake
	case err != nil:
		return NoMismatch
	}
	// TLS 1.3 refuses after the handshake, in the server's first record.
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); certRequired(err) {
		return ClientCertRequired
	}
	return NoMismatch
}

// certRequired reports whether err is the server's alert for a missing
// client certificate: certificate_required (TLS 1.3), or bad_certificate
// (TLS 1.2).
func certRequired(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "remote error: tls: certificate required") || strings.Contains(msg, "remote error: tls: bad certificate")
}
