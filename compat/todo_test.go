package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	trine "github.com/trinehq/trine/worker-sdk"
)

var todoListening = regexp.MustCompile(`(?m)^todo: open (http://\S+)/$`)

// TestTodoExample runs examples/todo as a user does (its one command,
// against an engine with the default browser settings: no
// --allowed-origins, the page on a loopback port) and drives it in the
// OS's headless Chromium with two windows (compat/browser/todo.mjs):
//   - 200 todos added through one window's form show in the other; the
//     delay from the submit to the other window's drawing must be under
//     100 ms at p99 (the CPU is shared with other tests: a round that
//     misses is run once more, and both are reported);
//   - then, the first window closed, 1,000 writes/s through todos::add
//     for 3 s (served by the control endpoint below) reach the second
//     window alone, which measures commit-to-render itself: each change
//     carries the time todos::add wrote it, and the page draws once per
//     animation frame. It must keep up: the last write is drawn within
//     2 s of the load's end;
//   - the README's browser snippet, as written but for the engine's
//     addresses, runs in a page of another loopback origin: it logs its
//     snapshot and its own write, which the example's window shows too,
//     and its presence: one (anonymous) member; opened in a second tab
//     of the same window (shareAcrossTabs: one socket), the same one
//     member shows in both tabs ("two tabs, one member").
//     The addresses it names are the engine's defaults, as are the
//     example's.
//
// TODO_SCREENSHOT=file.png saves what the second window shows.
func TestTodoExample(t *testing.T) {
	chromium := chromiumWithPuppeteer(t)
	node := nodeBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// As `make run`: embedded NATS, and no browser settings.
	trineBin := buildTrine(t)
	a := startEngineWith(t, trineBin, "--nats-addr", "127.0.0.1:0")
	bin := filepath.Join(t.TempDir(), "todo")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/todo").CombinedOutput(); err != nil {
		t.Fatalf("go build ../examples/todo: %v\n%s", err, out)
	}
	pageURL := startTodo(t, bin, "-engine", a.grpc, "-stream", "http://"+a.stream, "-iii", "ws://"+a.iii, "-addr", "127.0.0.1:0")
	readme := readmePage(t, trineBin, bin, pageURL, a)
	defer readme.Close()

	w := trine.RegisterWorker(a.grpc, trine.WithName("todo-load"))
	defer w.Close()
	must(t, w.Connect(ctx))
	control := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/load" {
			http.NotFound(rw, r)
			return
		}
		res, err := todoLoad(r.Context(), w, 1000, 3*time.Second)
		if err != nil {
			t.Error(err)
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(rw).Encode(res)
	}))
	defer control.Close()

	cmd := exec.CommandContext(ctx, node, "todo.mjs")
	cmd.Dir = "browser"
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "PAGE_URL="+pageURL, "CONTROL="+control.URL,
		"SCREENSHOT="+os.Getenv("TODO_SCREENSHOT"), "README_URL="+readme.URL+"/live.html")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node todo.mjs: %v\n%s", err, out)
	}
	t.Logf("node todo.mjs:\n%s", out)
}

// startTodo runs the example until the test ends and returns the page's
// URL from its start line.
func startTodo(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	must(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := todoListening.FindStringSubmatch(stdout.String()); m != nil {
			return m[1] + "/"
		}
		select {
		case <-exited:
			t.Fatalf("the example exited before serving its page\nstderr:\n%s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no start line from the example within 30s\nstderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// todoLoad calls todos::add rate times a second for d, over 50 todos
// (load-0 … load-49), in bursts of rate/100 every 10 ms, and returns how
// many were sent and the highest seq their results name.
func todoLoad(ctx context.Context, w *trine.Worker, rate int, d time.Duration) (map[string]any, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var (
		wg      sync.WaitGroup
		maxSeq  atomic.Uint64
		failed  atomic.Int64
		firstEr atomic.Value
	)
	n, per := 0, rate/100
	start := time.Now()
	for time.Since(start) < d {
		for range per {
			in, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("load-%d", n%50), "title": fmt.Sprintf("load %d", n)})
			n++
			wg.Go(func() {
				out, err := w.Trigger(ctx, "todos::add", json.RawMessage(in))
				var res struct{ Seq uint64 }
				if err == nil {
					err = json.Unmarshal(out, &res)
				}
				if err != nil {
					failed.Add(1)
					firstEr.CompareAndSwap(nil, err.Error())
					return
				}
				for s := maxSeq.Load(); res.Seq > s && !maxSeq.CompareAndSwap(s, res.Seq); s = maxSeq.Load() {
				}
			})
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		return nil, fmt.Errorf("%d of %d todos::add calls failed, the first: %v", f, n, firstEr.Load())
	}
	return map[string]any{"sent": n, "seconds": elapsed.Seconds(), "lastSeq": maxSeq.Load(), "end": float64(time.Now().UnixMicro()) / 1000}, nil
}

// readmePage checks that the README's browser snippet (its html block)
// names the engine's default stream and iii listeners, as the example's
// flags do, and serves it at /live.html with those addresses replaced by
// a's, and the client the example bundles at ./clients/js/dist/index.js,
// on a loopback port of its own.
func readmePage(t *testing.T, trineBin, todoBin, pageURL string, a engineAddrs) *httptest.Server {
	t.Helper()
	doc, err := os.ReadFile("../README.md")
	must(t, err)
	blocks := regexp.MustCompile("(?s)```html\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) != 1 {
		t.Fatalf("the README has %d html blocks, want the one browser snippet", len(blocks))
	}
	snippet := string(blocks[0][1])
	const streamAddr, iiiAddr = "127.0.0.1:3112", "127.0.0.1:49135"
	for _, want := range []string{"'http://" + streamAddr + "'", "'ws://" + iiiAddr + "'", "from './clients/js/dist/index.js'"} {
		if !strings.Contains(snippet, want) {
			t.Fatalf("the README's browser snippet does not name %s:\n%s", want, snippet)
		}
	}
	help, _ := exec.Command(trineBin, "engine", "--help").CombinedOutput()
	todoHelp, _ := exec.Command(todoBin, "-help").CombinedOutput()
	for _, want := range []struct {
		help []byte
		text string
	}{
		{help, "yaml stream_addr, default " + streamAddr}, {help, "yaml iii_addr, default " + iiiAddr},
		{todoHelp, `(default "http://` + streamAddr + `")`}, {todoHelp, `(default "ws://` + iiiAddr + `")`},
	} {
		if !bytes.Contains(want.help, []byte(want.text)) {
			t.Errorf("not in --help: %s", want.text)
		}
	}
	snippet = strings.NewReplacer(streamAddr, a.stream, iiiAddr, a.iii).Replace(snippet)

	res, err := http.Get(pageURL + "trine-client.js")
	must(t, err)
	bundle, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	must(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, snippet)
	})
	mux.HandleFunc("GET /clients/js/dist/index.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		_, _ = w.Write(bundle)
	})
	return httptest.NewServer(mux)
}
