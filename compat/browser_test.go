package compat_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestBrowser runs compat/browser/page.html in the OS's headless Chromium
// (puppeteer-core, pinned in compat/browser/package-lock.json), served
// from another origin than the engine's stream gateway: a cross-origin
// EventSource with a JWT gets its sync and live events, a WebSocket with
// the token joins what its streams claim allows and is refused the rest,
// and an EventSource without a token gets nothing.
func TestBrowser(t *testing.T) {
	chromium := chromiumWithPuppeteer(t)
	node := nodeWithSDK(t)

	page := httptest.NewServer(http.FileServer(http.Dir("browser")))
	defer page.Close()
	secret := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600))
	a := startEngineWith(t, buildTrine(t), "--allowed-origins", page.URL, "--stream-jwt-hmac-secret-file", secret)
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "browser", "exp": time.Now().Add(time.Hour).Unix(),
		"streams": []string{"chat/*"}}).SignedString([]byte("0123456789abcdef0123456789abcdef"))
	must(t, err)

	// A writer keeps the group changing, so the page sees live events.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := trine.RegisterWorker(a.grpc, trine.WithName("browser-writer"))
	defer w.Close()
	must(t, w.Connect(ctx))
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for i := 0; wctx.Err() == nil; i++ {
			in, _ := json.Marshal(map[string]any{"stream_name": "chat", "group_id": "room", "item_id": "m", "data": i})
			_, _ = w.Trigger(wctx, "stream::set", json.RawMessage(in))
			time.Sleep(200 * time.Millisecond)
		}
	}()

	q := url.Values{"gw": {a.stream}, "token": {token}}
	cmd := exec.CommandContext(ctx, node, "test.mjs")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "PAGE_URL="+page.URL+"/page.html?"+q.Encode())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node test.mjs: %v\n%s", err, out)
	}
	t.Logf("node test.mjs:\n%s", lastLines(string(out), 8))
}

// chromiumWithPuppeteer returns the OS's chromium, failing the test when
// it or the pinned puppeteer-core is missing.
func chromiumWithPuppeteer(t *testing.T) string {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: the browser tests need Debian's chromium (.ci/run installs it)")
	}
	if _, err := os.Stat(filepath.Join("browser", "node_modules", "puppeteer-core", "package.json")); err != nil {
		t.Fatal("puppeteer-core is not installed: run `npm ci --prefix compat/browser` (make test does)")
	}
	return chromium
}
