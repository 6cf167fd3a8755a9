package httpinvoke_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/httpinvoke"
	"github.com/trinehq/trine/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func env(k string) (string, bool) {
	v, ok := map[string]string{"HOOK_SECRET": "s3cret", "HOOK_TOKEN": "tok", "EMPTY": ""}[k]
	return v, ok
}

func invoker(t *testing.T, cfg httpinvoke.Config) *httpinvoke.Invoker {
	t.Helper()
	if cfg.AllowedHosts == nil {
		cfg.AllowedHosts = []string{"*"}
	}
	cfg.LookupEnv = env
	inv := httpinvoke.New(cfg)
	t.Cleanup(inv.Close)
	return inv
}

func wantCode(t *testing.T, err error, code engine.Code) {
	t.Helper()
	if e := engine.AsError(err); err == nil || e.Code != code {
		t.Fatalf("got %v, want %s", err, code)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	inv := invoker(t, httpinvoke.Config{AllowedHosts: []string{"*.example.com", "api.test"}, Env: []string{"HOOK_SECRET", "EMPTY", "UNSET"}})
	for _, raw := range []string{
		`{"url":"http://a.example.com/x"}`,
		`{"url":"ftp://a.example.com/x"}`,
		`{"url":"https://user:pw@a.example.com/x"}`,
		`{"url":"https://evil.com/x"}`,
		`{"url":"https://example.com/x"}`,
		`{"url":""}`,
		`{"url":"https://a.example.com/x","method":"TRACE"}`,
		`{"url":"https://a.example.com/x","timeout_ms":0}`,
		`{"url":"https://a.example.com/x","timeout_ms":99999999}`,
		`{"url":"https://a.example.com/x","headers":{"bad header":"v"}}`,
		`{"url":"https://a.example.com/x","headers":{"x-a":"v\r\nx-b: injected"}}`,
		`{"url":"https://a.example.com/x","auth":{"type":"bearer","token_key":"HOME"}}`,
		`{"url":"https://a.example.com/x","auth":{"type":"bearer","token_key":"UNSET"}}`,
		`{"url":"https://a.example.com/x","auth":{"type":"bearer","token_key":"EMPTY"}}`,
		`{"url":"https://a.example.com/x","auth":{"type":"basic"}}`,
		`{"url":"https://a.example.com/x","auth":{"type":"api_key","header":"bad header","value_key":"HOOK_SECRET"}}`,
		`{"url":"https://a.example.com/x","colour":"red"}`,
		`{"url":"https://10.0.0.1/x"}`,
		`[1]`,
	} {
		if _, err := inv.Parse(json.RawMessage(raw)); engine.AsError(err) == nil || engine.AsError(err).Code != codes.InvalidArgument {
			t.Errorf("%s: %v, want invalid_argument", raw, err)
		}
	}
	if _, err := inv.Parse(json.RawMessage(`{"url":"https://a.example.com/x","method":"put","timeout_ms":500,"headers":{"x-a":"1"},"auth":{"type":"hmac","secret_key":"HOOK_SECRET"}}`)); err != nil {
		t.Fatal(err)
	}
	off := invoker(t, httpinvoke.Config{AllowedHosts: []string{}})
	if _, err := off.Parse(json.RawMessage(`{"url":"https://a.example.com/x"}`)); err == nil || !strings.Contains(err.Error(), "off") {
		t.Fatalf("with no hosts allowed: %v", err)
	}
}

// server is a target that records what it got and answers with h.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, chan *http.Request, chan []byte) {
	t.Helper()
	reqs, bodies := make(chan *http.Request, 10), make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs <- r
		bodies <- b
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, reqs, bodies
}

