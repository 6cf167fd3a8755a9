package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
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

// Server kinds.
const (
	kindTrine    = "trine"
	kindNaive    = "naive"
	kindCoalesce = "coalesce"
)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
	clockTick    = 10 * time.Millisecond // USER_HZ is 100 on Linux
)

// server is one server process under test.
type server struct {
	kind   string
	cmd    *exec.Cmd
	pid    int
	stream string // host:port of the WebSocket listener
	grpc   string // trine only
	stdin  io.Closer
	stderr *headBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's error, valid after done
}

// running holds every started process, so that any exit path can stop
// them.
var (
	runningMu sync.Mutex
	running   = map[*server]struct{}{}
)

var (
	// Later versions append more listeners (" nats=…") to the line.
	trineListening    = regexp.MustCompile(`^trine engine (\S+) listening: grpc=(\S+) http=(\S+) stream=(\S+)(?: .*)?$`)
	baselineListening = regexp.MustCompile(`^listening (\S+)$`)
)

// startServer starts a server of the given kind on free loopback ports and
// waits until it listens.
// With profile set, trine is this binary serving the same components in
// process with a CPU profile written to profile.
func startServer(kind string, env *benchEnv, dataDir, profile string) (*server, error) {
	var cmd *exec.Cmd
	var re *regexp.Regexp
	switch kind {
	case kindTrine:
		if profile != "" {
			cmd = exec.Command(env.self, "-serve", kindTrine, "-cpuprofile", profile, "-queue", strconv.Itoa(env.queueMessages))
			re = trineListening
			break
		}
		args := []string{"engine", "--store", "memory",
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0",
			"--data-dir", dataDir, "--log-level", "warn",
			"--stream-queue-messages", strconv.Itoa(env.queueMessages)}
		cmd = exec.Command(env.trineBin, append(args, env.trineExtra...)...)
		re = trineListening
	case kindNaive, kindCoalesce:
		cmd = exec.Command(env.self, "-serve", kind, "-addr", "127.0.0.1:0", "-queue", strconv.Itoa(env.queueMessages), "-cpuprofile", profile)
		re = baselineListening
	default:
		return nil, fmt.Errorf("unknown server %q", kind)
	}
	// Own process group, so a terminal's ^C reaches only the bench, which
	// then stops the servers; SIGKILL if the bench dies without doing so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = benchServerEnv()
	s := &server{kind: kind, cmd: cmd, stderr: &headBuffer{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// The baselines exit when their stdin closes: a second guard against
	// leftovers besides Pdeathsig.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	s.stdin = stdin
	runningMu.Lock()
	if err := cmd.Start(); err != nil {
		runningMu.Unlock()
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}
	running[s] = struct{}{}
	runningMu.Unlock()
	s.pid = cmd.Process.Pid

	lines := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && !found {
				found = true
				lines <- m
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case m := <-lines:
		if kind == kindTrine {
			s.grpc, s.stream = m[2], m[4]
		} else {
			s.stream = m[1]
		}
		return s, nil
	case <-s.done:
		s.forget()
		return nil, fmt.Errorf("%s exited before listening (%v); stderr:\n%s", kind, s.err, s.stderr)
	case <-timer.C:
		s.stop()
		return nil, fmt.Errorf("%s did not listen within %v; stderr:\n%s", kind, startTimeout, s.stderr)
	}
}

// trineExtraArgs returns flags that the built engine has and the bench
// needs set: --nats-addr off keeps the embedded NATS server in-process (its
// default would listen on 127.0.0.1:4222, which a second engine could not).
func trineExtraArgs(bin string) ([]string, error) {
	out, err := exec.Command(bin, "engine", "--help").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s engine --help: %v\n%s", bin, err, out)
	}
	var extra []string
	if bytes.Contains(out, []byte("--nats-addr")) {
		extra = append(extra, "--nats-addr", "off")
	}
	return extra, nil
}

// benchServerEnv is the environment of the servers: this process's, without
// TRINE_* variables that could change the engine's configuration.
func benchServerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRINE_") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *server) forget() {
	runningMu.Lock()
	delete(running, s)
	runningMu.Unlock()
}

// stop sends SIGTERM, waits, then SIGKILLs. It reports an unclean exit.
func (s *server) stop() error {
	defer s.forget()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.stdin.Close()
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM: killed", s.kind, s.pid, stopTimeout)
	}
	if s.err != nil {
		var ee *exec.ExitError
		if errors.As(s.err, &ee) && ee.ExitCode() == -1 {
			return nil // killed by the signal itself: no handler, still clean for us
		}
		return fmt.Errorf("%s exited: %v; stderr:\n%s", s.kind, s.err, s.stderr)
	}
	return nil
}

// stopAll stops every server still running.
func stopAll() {
	runningMu.Lock()
	all := make([]*server, 0, len(running))
	for s := range running {
		all = append(all, s)
	}
	runningMu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() { _ = s.stop() })
	}
	wg.Wait()
}

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

// rssKiB is VmRSS from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
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
