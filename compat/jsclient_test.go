package compat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/trinehq/trine/internal/enginetest"
)

// jsClient is clients/js, the @trine/client package.
const jsClient = "../clients/js"

// TestJSClient builds @trine/client (esbuild and tsc, pinned in
// clients/js/package-lock.json), fails if its bundle is over budget, and
// runs its node tests (clients/js/tests) against a real engine and a real
// `trine gateway` that the tests can kill and restart through a control
// endpoint served here. `make test` installs the package with npm ci.
func TestJSClient(t *testing.T) {
	node := nodeBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	buildJSClient(t, ctx, node)

	bin := buildTrine(t)
	secret := "0123456789abcdef0123456789abcdef"
	secretFile := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(secretFile, []byte(secret), 0o600))
	// The engine's own stream listener takes tokens; the gateway, which
	// the tests kill and restart, takes anyone. --stream-history is small
	// enough for a test to outrun it; the presence tests wait out a short
	// grace and pass a small member limit.
	a := startEngineWith(t, bin, "--nats-addr", "127.0.0.1:0", "--stream-history", "200", "--stream-jwt-hmac-secret-file", secretFile,
		"--presence-grace", "1s", "--presence-max-members", "3")
	natsAddr, ok := strings.CutPrefix(a.nats, "embedded,")
	if !ok {
		t.Fatalf("no NATS address on the engine's start line: %q", a.nats)
	}
	// A storm's reconnects spread over a few backoff turns: a 500 ms
	// sharing window covers them.
	gw := &gatewayProc{t: t, bin: bin, args: []string{"gateway", "--engine", a.grpc, "--nats-url", "nats://" + natsAddr, "--http-addr", "127.0.0.1:0",
		"--stream-snapshot-coalesce", "500ms"}}
	t.Cleanup(gw.kill)
	must(t, gw.start("127.0.0.1:0"))

	control := httptest.NewServer(gw.control())
	defer control.Close()

	args := []string{"--test", "--test-concurrency=1", "--test-force-exit"}
	if nodeMajor(t, node) < 22 { // Node 20 and 21 have WebSocket behind a flag
		args = append(args, "--experimental-websocket")
	}
	cmd := exec.CommandContext(ctx, node, append(args, "tests/")...)
	cmd.Dir = jsClient
	cmd.Env = append(os.Environ(),
		"TRINE_GATEWAY=ws://"+gw.streamAddr(),
		"TRINE_ENGINE_STREAM=ws://"+a.stream,
		"TRINE_III=ws://"+a.iii,
		"TRINE_CONTROL="+control.URL,
		"TRINE_JWT_SECRET="+secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test tests/: %v\n%s", err, out)
	}
	t.Logf("node --test tests/:\n%s\n%s", diagnostics(string(out)), lastLines(string(out), 12))
}

var summary = regexp.MustCompile(`^(Subtest:|tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) `)