func TestCall(t *testing.T) {
	t.Parallel()
	inv := invoker(t, httpinvoke.Config{AllowHTTP: true, AllowPrivate: true, Env: []string{"HOOK_SECRET", "HOOK_TOKEN"}, MaxResponseBytes: 1024, MaxTimeout: 5 * time.Second})
	answer := map[string]func(w http.ResponseWriter){
		"/ok":      func(w http.ResponseWriter) { w.Write([]byte(`{"sum":3}`)) },
		"/empty":   func(w http.ResponseWriter) { w.WriteHeader(204) },
		"/notjson": func(w http.ResponseWriter) { w.Write([]byte(`hello`)) },
		"/coded": func(w http.ResponseWriter) {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":{"code":"NOPE","message":"bad input"}}`))
		},
		"/500":      func(w http.ResponseWriter) { w.WriteHeader(500); w.Write([]byte(`oops`)) },
		"/big":      func(w http.ResponseWriter) { w.Write([]byte(`"` + strings.Repeat("x", 2000) + `"`)) },
		"/redirect": func(w http.ResponseWriter) { w.Header().Set("Location", "http://127.0.0.1:1/"); w.WriteHeader(302) },
		"/slow":     func(w http.ResponseWriter) { time.Sleep(2 * time.Second); w.Write([]byte(`1`)) },
	}
	srv, reqs, bodies := server(t, func(w http.ResponseWriter, r *http.Request) { answer[r.URL.Path](w) })
	parse := func(raw string) *httpinvoke.Function {
		t.Helper()
		f, err := inv.Parse(json.RawMessage(strings.ReplaceAll(raw, "URL", srv.URL)))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ctx := context.Background()
	f := parse(`{"url":"URL/ok","headers":{"X-Custom":"yes"},"auth":{"type":"hmac","secret_key":"HOOK_SECRET"}}`)
	out, err := inv.Call(ctx, f, "ext::add", "inv-1", []byte(`{"a":1,"b":2}`))
	if err != nil || string(out) != `{"sum":3}` {
		t.Fatalf("ok: %s %v", out, err)
	}
	r, body := <-reqs, <-bodies
	if r.Method != "POST" || string(body) != `{"a":1,"b":2}` || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Custom") != "yes" ||
		r.Header.Get("X-Iii-Function-Path") != "ext::add" || r.Header.Get("X-Iii-Invocation-Id") != "inv-1" {
		t.Fatalf("request %s %v %s", r.Method, r.Header, body)
	}
	if want := httpinvoke.Sign(body, "s3cret", r.Header.Get("X-Iii-Timestamp")); r.Header.Get("X-Iii-Signature") != want || !strings.HasPrefix(want, "sha256=") {
		t.Fatalf("signature %q, want %q", r.Header.Get("X-Iii-Signature"), want)
	}
	f = parse(`{"url":"URL/ok","method":"PUT","auth":{"type":"bearer","token_key":"HOOK_TOKEN"}}`)
	inv.Call(ctx, f, "ext::add", "inv-2", nil)
	if r := <-reqs; r.Method != "PUT" || r.Header.Get("Authorization") != "Bearer tok" || string(<-bodies) != "null" {
		t.Fatalf("bearer request %s %v", r.Method, r.Header)
	}
	f = parse(`{"url":"URL/ok","auth":{"type":"api_key","header":"X-Api-Key","value_key":"HOOK_TOKEN"}}`)
	inv.Call(ctx, f, "ext::add", "inv-3", nil)
	if r := <-reqs; r.Header.Get("X-Api-Key") != "tok" {
		t.Fatalf("api key request %v", r.Header)
	}
	<-bodies
	for _, c := range []struct {
		path string
		code engine.Code
		out  string
	}{
		{"/empty", "", "null"},
		{"/notjson", codes.HandlerError, ""},
		{"/coded", "NOPE", ""},
		{"/500", codes.HandlerError, ""},
		{"/big", codes.MessageTooLarge, ""},
		{"/redirect", codes.HandlerError, ""},
	} {
		out, err := inv.Call(ctx, parse(`{"url":"URL`+c.path+`"}`), "ext::f", "i", nil)
		<-reqs
		<-bodies
		if c.code == "" {
			if err != nil || string(out) != c.out {
				t.Errorf("%s: %s %v", c.path, out, err)
			}
			continue
		}
		if e := engine.AsError(err); err == nil || e.Code != c.code {
			t.Errorf("%s: %v, want %s", c.path, err, c.code)
		}
	}
	start := time.Now()
	_, err = inv.Call(ctx, parse(`{"url":"URL/slow","timeout_ms":200}`), "ext::f", "i", nil)
	wantCode(t, err, codes.DeadlineExceeded)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("timeout_ms 200 took %v", d)
	}
}

