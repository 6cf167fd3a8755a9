package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
)

var (
	// Later versions append more listeners to the line.
	trineListening    = regexp.MustCompile(`^trine engine (\S+) listening: grpc=\S+ http=\S+ stream=\S+ iii=(\S+)(?: .*)?$`)
	baselineListening = regexp.MustCompile(`^listening (\S+)$`)
)

// startTrine starts an engine with its iii listener in its own process: the
// binary bin (`trine engine --store memory`), or, with profile set, this
// binary serving the engine and iiiserver in process, CPU-profiled into
// profile. It returns the iii URL.
func startTrine(name, bin, self, dataDir, profile string) (*loadgen.Process, string, error) {
	c := loadgen.Command{Name: name, Path: bin, Listening: trineListening, StdinPipe: true, SignalExitOK: true,
		Args: []string{"engine", "--store", "memory",
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0",
			"--iii-addr", "127.0.0.1:0", "--nats-addr", "off", "--console", "off",
			"--data-dir", dataDir, "--log-level", "warn"}}
	if profile != "" {
		c.Path, c.Args = self, []string{"-serve", "trine", "-cpuprofile", profile}
	}
	p, m, err := loadgen.Start(c)
	if err != nil {
		return nil, "", err
	}
	return p, "ws://" + m[2] + "/", nil
}

// startBaselineProcess starts this binary as the one-hop echo server, in
// its own process.
func startBaselineProcess(self string) (*loadgen.Process, string, error) {
	p, m, err := loadgen.Start(loadgen.Command{Name: "baseline", Path: self, Args: []string{"-serve", "baseline"},
		Listening: baselineListening, StdinPipe: true, SignalExitOK: true})
	if err != nil {
		return nil, "", err
	}
	return p, m[1], nil
}

// serve runs a server process (-serve): "baseline", the one-hop echo, or
// "trine", an engine serving iii's protocol as the engine binary does,
// CPU-profiled into profile. It prints its listening line and runs until
// its stdin ends or it gets SIGTERM.
func serve(kind, profile string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "iii "+kind+":", err)
		return 1
	}
	var stop func()
	switch kind {
	case "baseline":
		b, err := startBaseline()
		if err != nil {
			return fail(err)
		}
		stop = b.close
		fmt.Printf("listening %s\n", b.url)
	case "trine":
		if profile == "" {
			return fail(errors.New("-serve trine needs -cpuprofile"))
		}
		stopProfile, err := loadgen.StartProfile(profile)
		if err != nil {
			return fail(err)
		}
		s, err := startEngine()
		if err != nil {
			stopProfile()
			return fail(err)
		}
		stop = func() { s.close(); stopProfile() }
		fmt.Printf("trine engine profiled listening: grpc=- http=- stream=- iii=%s\n", s.addr)
	default:
		return fail(errors.New("unknown server"))
	}
	loadgen.WaitStopped()
	stop()
	return 0
}

// inProcess is an engine serving iii's worker protocol with iiiserver on a
// loopback listener (-serve trine).
type inProcess struct {
	e    *engine.Engine
	srv  *iiiserver.Server
	hs   *http.Server
	addr string

	stopEngine context.CancelFunc
	ran        chan struct{} // engine Run returned
	served     chan struct{} // hs.Serve returned
}

func startEngine() (*inProcess, error) {
	e, err := engine.New(engine.Config{})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &inProcess{e: e, stopEngine: cancel, ran: make(chan struct{}), served: make(chan struct{}), addr: lis.Addr().String()}
	go func() {
		defer close(s.ran)
		if err := e.Run(runCtx); err != nil {
			log.Printf("engine: %v", err)
		}
	}()
	s.srv = iiiserver.New(e, iiiserver.Config{})
	s.hs = &http.Server{Handler: s.srv, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.served)
		if err := s.hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Printf("iii server: %v", err)
		}
	}()
	return s, nil
}

func (s *inProcess) close() {
	s.srv.Close()
	_ = s.hs.Close()
	<-s.served
	s.stopEngine()
	<-s.ran
}

// callee is the echo worker attached to an engine.
type callee struct {
	ws     *websocket.Conn
	echoed chan struct{} // echo returned
}

// attachCallee connects the callee worker serving bench::echo to the
// engine at url, and returns once a call through caller reaches it.
func attachCallee(ctx context.Context, url string, caller *caller) (*callee, error) {
	ws, err := dialWorker(ctx, url, "bench-callee", fnEcho)
	if err != nil {
		return nil, fmt.Errorf("callee: %w", err)
	}
	c := &callee{ws: ws, echoed: make(chan struct{})}
	go func() {
		defer close(c.echoed)
		if err := echo(ws); !normalEnd(err) {
			log.Printf("callee: %v", err)
		}
	}()
	// Until the engine routes bench::echo, calls fail (function_not_found).
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		err := caller.call(ctx)
		if err == nil {
			return c, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			c.close()
			return nil, fmt.Errorf("wait for %s: %w (last: %v)", fnEcho, ctx.Err(), err)
		}
	}
}

func (c *callee) close() {
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.echoed
}

// dialWorker connects an iii worker: it reads workerregistered, registers
// functions, then describes itself with the engine::workers::register void
// call, as the iii SDKs do.
func dialWorker(ctx context.Context, url, name string, functions ...string) (*websocket.Conn, error) {
	ws, err := dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := join(ctx, ws, name, functions); err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	return ws, nil
}

func join(ctx context.Context, ws *websocket.Conn, name string, functions []string) error {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	_, b, err := ws.Read(ctx)
	if err != nil {
		return fmt.Errorf("read workerregistered: %w", err)
	}
	var m inbound
	if err := json.Unmarshal(b, &m); err != nil || m.Type != typeWorkerRegistered || m.WorkerID == "" {
		return fmt.Errorf("first message %q, want workerregistered", b)
	}
	for _, id := range functions {
		if err := writeJSON(ctx, ws, registerFunction{Type: typeRegisterFunction, ID: id, Description: "echo"}); err != nil {
			return fmt.Errorf("register %s: %w", id, err)
		}
	}
	info, err := json.Marshal(map[string]any{"name": name, "runtime": "go", "version": "bench"})
	if err != nil {
		return err
	}
	hello := invokeFunction{Type: typeInvokeFunction, FunctionID: engine.FnWorkersRegister, Data: info, Action: &action{Type: "void"}}
	if err := writeJSON(ctx, ws, hello); err != nil {
		return fmt.Errorf("call %s: %w", engine.FnWorkersRegister, err)
	}
	return nil
}
