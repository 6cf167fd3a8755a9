package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// Server kinds.
const (
	kindTrine      = "trine"
	kindNaive      = "naive"
	kindCoalesce   = "coalesce"
	kindCentrifugo = "centrifugo"
	kindOld        = "old" // -old-trine-bin
)

// server is one server process under test.
type server struct {
	*loadgen.Process
	kind   string
	stream string // host:port of the WebSocket listener
	grpc   string // trine only
}

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
	// The baselines exit when their stdin closes: a second guard against
	// leftovers besides Pdeathsig. They may die of SIGTERM itself.
	c := loadgen.Command{Name: kind, StdinPipe: true, SignalExitOK: true}
	switch kind {
	case kindTrine, kindOld:
		c.Listening = trineListening
		if profile != "" && kind == kindTrine {
			c.Path, c.Args = env.self, []string{"-serve", kindTrine, "-cpuprofile", profile, "-queue", strconv.Itoa(env.queueMessages)}
			break
		}
		args := []string{"engine", "--store", "memory",
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0", "--iii-addr", "off",
			"--data-dir", dataDir, "--log-level", "warn",
			"--stream-queue-messages", strconv.Itoa(env.queueMessages)}
		c.Path, c.Args = env.trineBin, append(args, env.trineExtra...)
		if kind == kindOld {
			c.Path, c.Args = env.oldTrineBin, append(args, env.oldExtra...)
		}
	case kindCentrifugo:
		cc, addr, err := centrifugoCommand(env.centrifugoBin, dataDir)
		if err != nil {
			return nil, err
		}
		p, _, err := loadgen.Start(cc)
		if err != nil {
			return nil, err
		}
		return &server{Process: p, kind: kind, stream: addr}, nil
	case kindNaive, kindCoalesce:
		c.Path, c.Args = env.self, []string{"-serve", kind, "-addr", "127.0.0.1:0", "-queue", strconv.Itoa(env.queueMessages), "-cpuprofile", profile}
		c.Listening = baselineListening
	default:
		return nil, fmt.Errorf("unknown server %q", kind)
	}
	p, m, err := loadgen.Start(c)
	if err != nil {
		return nil, err
	}
	s := &server{Process: p, kind: kind}
	if kind == kindTrine || kind == kindOld {
		s.grpc, s.stream = m[2], m[4]
	} else {
		s.stream = m[1]
	}
	return s, nil
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
