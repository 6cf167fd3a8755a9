package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/poll"
)

// trineBin is the binary under test, built once by TestMain.
var trineBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trine-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	trineBin = filepath.Join(dir, "trine")
	if err := buildTrine(trineBin); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// buildTrine builds this package, with the race detector, into out.
func buildTrine(out string, ldflags ...string) error {
	args := []string{"build", "-race", "-o", out}
	if len(ldflags) > 0 {
		args = append(args, "-ldflags", strings.Join(ldflags, " "))
	}
	cmd := exec.Command("go", append(args, ".")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// Deadlines for the race-enabled binary on a small, busy machine.
const (
	startTimeout = 30 * time.Second
	exitTimeout  = 20 * time.Second
)

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv is the environment of the processes under test: this process's,
// without TRINE_* variables, plus extra ("KEY=value").
func testEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRINE_") {
			env = append(env, kv)
		}
	}
	// Every engine takes a free iii port unless a test says otherwise.
	env = append(env, "TRINE_III_ADDR=127.0.0.1:0")
	return append(env, extra...)
}

// proc is a running trine process.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when the process has exited
	code           int           // exit code, valid after done
}

// startProc starts bin with args and env; the process is killed, if still
// running, when the test ends.
func startProc(t *testing.T, bin string, env []string, stdin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stdout: new(syncBuffer), stderr: new(syncBuffer), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdin = strings.NewReader(stdin)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		defer close(p.done)
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		default:
			p.code = -1
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("trine %s was still running at the end of the test; stderr:\n%s", strings.Join(args, " "), p.stderr)
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.code
	case <-timer.C:
		t.Fatalf("trine %s did not exit within %v; stderr:\n%s", strings.Join(p.cmd.Args[1:], " "), timeout, p.stderr)
		return -1
	}
}

func (p *proc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// result is the outcome of one finished trine command.
type result struct {
	stdout, stderr string
	code           int
}

// runTrine runs the binary under test to completion.
func runTrine(t *testing.T, env []string, stdin string, args ...string) result {
	t.Helper()
	p := startProc(t, trineBin, env, stdin, args...)
	code := p.wait(t, exitTimeout)
	return result{stdout: p.stdout.String(), stderr: p.stderr.String(), code: code}
}

var listeningLine = regexp.MustCompile(`(?m)^trine engine (\S+) listening: grpc=(\S+) http=(\S+) stream=(\S+) iii=(\S+) nats=(\S+)(?: [a-z/0-9-]+=\S+)*$`)

// engineProc is a running `trine engine`.
type engineProc struct {
	*proc
	version            string
	grpc, http, stream string
	iii                string // ADDR or "off"
	nats               string // "embedded[,ADDR]" or the --nats-url
}

// engineArgs returns the arguments of an engine on free loopback ports
// with its data in a temporary directory, followed by extra.
func engineArgs(t *testing.T, extra ...string) []string {
	args := []string{"engine", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0", "--iii-addr", "127.0.0.1:0", "--nats-addr", "off", "--data-dir", filepath.Join(t.TempDir(), "data")}
	return append(args, extra...)
}

// startEngine starts bin with args and waits for its listening line. When
// the test ends, the engine gets SIGTERM and must exit 0.
func startEngine(t *testing.T, bin string, env []string, args ...string) *engineProc {
	t.Helper()
	p := startProc(t, bin, env, "", args...)
	var m []string
	poll.CheckFor(t, startTimeout, poll.Holds("the engine's listening line", func() bool {
		select {
		case <-p.done:
			t.Fatalf("engine exited with code %d before listening; stderr:\n%s", p.code, p.stderr)
		default:
		}
		m = listeningLine.FindStringSubmatch(p.stdout.String())
		return m != nil
	}))
	e := &engineProc{proc: p, version: m[1], grpc: m[2], http: "http://" + m[3], stream: m[4], iii: m[5], nats: m[6]}
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(exitTimeout)
		defer timer.Stop()
		select {
		case <-p.done:
			if p.code != 0 {
				t.Errorf("engine exited with code %d after SIGTERM; stderr:\n%s", p.code, p.stderr)
			}
		case <-timer.C:
			t.Errorf("engine did not exit within %v of SIGTERM; stderr:\n%s", exitTimeout, p.stderr)
		}
	})
	return e
}

// get fetches url and returns the status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return res.StatusCode, string(b)
}

// closedAddr returns a loopback address that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// busyAddr returns a loopback address that the test listens on.
func busyAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// checkOneLine fails the test unless s is exactly one line ending in a newline.
func checkOneLine(t *testing.T, what, s string) {
	t.Helper()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("%s = %q, want exactly one line", what, s)
	}
}
