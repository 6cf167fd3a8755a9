package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"

	"google.golang.org/grpc"

	"github.com/trinehq/trine/bench/internal/loadgen"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

var (
	// Later versions append more listeners to the line.
	trineListening = regexp.MustCompile(`^trine engine (\S+) listening: grpc=(\S+)(?: .*)?$`)
	echoListening  = regexp.MustCompile(`^listening (\S+)$`)
)

// engineArgs runs `trine engine` on the memory store with every listener
// but gRPC on a free port or off, and logs only warnings.
func engineArgs(dataDir string) []string {
	return []string{"engine", "--store", "memory",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--stream-addr", "127.0.0.1:0",
		"--iii-addr", "off", "--nats-addr", "off", "--console", "off",
		"--data-dir", dataDir, "--log-level", "warn"}
}

// startEcho starts this binary as the bare grpc-go echo server, in its own
// process.
func startEcho(self string) (*loadgen.Process, string, error) {
	p, m, err := loadgen.Start(loadgen.Command{Name: "bare echo", Path: self, Args: []string{"-serve", "echo"},
		Listening: echoListening, StdinPipe: true, SignalExitOK: true})
	if err != nil {
		return nil, "", err
	}
	return p, m[1], nil
}

// startTrine starts an engine in its own process: the binary bin, or, with
// profile set, this binary serving the same gRPC engine in process and
// writing a CPU profile of its life to profile.
func startTrine(name, bin, self, dataDir, profile string) (*loadgen.Process, string, error) {
	c := loadgen.Command{Name: name, Path: bin, Args: engineArgs(dataDir), Listening: trineListening, StdinPipe: true, SignalExitOK: true}
	if profile != "" {
		c.Path, c.Args = self, []string{"-serve", "trine", "-cpuprofile", profile}
	}
	p, m, err := loadgen.Start(c)
	if err != nil {
		return nil, "", err
	}
	return p, m[2], nil
}

// echoServer is the baseline: a grpc-go unary echo with the same message
// types as the engine's Trigger RPC.
type echoServer struct {
	trinev1.UnimplementedEngineServiceServer
}

func (echoServer) Trigger(_ context.Context, r *trinev1.TriggerRequest) (*trinev1.TriggerResponse, error) {
	return &trinev1.TriggerResponse{Result: r.GetPayload()}, nil
}

// serve runs a server process (-serve): "echo", the bare grpc-go echo
// with default options, or "trine", the engine's gRPC server as
// internal/enginetest runs it, CPU-profiled into profile. It prints its
// listening line and runs until its stdin ends or it gets SIGTERM.
func serve(kind, profile string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "rpc "+kind+":", err)
		return 1
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	var stop func()
	switch kind {
	case "echo":
		srv := grpc.NewServer()
		trinev1.RegisterEngineServiceServer(srv, echoServer{})
		go func() { _ = srv.Serve(lis) }()
		stop = srv.Stop
		fmt.Printf("listening %s\n", lis.Addr())
	case "trine":
		if profile == "" {
			return fail(fmt.Errorf("-serve trine needs -cpuprofile"))
		}
		stopProfile, err := loadgen.StartProfile(profile)
		if err != nil {
			return fail(err)
		}
		r, err := enginetest.Serve(lis, engine.Config{}, grpcserver.Config{})
		if err != nil {
			stopProfile()
			return fail(err)
		}
		stop = func() { r.Stop(); stopProfile() }
		fmt.Printf("trine engine profiled listening: grpc=%s\n", r.Addr)
	default:
		return fail(fmt.Errorf("unknown server"))
	}
	loadgen.WaitStopped()
	stop()
	return 0
}
