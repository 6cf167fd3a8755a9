package tlsconf_test

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"

	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/internal/tlstest"
)

// serve accepts connections on a loopback port until the test ends: over
// TLS with cfg (requiring a client certificate when clientCAs is set), or
// plaintext when cfg is nil; each connection reads until it ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 1024))
			})
		}
	})
	return l.Addr().String()
}

// Diagnose tells a plaintext client at a TLS listener, and a client
// without a certificate at an mTLS one, from other failures.
func TestDiagnose(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	server := ca.Server(t).TLS
	tlsAddr := serve(t, &tls.Config{Certificates: []tls.Certificate{server}})
	mtlsAddr := serve(t, &tls.Config{Certificates: []tls.Certificate{server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()})
	plainAddr := serve(t, nil)
	noCert := &tls.Config{RootCAs: ca.Pool()}
	withCert := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Client(t, "w").TLS}}
	for _, c := range []struct {
		name   string
		addr   string
		client *tls.Config
		want   tlsconf.Mismatch
	}{
		{"plaintext to TLS", tlsAddr, nil, tlsconf.ServerSpeaksTLS},
		{"plaintext to mTLS", mtlsAddr, nil, tlsconf.ServerSpeaksTLS},
		{"no certificate to mTLS", mtlsAddr, noCert, tlsconf.ClientCertRequired},
		{"certificate to mTLS", mtlsAddr, withCert, tlsconf.NoMismatch},
		{"no certificate to TLS", tlsAddr, noCert, tlsconf.NoMismatch},
		{"plaintext to plaintext", plainAddr, nil, tlsconf.NoMismatch},
		{"nothing listening", "127.0.0.1:1", nil, tlsconf.NoMismatch},
	} {
		if got := tlsconf.Diagnose(t.Context(), c.addr, c.client, nil); got != c.want {
			t.Errorf("%s: Diagnose = %d, want %d", c.name, got, c.want)
		}
	}
}