// diagnostics are the lines the tests report with t.diagnostic (figures).
func diagnostics(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(l), "# "); ok && !summary.MatchString(d) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// buildJSClient builds clients/js/dist and fails the test when the bundle
// is over its budget.
func buildJSClient(t *testing.T, ctx context.Context, node string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(jsClient, "node_modules", "esbuild", "package.json")); err != nil {
		t.Fatal("clients/js is not installed: run `npm ci --prefix clients/js` (make test does)")
	}
	build := exec.CommandContext(ctx, node, "scripts/build.mjs", "--size", "--pages")
	build.Dir = jsClient
	out, err := build.CombinedOutput()
	if err != nil {
		t.Fatalf("node scripts/build.mjs --size --pages: %v\n%s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

// TestJSClientInChromium opens pages using the built @trine/client in the
// OS's headless Chromium, served from another origin than the engine.
// share.html, in two tabs with shareAcrossTabs, opens one socket between
// them; when the tab holding it closes, the other takes it over and its
// group goes on without a gap or a duplicate; a third tab that crashes
// (CDP Page.crash) has its group left by the holder within 10 s.
// presence.html, in two tabs of one user with a socket each, shows one
// member with connections 2 in both, down to 1 after one closes (past
// --presence-grace); with shareAcrossTabs, two tabs are one socket: one
// member with connections 1, shown in both.
// strict.html renders a group and its presence with the React hooks under
// StrictMode (mount, unmount, mount again): one socket and one join reach
// the gateway, the page renders its member and a change, and unmounting
// sends one leave.
// client.html, over SSE and over a WebSocket, gets its snapshot, writes
// through client.call and sees the changes in order, and is refused a
// group its token does not allow; then, hidden behind another tab with
// its own timers throttled to once a minute, it finds its frozen
// connection dead within 10 s. The pages report how long changes took
// from their commit to the next animation frame after the page's
// callbacks ran: the engine's /metrics has those samples under the
// stream chat, none refused.
func TestJSClientInChromium(t *testing.T) {
	chromium := chromiumWithPuppeteer(t)
	node := nodeBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	buildJSClient(t, ctx, node)

	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir("browser")))
	mux.Handle("/client/", http.StripPrefix("/client/", http.FileServer(http.Dir(filepath.Join(jsClient, "dist")))))
	page := httptest.NewServer(mux)
	defer page.Close()
	secret := "0123456789abcdef0123456789abcdef"
	secretFile := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(secretFile, []byte(secret), 0o600))
	a := startEngineWith(t, buildTrine(t), "--allowed-origins", page.URL, "--stream-jwt-hmac-secret-file", secretFile, "--presence-grace", "1s")
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "browser", "exp": time.Now().Add(time.Hour).Unix(),
		"streams": []string{"chat/*"}}).SignedString([]byte(secret))
	must(t, err)
	proxy := enginetest.NewProxy(t, a.stream)
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/freeze" {
			proxy.Freeze()
			return
		}
		http.NotFound(w, r)
	}))
	defer control.Close()

	pageURL := func(transport, group string) string {
		q := url.Values{"gw": {proxy.Addr}, "iii": {a.iii}, "token": {token}, "transport": {transport}, "group": {group}}
		return page.URL + "/client.html?" + q.Encode()
	}
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "CONTROL="+control.URL,
		"SSE_PAGE_URL="+pageURL("sse", "over-sse"), "PAGE_URL="+pageURL("websocket", "over-ws"),
		"STRICT_PAGE_URL="+strings.Replace(pageURL("", "strict"), "/client.html?", "/strict.html?", 1),
		"SHARE_PAGE_URL="+strings.Replace(pageURL("", "shared"), "/client.html?", "/share.html?", 1),
		"PRESENCE_PAGE_URL="+strings.Replace(pageURL("", "present"), "/client.html?", "/presence.html?", 1))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, out)
	}
	t.Logf("node client.mjs:\n%s", lastLines(string(out), 8))

	resp, err := http.Get("http://" + a.http + "/metrics")
	must(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(t, err)
	metric := func(series string) float64 {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	// client.html over SSE and over a WebSocket each saw changes of
	// chat; every sample is within the test's time.
	n, sum := metric(`trine_stream_client_latency_seconds_count{stream="chat"}`), metric(`trine_stream_client_latency_seconds_sum{stream="chat"}`)
	if n < 2 || sum < 0 || sum/n > 10 {
		t.Errorf("trine_stream_client_latency_seconds{stream=\"chat\"}: %v samples, sum %v s; want 2 or more, each 0..10 s", n, sum)
	}
	if v := metric("trine_stream_client_latency_refused_total"); v != 0 {
		t.Errorf("trine_stream_client_latency_refused_total = %v, want 0", v)
	}
	t.Logf("commit to render in Chromium: %v samples, mean %.1f ms", n, 1000*sum/n)
}

// nodeBin returns the node binary, failing the test when there is none.
func nodeBin(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the compatibility and client tests need Node.js 20+ (.ci/run installs it)")
	}
	return node
}

