package natsembed_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/internal/tlstest"
)

// startSecured runs a real nats-server with two accounts: a user with a
// password in one, an NKey user in the other, and TLS that verifies
// client certificates from ca.
func startSecured(t *testing.T, ca *tlstest.CA, nkeyPub string) *server.Server {
	t.Helper()
	srvCert := ca.Server(t)
	pool := ca.Pool()
	app, other := server.NewAccount("APP"), server.NewAccount("OTHER")
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		Accounts: []*server.Account{app, other},
		Users:    []*server.User{{Username: "trine", Password: "s3cret", Account: app}},
		Nkeys:    []*server.NkeyUser{{Nkey: nkeyPub, Account: other}},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{srvCert.TLS}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
			MinVersion: tls.VersionTLS12},
		TLSVerify: true, TLSTimeout: 2}
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// Connect authenticates with a password in the URL or an NKey seed, over
// TLS with the CA and a client certificate; anything missing fails at
// once with the reason, and a password never shows in the error.
func TestConnectWithCredentialsAndTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "nats CA")
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	ns := startSecured(t, ca, pub)
	addr := ns.Addr().String()
	client := ca.Client(t, "trine-engine")
	withCert := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}, MinVersion: tls.VersionTLS12}
	noCert := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}

	ok := func(url string, o natsembed.Options) *natsembed.Server {
		t.Helper()
		o.Name, o.ConnectTimeout = "test", time.Second
		s, err := natsembed.Connect(url, o)
		if err != nil {
			t.Fatalf("connect %s: %v", url, err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a := ok("tls://trine:s3cret@"+addr, natsembed.Options{TLS: withCert})
	b := ok("tls://"+addr, natsembed.Options{TLS: withCert, NKeySeedFile: seedFile})
	roundTrip(t, a, a)
	roundTrip(t, b, b)

	for name, c := range map[string]struct {
		url string
		o   natsembed.Options
	}{
		"wrong password":        {"tls://trine:wrong@" + addr, natsembed.Options{TLS: withCert}},
		"no credentials":        {"tls://" + addr, natsembed.Options{TLS: withCert}},
		"no client certificate": {"tls://trine:s3cret@" + addr, natsembed.Options{TLS: noCert}},
		"no TLS":                {"nats://trine:s3cret@" + addr, natsembed.Options{}},
		"missing creds file":    {"tls://" + addr, natsembed.Options{TLS: withCert, CredsFile: filepath.Join(t.TempDir(), "none.creds")}},
		"bad seed file":         {"tls://" + addr, natsembed.Options{TLS: withCert, NKeySeedFile: filepath.Join(t.TempDir(), "none.nk")}},
	} {
		c.o.Name, c.o.ConnectTimeout = "test", 500*time.Millisecond
		start := time.Now()
		s, err := natsembed.Connect(c.url, c.o)
		if err == nil {
			s.Close()
			t.Errorf("%s: connected", name)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: took %v to fail", name, time.Since(start))
		}
	}
}

// The embedded server with a token refuses other processes without it;
// the in-process connection and a client with the token work.
func TestEmbeddedToken(t *testing.T) {
	s, err := natsembed.Start(natsembed.Options{Name: "test", Listen: "127.0.0.1:0", Token: "t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := natsembed.Connect("nats://"+s.Addr(), natsembed.Options{Name: "no-token", ConnectTimeout: 500 * time.Millisecond}); err == nil {
		t.Fatal("a client without the token connected")
	}
	ext, err := natsembed.Connect("nats://t0ken@"+s.Addr(), natsembed.Options{Name: "with-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	roundTrip(t, s, ext)
	if got := natsembed.Redact("nats://t0ken@h:1,nats://u:p@h:2,nats://h:3"); got != "nats://redacted@h:1,nats://u:redacted@h:2,nats://h:3" {
		t.Fatalf("Redact: %s", got)
	}
}
