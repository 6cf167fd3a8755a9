package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/tlstest"
	trine "github.com/trinehq/trine/worker-sdk"
)

// tlsFiles is a server certificate for localhost and a client CA with
// one client certificate, written as PEM files in a temporary directory.
type tlsFiles struct {
	dir                          string
	ca, clientCA                 *tlstest.CA
	cert, key, caFile, clientCAF string
	clientCert, clientKey        string
	client                       tlstest.Issued
}

func newTLSFiles(t *testing.T) *tlsFiles {
	f := &tlsFiles{dir: t.TempDir(), ca: tlstest.NewCA(t, "server CA"), clientCA: tlstest.NewCA(t, "worker CA")}
	f.cert, f.key, f.caFile = f.ca.Files(t, f.dir)
	f.clientCAF = filepath.Join(f.dir, "client-ca.pem")
	f.clientCA.WriteCA(t, f.clientCAF)
	f.client = f.clientCA.Client(t, "worker-7", "worker-7.example")
	f.clientCert, f.clientKey = filepath.Join(f.dir, "client.pem"), filepath.Join(f.dir, "client-key.pem")
	f.client.Write(t, f.clientCert, f.clientKey)
	return f
}

// clientConfig trusts the server CA and, with withCert, presents the
// worker certificate.
func (f *tlsFiles) clientConfig(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{f.client.TLS}
	}
	return c
}