func nodeMajor(t *testing.T, node string) int {
	out, err := exec.Command(node, "--version").Output()
	must(t, err)
	major, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".", 2)[0])
	must(t, err)
	return major
}

var gatewayListening = regexp.MustCompile(`(?m)^trine gateway \S+ listening: stream=(\S+) http=(\S+) `)

// gatewayProc is a `trine gateway` process that can be killed (SIGKILL)
// and started again on the same stream address. With line and flags set,
// it is another trine process (an engine): line's submatches are the
// addresses the flags take, kept across restarts.
type gatewayProc struct {
	t     *testing.T
	bin   string
	args  []string
	line  *regexp.Regexp // default gatewayListening
	flags []string       // default --stream-addr

	mu      sync.Mutex
	addr    string   // the stream listener's, kept across restarts
	addrs   []string // every address on the listening line, flags' first
	cmd     *exec.Cmd
	exited  chan struct{}
	proxies map[string]*enginetest.Proxy
}

// start runs the process on addrs (one per flag) and waits for its
// listening line.
func (g *gatewayProc) start(addrs ...string) error {
	line, flags := g.line, g.flags
	if line == nil {
		line, flags = gatewayListening, []string{"--stream-addr"}
	}
	args := slices.Clone(g.args)
	for i, f := range flags {
		args = append(args, f, addrs[i])
	}
	cmd := exec.Command(g.bin, args...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := line.FindStringSubmatch(stdout.String()); m != nil {
			g.mu.Lock()
			g.addr, g.addrs, g.cmd, g.exited = m[1], m[1:], cmd, exited
			g.mu.Unlock()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("gateway exited before listening\nstderr:\n%s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("no gateway listening line within 30s\nstderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *gatewayProc) streamAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// kill stops the gateway with SIGKILL (no close frames) and waits for it.
func (g *gatewayProc) kill() {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.cmd = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// control serves what the node tests ask of the harness:
//
//	POST /gateway/kill, /gateway/start, /gateway/restart
//	POST /gateway/stats  its snapshot and history read counters
//	POST /proxy          a TCP proxy to the gateway (or ?target=host:port): {"addr"}
//	POST /proxy/freeze?addr=A   it drops everything, connections stay open
//	POST /proxy/cut?addr=A      it closes its connections, and takes new ones
func (g *gatewayProc) control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /gateway/kill", func(w http.ResponseWriter, r *http.Request) { g.kill() })
	start := func(w http.ResponseWriter, r *http.Request) {
		if err := g.start(g.streamAddr()); err != nil {
			g.t.Error(err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	}
	mux.HandleFunc("POST /gateway/start", start)
	// The gateway's read counters since it started, from its /metrics.
	mux.HandleFunc("POST /gateway/stats", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		httpAddr := g.addrs[1]
		g.mu.Unlock()
		res, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		stats := map[string]float64{}
		for _, name := range []string{"trine_stream_snapshot_reads_total", "trine_stream_history_reads_total"} {
			if m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(body); m != nil {
				stats[name], _ = strconv.ParseFloat(string(m[1]), 64)
			}
		}
		_ = json.NewEncoder(w).Encode(stats)
	})
	mux.HandleFunc("POST /gateway/restart", func(w http.ResponseWriter, r *http.Request) {
		g.kill()
		start(w, r)
	})
	mux.HandleFunc("POST /proxy", func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("target")
		if target == "" {
			target = g.streamAddr()
		}
		p := enginetest.NewProxy(g.t, target)
		g.mu.Lock()
		if g.proxies == nil {
			g.proxies = map[string]*enginetest.Proxy{}
		}
		g.proxies[p.Addr] = p
		g.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"addr": p.Addr})
	})
	mux.HandleFunc("POST /proxy/{do}", func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		p := g.proxies[r.URL.Query().Get("addr")]
		g.mu.Unlock()
		switch do := r.PathValue("do"); {
		case p == nil:
			http.NotFound(w, r)
		case do == "freeze":
			p.Freeze()
		case do == "cut":
			p.Cut()
		default:
			http.NotFound(w, r)
		}
	})
	return mux
}
