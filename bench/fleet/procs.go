package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

const startTimeout = 30 * time.Second

// proc is one server process under test: `trine engine` or `trine
// gateway`. (The NATS nodes, see natsnode.go, are plain loadgen
// processes.)
type proc struct {
	*loadgen.Process
	grpc   string // engine: the gRPC listener
	stream string // the browser listener (host:port)
	http   string // health and metrics (host:port)
	nats   string // engine: the embedded NATS server's address for other processes
}

var (
	engineListening  = regexp.MustCompile(`^trine engine (\S+) listening: grpc=(\S+) http=(\S+) stream=(\S+) iii=\S+ nats=embedded,(\S+)$`)
	gatewayListening = regexp.MustCompile(`^trine gateway (\S+) listening: stream=(\S+) http=(\S+) engine=(\S+) nats=(\S+)$`)
)

// startEngine runs `trine engine --store memory` on free loopback ports,
// its embedded NATS server accepting other processes on a free port too.
func startEngine(env *benchEnv, dataDir string) (*proc, error) {
	p, m, err := startProc(env.trineBin, "engine", engineListening, nil,
		"engine", "--store", "memory", "--data-dir", dataDir,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0", "--iii-addr", "off",
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
	p, m, err := startProc(env.trineBin, name, gatewayListening, extraEnv,
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
		case <-p.Done():
			_ = p.Stop() // it has exited: forget it
			return nil, fmt.Errorf("%s exited before it was ready (%v); stderr:\n%s", name, p.Err(), p.Stderr())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop()
			return nil, fmt.Errorf("%s not ready within %v (last: %v); stderr:\n%s", name, startTimeout, err, p.Stderr())
		}
	}
}

// startProc starts bin with args and waits for the stdout line matching
// re. extraEnv is added to its environment.
func startProc(bin, name string, re *regexp.Regexp, extraEnv []string, args ...string) (*proc, []string, error) {
	p, m, err := loadgen.Start(loadgen.Command{Name: name, Path: bin, Args: args, Env: extraEnv, Listening: re})
	if err != nil {
		return nil, nil, err
	}
	return &proc{Process: p}, m, nil
}

// stopProcs stops ps, gateways before the engine they depend on.
func stopProcs(ps []*proc) error {
	var errs []error
	for i := len(ps) - 1; i >= 0; i-- {
		errs = append(errs, ps[i].Stop())
	}
	return errors.Join(errs...)
}

// processes is ps as loadgen processes.
func processes(ps []*proc) []*loadgen.Process {
	out := make([]*loadgen.Process, len(ps))
	for i, p := range ps {
		out[i] = p.Process
	}
	return out
}
