package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
)

// Command is a server process for Start.
type Command struct {
	Name string   // in messages: "trine", "gateway 1", "nats n1" …
	Path string   // the binary
	Args []string // its arguments
	Env  []string // added to its environment: this process's, without TRINE_* variables
	// Listening matches the line the process prints on stdout once it
	// listens; Start returns its submatches.
	Listening *regexp.Regexp
	// Ready, for a process that prints no such line (Listening nil), is
	// polled until it returns nil: the process listens.
	Ready func() error
	// StdinPipe gives the process a pipe as stdin, closed by Stop: a
	// server that exits at the end of its stdin then also goes when the
	// bench dies without stopping it (besides Pdeathsig).
	StdinPipe bool
	// SignalExitOK makes Stop count a death by a signal (a server with no
	// handler for SIGTERM) as a clean exit.
	SignalExitOK bool
	// Infra marks a process that others use (a NATS node): StopAll stops
	// it after every other process.
	Infra bool
}

// Process is one server process under test, started by Start.
type Process struct {
	Name string
	PID  int

	cmd          *exec.Cmd
	stdin        io.Closer // nil without Command.StdinPipe
	signalExitOK bool
	infra        bool
	stderr       *headBuffer
	done         chan struct{} // closed when the process has exited
	err          error         // Wait's error, valid after done
}

// running holds every started process, so that any exit path can stop
// them.
var (
	runningMu sync.Mutex
	running   = map[*Process]struct{}{}
)

// Start starts c and waits until it prints its listening line, whose
// submatches it returns. The process is in its own process group, so a
// terminal's ^C reaches only the bench, which then stops the servers; it
// gets SIGKILL if the bench dies without doing so.
func Start(c Command) (*Process, []string, error) {
	cmd := exec.Command(c.Path, c.Args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(serverEnv(), c.Env...)
	p := &Process{Name: c.Name, cmd: cmd, signalExitOK: c.SignalExitOK, infra: c.Infra,
		stderr: &headBuffer{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if c.StdinPipe {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, nil, err
		}
		p.stdin = stdin
	}
	runningMu.Lock()
	if err := cmd.Start(); err != nil {
		runningMu.Unlock()
		return nil, nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	running[p] = struct{}{}
	runningMu.Unlock()
	p.PID = cmd.Process.Pid

	lines := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		found := false
		var seen []string
		for sc.Scan() {
			if found || c.Listening == nil {
				continue
			}
			if m := c.Listening.FindStringSubmatch(sc.Text()); m != nil {
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
	if c.Listening == nil {
		go func() {
			for {
				select {
				case <-p.done:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if c.Ready() == nil {
					lines <- nil
					return
				}
			}
		}()
	}
	select {
	case m := <-lines:
		return p, m, nil
	case <-p.done:
		p.forget()
		return nil, nil, fmt.Errorf("%s exited before listening (%v); stderr:\n%s", c.Name, p.err, p.stderr)
	case <-timer.C:
		_ = p.Stop()
		return nil, nil, fmt.Errorf("%s did not listen within %v; stderr:\n%s", c.Name, startTimeout, p.stderr)
	}
}

// serverEnv is the environment of the servers: this process's, without
// TRINE_* variables that could change their configuration.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRINE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process exited (exec.Cmd.Wait's error), once Done is
// closed.
func (p *Process) Err() error { return p.err }

// Stderr is the start of what the process wrote to stderr (16 KiB at
// most).
func (p *Process) Stderr() string { return p.stderr.String() }

func (p *Process) forget() {
	runningMu.Lock()
	delete(running, p)
	runningMu.Unlock()
}

// Stop sends SIGTERM (and closes the stdin pipe), waits, then SIGKILLs. It
// reports an unclean exit.
func (p *Process) Stop() error {
	defer p.forget()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not exit within %v of SIGTERM: killed", p.Name, p.PID, stopTimeout)
	}
	if p.err != nil {
		var ee *exec.ExitError
		if p.signalExitOK && errors.As(p.err, &ee) && ee.ExitCode() == -1 {
			return nil // killed by the signal itself: no handler, still clean for us
		}
		return fmt.Errorf("%s exited: %v; stderr:\n%s", p.Name, p.err, p.stderr)
	}
	return nil
}

// StopAll stops every process still running, in parallel: first those
// that are not Command.Infra, then the others.
func StopAll() {
	for _, infra := range []bool{false, true} {
		runningMu.Lock()
		var all []*Process
		for p := range running {
			if p.infra == infra {
				all = append(all, p)
			}
		}
		runningMu.Unlock()
		var wg sync.WaitGroup
		for _, p := range all {
			wg.Go(func() { _ = p.Stop() })
		}
		wg.Wait()
	}
}

// Exit stops every process still running, calls cleanup and exits with
// code.
func Exit(code int, cleanup func()) {
	StopAll()
	cleanup()
	os.Exit(code)
}

// ExitOnSignal makes a SIGINT or SIGTERM print "\n<prog>: <signal>:
// stopping servers" to stderr and Exit(130, cleanup).
func ExitOnSignal(prog string, cleanup func()) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigc
		fmt.Fprintf(os.Stderr, "\n%s: %v: stopping servers\n", prog, s)
		Exit(130, cleanup)
	}()
}

// BuildTrine builds ./cmd/trine of the module of the working directory
// into out.
func BuildTrine(out string) error {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %v", err)
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/trine")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(b)))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/trine: %v\n%s", err, b)
	}
	return nil
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

// TrineBinaries returns the engine binaries of a -trine-bin flag (a
// comma-separated list), or, if it is empty, builds ./cmd/trine into dir
// and returns that one.
func TrineBinaries(flag, dir string) ([]string, error) {
	if flag != "" {
		return strings.Split(flag, ","), nil
	}
	bin := filepath.Join(dir, "trine")
	if err := BuildTrine(bin); err != nil {
		return nil, err
	}
	return []string{bin}, nil
}

// WaitStopped returns when a server process started with
// Command.StdinPipe should stop: its stdin ended, or it got SIGTERM or
// SIGINT.
func WaitStopped() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-sig:
	case <-eof:
	}
}
