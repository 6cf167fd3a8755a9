package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/internal/tlstest"
)

// Identity names a verified client certificate by its first DNS SAN, else
// its Common Name; an unverified connection has none.
func TestIdentity(t *testing.T) {
	ca := tlstest.NewCA(t, "ca")
	for _, c := range []struct {
		is   tlstest.Issued
		want string
	}{{ca.Client(t, "cn-only"), "cn-only"}, {ca.Client(t, "cn", "san.example"), "san.example"}} {
		leaf := c.is.TLS.Leaf
		if got := tlsconf.Identity(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}); got != c.want {
			t.Fatalf("identity %q, want %q", got, c.want)
		}
	}
	if got := tlsconf.Identity(&tls.ConnectionState{}); got != "" {
		t.Fatalf("unverified identity %q", got)
	}
}

// A reload that cannot read its files keeps the certificate in use.
func TestReloadKeepsTheOldCertificateOnError(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	cert, key, _ := ca.Files(t, dir)
	s, err := tlsconf.NewServer(tlsconf.Files{Cert: cert, Key: key}, false)
	if err != nil {
		t.Fatal(err)
	}
	served := func() []byte {
		c, err := s.Config().GetConfigForClient(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificates[0].Certificate[0]
	}
	first := served()
	if err := os.WriteFile(cert, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if string(served()) != string(first) {
		t.Fatal("a failed reload replaced the certificate")
	}
	next := ca.Server(t)
	next.Write(t, cert, key)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if string(served()) != string(next.TLS.Certificate[0]) {
		t.Fatal("Reload did not take the new certificate")
	}
	if _, err := tlsconf.NewServer(tlsconf.Files{Cert: cert, Key: filepath.Join(dir, "none")}, false); err == nil {
		t.Fatal("NewServer with a missing key succeeded")
	}
}

func TestSplitScheme(t *testing.T) {
	for in, want := range map[string]struct {
		host string
		tls  bool
	}{"a:1": {"a:1", false}, "grpc://a:1": {"a:1", false}, "grpcs://a:1": {"a:1", true}, "tls://a:1": {"a:1", true}} {
		if h, tl := tlsconf.SplitScheme(in); h != want.host || tl != want.tls {
			t.Errorf("SplitScheme(%q) = %q %v", in, h, tl)
		}
	}
}