// serial is the serial number of the certificate addr presents.
func serial(t *testing.T, addr string, c *tls.Config) *big.Int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// With --tls-cert and --tls-key every listener speaks TLS and nothing
// else; with --tls-client-ca the worker listeners (gRPC and iii) require
// a client certificate that CA signed, and the browser and http ones do
// not. SIGHUP loads a new certificate without dropping connections; a
// broken file leaves the one in use.
func TestEngineTLS(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.clientCAF)...)
	if !strings.Contains(e.stdout.String(), " tls=on,mtls=workers") {
		t.Fatalf("listening line: %s", e.stdout)
	}
	grpcs := "grpcs://" + e.grpc

	// gRPC: a worker with a client certificate serves; one without cannot
	// connect, nor can a plaintext one.
	w := trine.RegisterWorker(grpcs, trine.WithName("tls-worker"), trine.WithTLS(f.clientConfig(true)))
	defer w.Close()
	if err := w.RegisterFunction(t.Context(), "tls::echo", func(_ context.Context, in json.RawMessage) (any, error) { return in, nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := w.Connect(ctx); err != nil {
		t.Fatalf("worker with a client certificate: %v", err)
	}
	// Their errors name the fix.
	for name, c := range map[string]struct {
		opts []trine.Option
		want string
	}{
		"no client certificate": {[]trine.Option{trine.WithTLS(f.clientConfig(false))}, "the engine at " + grpcs + " requires a client certificate (mTLS)"},
		"plaintext":             {nil, "the engine at " + e.grpc + " speaks TLS: use grpcs://" + e.grpc},
	} {
		addr := grpcs
		if c.opts == nil {
			addr = e.grpc
		}
		bad := trine.RegisterWorker(addr, c.opts...)
		bctx, bcancel := context.WithTimeout(t.Context(), 5*time.Second)
		if err := bad.Connect(bctx); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Connect = %v, want an error with %q", name, err, c.want)
		}
		bcancel()
		bad.Close()
	}
	r := runTrine(t, testEnv(), "", "trigger", "--engine", grpcs, "--tls-ca", f.caFile, "--tls-cert", f.clientCert, "--tls-key", f.clientKey, "tls::echo", `{"a":1}`)
	if r.code != 0 || strings.TrimSpace(r.stdout) != `{"a":1}` {
		t.Fatalf("trine trigger over mTLS: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	r = runTrine(t, testEnv(), "", "trigger", "--engine", grpcs, "--tls-ca", f.caFile, "engine::health::check")
	if r.code != 1 || !strings.Contains(r.stderr, "requires a client certificate (mTLS): pass --tls-cert FILE and --tls-key FILE") {
		t.Fatalf("trine trigger without a client certificate: exit %d, %s", r.code, r.stderr)
	}
	r = runTrine(t, testEnv(), "", "trigger", "--engine", e.grpc, "engine::health::check")
	if r.code != 1 || !strings.Contains(r.stderr, "speaks TLS: use --engine grpcs://"+e.grpc) {
		t.Fatalf("plaintext trine trigger to a TLS engine: exit %d, %s", r.code, r.stderr)
	}

	// iii: wss with a client certificate; without one the handshake fails.
	iiiURL := "wss://" + e.iii + "/"
	for _, withCert := range []bool{true, false} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientConfig(withCert)}}
		dctx, dcancel := context.WithTimeout(t.Context(), 5*time.Second)
		c, _, err := websocket.Dial(dctx, iiiURL, &websocket.DialOptions{HTTPClient: hc})
		dcancel()
		if withCert != (err == nil) {
			t.Fatalf("iii wss with client certificate %v: %v", withCert, err)
		}
		if c != nil {
			c.CloseNow()
		}
	}

	// The stream gateway and http: TLS without client certificates.
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientConfig(false)}, Timeout: 10 * time.Second}
	res, err := https.Get("https://" + strings.TrimPrefix(e.http, "http://") + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("https /healthz: %v %v", res, err)
	}
	res.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, "https://"+e.stream+"/stream/s/g", nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err = https.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SSE over TLS: %v %v", res, err)
	}
	line, _ := bufio.NewReader(res.Body).ReadString('\n')
	res.Body.Close()
	if !strings.HasPrefix(line, "id: ") && !strings.HasPrefix(line, "data: ") {
		t.Fatalf("SSE over TLS sent %q", line)
	}
	// A WebSocket subscriber over TLS gets its sync and a live event
	// through the writer pool, whose raw socket writes must never take a
	// TLS connection's socket.
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	ws, _, err := websocket.Dial(wctx, "wss://"+e.stream+"/stream/tls/g", &websocket.DialOptions{HTTPClient: https})
	if err != nil {
		t.Fatalf("stream WebSocket over TLS: %v", err)
	}
	defer ws.CloseNow()
	if _, b, err := ws.Read(wctx); err != nil || !strings.Contains(string(b), `"type":"sync"`) {
		t.Fatalf("stream WebSocket over TLS: first frame %s, %v", b, err)
	}
	if _, err := w.Trigger(wctx, "stream::set", json.RawMessage(`{"stream_name":"tls","group_id":"g","item_id":"a","data":{"over":"tls"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := ws.Read(wctx); err != nil || !strings.Contains(string(b), `"over":"tls"`) {
		t.Fatalf("stream WebSocket over TLS: event %s, %v", b, err)
	}
	for _, addr := range []string{e.stream, strings.TrimPrefix(e.http, "http://")} {
		res, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest {
				t.Fatalf("plain HTTP to the TLS listener %s: %d", addr, res.StatusCode)
			}
		}
	}

	// SIGHUP: a new certificate for new handshakes; the worker's
	// connection stays.
	before := serial(t, e.stream, f.clientConfig(false))
	next := f.ca.Server(t)
	next.Write(t, f.cert, f.key)
	e.signal(t, syscall.SIGHUP)
	poll.CheckFor(t, 10*time.Second, poll.Holds("the reload", func() bool { return strings.Contains(e.stderr.String(), "TLS files reloaded") }))
	for _, addr := range []string{e.stream, e.grpc, e.iii} {
		if got := serial(t, addr, f.clientConfig(true)); got.Cmp(next.Serial) != 0 || got.Cmp(before) == 0 {
			t.Fatalf("%s presents serial %v after SIGHUP, want %v", addr, got, next.Serial)
		}
	}
	if n := strings.Count(e.stderr.String(), "TLS files reloaded"); n != 1 {
		t.Fatalf("one SIGHUP logged %d reloads, want 1:\n%s", n, e.stderr)
	}
	// The certificate's identity is the worker's, in the listing.
	list, err := w.Trigger(t.Context(), "engine::workers::list", nil)
	if err != nil || !strings.Contains(string(list), `"identity":"worker-7.example"`) {
		t.Fatalf("workers list without the mTLS identity: %s %v", list, err)
	}
	if out, err := w.Trigger(t.Context(), "tls::echo", json.RawMessage(`2`)); err != nil || string(out) != "2" {
		t.Fatalf("call on the connection opened before SIGHUP: %s %v", out, err)
	}
	if err := os.WriteFile(f.cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.signal(t, syscall.SIGHUP)
	poll.CheckFor(t, 10*time.Second, poll.Holds("the failed reload", func() bool { return strings.Contains(e.stderr.String(), "TLS files not reloaded") }))
	if got := serial(t, e.stream, f.clientConfig(false)); got.Cmp(next.Serial) != 0 {
		t.Fatalf("after a broken reload the listener presents %v, want %v", got, next.Serial)
	}
}

// trine gateway serves browsers over TLS and reaches a TLS engine with a
// client certificate.
func TestGatewayTLS(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	e := startEngine(t, trineBin, testEnv(), engineArgs(t, "--nats-addr", "127.0.0.1:0", "--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.clientCAF)...)
	stream, httpAddr := startGateway(t, "--engine", "grpcs://"+e.grpc, "--engine-tls-ca", f.caFile, "--engine-tls-cert", f.clientCert,
		"--engine-tls-key", f.clientKey, "--nats-url", "nats://"+strings.TrimPrefix(e.nats, "embedded,"), "--tls-cert", f.cert, "--tls-key", f.key)
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: f.clientConfig(false)}, Timeout: 10 * time.Second}
	poll.CheckFor(t, 20*time.Second, poll.Holds("the gateway's readiness over TLS", func() bool {
		res, err := https.Get("https://" + strings.TrimPrefix(httpAddr, "http://") + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}))
	req, _ := http.NewRequest(http.MethodGet, "https://"+stream+"/stream/s/g", nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := https.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SSE through the gateway over TLS: %v %v", res, err)
	}
	res.Body.Close()
}

// TLS settings that cannot work are usage errors; files that cannot be
// read fail the start naming the file.
func TestEngineTLSErrors(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tls-cert", f.cert}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-client-ca", f.clientCAF}, 2, "--tls-client-ca needs --tls-cert"},
		{[]string{"--tls-cert", f.cert, "--tls-key", filepath.Join(f.dir, "missing.pem")}, 1, "missing.pem"},
		{[]string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.cert + "x"}, 1, f.cert + "x"},
	} {
		r := runTrine(t, testEnv(), "", engineArgs(t, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
}