// TestNeverTheEngineOrInside: the engine's own listeners are refused on
// every connection, and without AllowPrivate so is every loopback address,
// even behind a name that resolves to it.
func TestNeverTheEngineOrInside(t *testing.T) {
	t.Parallel()
	srv, _, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`1`)) })
	own := netip.MustParseAddrPort(srv.Listener.Addr().String())
	self := invoker(t, httpinvoke.Config{AllowHTTP: true, AllowPrivate: true, Own: []netip.AddrPort{own}})
	if _, err := self.Parse(json.RawMessage(`{"url":"` + srv.URL + `"}`)); err == nil {
		t.Fatal("a URL at the engine's own listener was accepted")
	}
	port := own.Port()
	wild := invoker(t, httpinvoke.Config{AllowHTTP: true, AllowPrivate: true, Own: []netip.AddrPort{netip.AddrPortFrom(netip.IPv4Unspecified(), port)}})
	f, err := wild.Parse(json.RawMessage(`{"url":"http://localhost:` + srv.URL[strings.LastIndex(srv.URL, ":")+1:] + `/"}`))
	if err != nil {
		t.Fatal(err) // a name: checked when dialled
	}
	_, err = wild.Call(context.Background(), f, "ext::f", "i", nil)
	wantCode(t, err, codes.Unavailable)
	public := invoker(t, httpinvoke.Config{AllowHTTP: true})
	if _, err := public.Parse(json.RawMessage(`{"url":"` + srv.URL + `"}`)); err == nil {
		t.Fatal("a loopback address was accepted without AllowPrivate")
	}
	f, err = public.Parse(json.RawMessage(`{"url":"http://localhost:` + srv.URL[strings.LastIndex(srv.URL, ":")+1:] + `/"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := public.Call(context.Background(), f, "ext::f", "i", nil); err == nil || !strings.Contains(err.Error(), "private") {
		t.Fatalf("a name resolving to loopback was dialled: %v", err)
	}
}

// TestUnspecifiedAlwaysRefused: 0.0.0.0 and :: reach the host itself (the
// engine's listeners, its NATS) whatever the flags say, in every spelling:
// refused at registration when written in the URL, and on every
// connection when a name resolves to them.
func TestUnspecifiedAlwaysRefused(t *testing.T) {
	t.Parallel()
	srv, _, _ := server(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`1`)) })
	own := netip.MustParseAddrPort(srv.Listener.Addr().String())
	port := strconv.Itoa(int(own.Port()))
	for _, cfg := range []httpinvoke.Config{
		{AllowHTTP: true, AllowPrivate: true, Own: []netip.AddrPort{own}},
		{AllowHTTP: true, AllowPrivate: true},
		{AllowHTTP: true},
	} {
		inv := invoker(t, cfg)
		for _, host := range []string{"0.0.0.0", "[::]", "[::ffff:0.0.0.0]", "[0:0:0:0:0:0:0:0]", "[::ffff:0:0]",
			"0", "0x0", "0.0", "00.0.0.0", "000.000.000.000", "0x7f.1", "2130706433", "127.1", "0x7f000001"} {
			raw := `{"url":"http://` + host + `:` + port + `/healthz"}`
			if _, err := inv.Parse(json.RawMessage(raw)); err == nil {
				t.Errorf("%+v: %s accepted", cfg, raw)
			} else if e := engine.AsError(err); e.Code != codes.InvalidArgument {
				t.Errorf("%s: %v, want invalid_argument", raw, err)
			}
		}
		for _, addr := range []string{"0.0.0.0:" + port, "[::]:" + port, "[::ffff:0.0.0.0]:" + port, "0.0.0.0:80"} {
			if err := inv.CheckDial("tcp", addr); err == nil || !strings.Contains(err.Error(), "unspecified") {
				t.Errorf("%+v: dialling %s: %v, want refused as unspecified", cfg, addr, err)
			}
		}
	}
}

// TestOwnListenersOnEveryLocalAddress: a listener bound to 0.0.0.0 or ::
// answers on every local address, so each of them is the engine itself on
// that port; an address elsewhere on the same port is not.
func TestOwnListenersOnEveryLocalAddress(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	port := netip.MustParseAddrPort(lis.Addr().String()).Port()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1")}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && !ip.Unmap().IsLinkLocalUnicast() {
				local = append(local, ip.Unmap())
			}
		}
	}
	for _, wildcard := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		inv := invoker(t, httpinvoke.Config{AllowHTTP: true, AllowPrivate: true, Own: []netip.AddrPort{netip.AddrPortFrom(wildcard, port)}})
		for _, ip := range local {
			if err := inv.CheckDial("tcp", netip.AddrPortFrom(ip, port).String()); err == nil || !strings.Contains(err.Error(), "own listeners") {
				t.Errorf("own %s:%d: dialling %s: %v, want refused as the engine's own", wildcard, port, netip.AddrPortFrom(ip, port), err)
			}
			if err := inv.CheckDial("tcp", netip.AddrPortFrom(ip, port+1).String()); err != nil {
				t.Errorf("own %s:%d: dialling another port, %s: %v", wildcard, port, netip.AddrPortFrom(ip, port+1), err)
			}
		}
		// Another host on the same port is not the engine.
		for _, far := range []string{"192.0.2.1", "[2001:db8::1]"} {
			if err := inv.CheckDial("tcp", far+":"+strconv.Itoa(int(port))); err != nil {
				t.Errorf("own %s:%d: dialling %s on the same port: %v", wildcard, port, far, err)
			}
		}
	}
}

// rawServer answers every connection with answer, whatever it was sent,
// then closes it.
func rawServer(t *testing.T, answer string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Read(make([]byte, 4096))
				c.Write([]byte(answer))
			}()
		}
	}()
	return lis.Addr().String()
}

// TestUpstreamBytesNeverInErrors: whatever a target that fails sends back
// (a NATS INFO line, a malformed status line or header, a broken chunk, a
// non-TLS answer to TLS), the error says what happened in Trine's words
// and repeats none of it.
func TestUpstreamBytesNeverInErrors(t *testing.T) {
	t.Parallel()
	const secret = "SECRET-7f3a"
	inv := invoker(t, httpinvoke.Config{AllowHTTP: true, AllowPrivate: true, MaxTimeout: 5 * time.Second})
	check := func(url string, leaks ...string) {
		t.Helper()
		f, err := inv.Parse(json.RawMessage(`{"url":"` + url + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		_, err = inv.Call(context.Background(), f, "ext::f", "i", nil)
		if err == nil {
			t.Fatalf("%s: no error", url)
		}
		for _, s := range append(leaks, secret) {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: the error repeats %q from the upstream: %v", url, s, err)
			}
		}
		if e := engine.AsError(err); e.Code != codes.Unavailable {
			t.Errorf("%s: %v, want unavailable", url, err)
		}
	}
	for _, answer := range []string{
		`INFO {"server_id":"` + secret + `","version":"2.11.0"}` + "\r\n",
		"HTTP/1.1 2x0 " + secret + "\r\n\r\n",
		secret + " 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + secret + "\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + secret + "\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n\"" + secret,
	} {
		addr := rawServer(t, answer)
		check("http://" + addr + "/")
		check("https://" + addr + "/")
	}
	// A real NATS server, the engine's own kind of neighbour.
	ns := natstest.Start(t)
	nats := ns.Addr().String()
	check("http://"+nats+"/", "INFO", ns.ID(), "server_id")
	// Listed as the engine's own, it is refused before any byte is read.
	own := invoker(t, httpinvoke.Config{AllowHTTP: true, AllowPrivate: true, Own: []netip.AddrPort{netip.MustParseAddrPort(nats)}})
	for _, u := range []string{"http://" + nats + "/", "http://0.0.0.0:" + nats[strings.LastIndex(nats, ":")+1:] + "/"} {
		if _, err := own.Parse(json.RawMessage(`{"url":"` + u + `"}`)); err == nil || strings.Contains(err.Error(), "INFO") {
			t.Errorf("%s: %v, want refused", u, err)
		}
	}
	f, err := own.Parse(json.RawMessage(`{"url":"http://localhost:` + nats[strings.LastIndex(nats, ":")+1:] + `/"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := own.Call(context.Background(), f, "ext::f", "i", nil); err == nil || !strings.Contains(err.Error(), "own listeners") || strings.Contains(err.Error(), "INFO") {
		t.Fatalf("localhost:<nats port>: %v, want refused as the engine's own", err)
	}
}

// TestDripPastTimeout: an answer whose headers come at once but whose body
// drips past timeout_ms fails with deadline_exceeded, at the deadline.
func TestDripPastTimeout(t *testing.T) {
	t.Parallel()
	srv, _, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range 500 {
			w.Write([]byte(" "))
			w.(http.Flusher).Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	})
	inv := invoker(t, httpinvoke.Config{AllowHTTP: true, AllowPrivate: true, MaxTimeout: 5 * time.Second})
	f, err := inv.Parse(json.RawMessage(`{"url":"` + srv.URL + `/drip","timeout_ms":300}`))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = inv.Call(context.Background(), f, "ext::f", "i", nil)
	wantCode(t, err, codes.DeadlineExceeded)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout_ms 300 took %v", d)
	}
}
