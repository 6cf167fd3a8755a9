package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
	clockTick    = 10 * time.Millisecond // USER_HZ is 100 on Linux
)

// proc is one server process under test: `trine engine`, `trine
// gateway`, or a NATS node (this program run as one, see natsnode.go).
type proc struct {
	name   string // "engine", "gateway 1", "nats n1" …
	infra  bool   // a NATS node: stopped after every other process
	cmd    *exec.Cmd
	pid    int
	grpc   string // engine: the gRPC listener
	stream string // the browser listener (host:port)
	http   string // health and metrics (host:port)
	nats   string // engine: the embedded NATS server's address for other processes
	stderr *headBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's error, valid after done
}

// running holds every started process, so that any exit path can stop
// them.
var (
	runningMu sync.Mutex
	running   = map[*proc]struct{}{}
)

var (
	engineListening  = regexp.MustCompile(`^trine engine (\S+) listening: grpc=(\S+) http=(\S+) stream=(\S+) nats=embedded,(\S+)$`)
	gatewayListening = regexp.MustCompile(`^trine gateway (\S+) listening: stream=(\S+) http=(\S+) engine=(\S+) nats=(\S+)$`)
)

// startEngine runs `trine engine --store memory` on free loopback ports,
// its embedded NATS server accepting other processes on a free port too.
func startEngine(env *benchEnv, dataDir string) (*proc, error) {
	p, m, err := startProc(env, "engine", engineListening, nil,
		"engine", "--store", "memory", "--data-dir", dataDir,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0",
		"--nats-addr", "127.0.0.1:0", "--log-level", "warn",
		"--stream-queue-messages", strconv.Itoa(env.queueMessages))
	if err != nil {
		return nil, err
	}
	p.grpc, p.http, p.stream, p.nats = m[2], m[3], m[4], m[5]
	return p, nil
}

// startGateway runs `trine gateway` against engine e (its gRPC listener
// and its NATS server) and waits until its /readyz answers 200.
func startGateway(env *benchEnv, name string, e *proc) (*proc, error) {
	var extraEnv []string
	if env.gatewayProcs > 0 {
		extraEnv = append(extraEnv, "GOMAXPROCS="+strconv.Itoa(env.gatewayProcs))
	}
	p, m, err := startProc(env, name, gatewayListening, extraEnv,
		"gateway", "--engine", e.grpc, "--nats-url", "nats://"+e.nats,
		"--stream-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "warn",
		"--stream-queue-messages", strconv.Itoa(env.queueMessages))
	if err != nil {
		return nil, err
	}
	p.stream, p.http = m[2], m[3]
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			p.forget()
			return nil, fmt.Errorf("%s exited before it was ready (%v); stderr:\n%s", name, p.err, p.stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.stop()
			return nil, fmt.Errorf("%s not ready within %v (last: %v); stderr:\n%s", name, startTimeout, err, p.stderr)
		}
	}
}

// startProc starts the trine binary with args and waits for the stdout
// line matching re. extraEnv is added to its environment.
func startProc(env *benchEnv, name string, re *regexp.Regexp, extraEnv []string, args ...string) (*proc, []string, error) {
	return startBin(env.trineBin, name, re, extraEnv, args...)
}

// startBin starts bin with args and waits for the stdout line matching re.
func startBin(bin, name string, re *regexp.Regexp, extraEnv []string, args ...string) (*proc, []string, error) {
	cmd := exec.Command(bin, args...)
	// Own process group, so a terminal's ^C reaches only the bench, which
	// then stops the servers; SIGKILL if the bench dies without doing so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(benchServerEnv(), extraEnv...)
	p := &proc{name: name, cmd: cmd, stderr: &headBuffer{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	runningMu.Lock()
	if err := cmd.Start(); err != nil {
		runningMu.Unlock()
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	running[p] = struct{}{}
	runningMu.Unlock()
	p.pid = cmd.Process.Pid

	lines := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		var seen []string
		for sc.Scan() {
			if found {
				continue
			}
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found = true
				lines <- m
			} else if len(seen) < 5 {
				seen = append(seen, sc.Text())
			}
		}
		if !found && len(seen) > 0 {
			fmt.Fprintf(p.stderr, "[stdout without a listening line the bench understands: %q]\n", seen)
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case m := <-lines:
		return p, m, nil
	case <-p.done:
		p.forget()
		return nil, nil, fmt.Errorf("%s exited before listening (%v); stderr:\n%s", name, p.err, p.stderr)
	case <-timer.C:
		_ = p.stop()
		return nil, nil, fmt.Errorf("%s did not listen within %v; stderr:\n%s", name, startTimeout, p.stderr)
	}
}

// benchServerEnv is the environment of the servers: this process's, without
// TRINE_* variables that could change their configuration.
func benchServerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRINE_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) forget() {
	runningMu.Lock()
	delete(running, p)
	runningMu.Unlock()
}

// stop sends SIGTERM, waits, then SIGKILLs. It reports an unclean exit.
func (p *proc) stop() error {
	defer p.forget()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM: killed", p.name, p.pid, stopTimeout)
	}
	if p.err != nil {
		return fmt.Errorf("%s exited: %v; stderr:\n%s", p.name, p.err, p.stderr)
	}
	return nil
}

// stopProcs stops ps, gateways before the engine they depend on.
func stopProcs(ps []*proc) error {
	var errs []error
	for i := len(ps) - 1; i >= 0; i-- {
		errs = append(errs, ps[i].stop())
	}
	return errors.Join(errs...)
}

// stopAll stops every process still running: the engines and gateways,
// then the NATS nodes they use.
func stopAll() {
	for _, infra := range []bool{false, true} {
		runningMu.Lock()
		var all []*proc
		for p := range running {
			if p.infra == infra {
				all = append(all, p)
			}
		}
		runningMu.Unlock()
		var wg sync.WaitGroup
		for _, p := range all {
			wg.Go(func() { _ = p.stop() })
		}
		wg.Wait()
	}
}

// The /proc readers below are bench/fanout/procs.go's.

// cpuTime is the process's user+system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may contain spaces: fields after its
	// closing parenthesis start at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// writeCalls is the number of write-like system calls (write, writev,
// sendmsg …) the process has made, from /proc/<pid>/io.
func writeCalls(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "syscw:"); ok {
			return strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no syscw", pid)
}

// machineBusy is the CPU time all CPUs spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *headBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - t.b.Len(); room > 0 {
		t.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (t *headBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
