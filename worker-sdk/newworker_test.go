package trine_test

import (
	"context"
	"errors"
	"net"
	"testing"

	trine "github.com/trinehq/trine/worker-sdk"
)

// TestNewWorkerFailsFast: NewWorker refuses a malformed address or option
// at once, as nats.Connect does, and starts nothing; a good one returns a
// Worker that connects in the background.
func TestNewWorkerFailsFast(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		addr string
		opts []trine.Option
	}{
		"Empty":               {addr: ""},
		"OnlyCommas":          {addr: " , "},
		"NoPort":              {addr: "127.0.0.1"},
		"PortNotANumber":      {addr: "127.0.0.1:http"},
		"PortOutOfRange":      {addr: "127.0.0.1:70000"},
		"ExtraColon":          {addr: "a:1:2"},
		"SecondOfTwo":         {addr: "127.0.0.1:1,nowhere"},
		"SchemeWithoutHost":   {addr: "grpcs://"},
		"NegativeConcurrency": {addr: "127.0.0.1:1", opts: []trine.Option{trine.WithConcurrency(-1)}},
		"EmptyName":           {addr: "127.0.0.1:1", opts: []trine.Option{trine.WithName("")}},
	} {
		w, err := trine.NewWorker(c.addr, c.opts...)
		if w != nil || !errors.Is(err, trine.ErrInvalidArgument) {
			t.Errorf("%s: NewWorker(%q) = %v, %v; want nil, invalid_argument", name, c.addr, w, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:1", "grpc://localhost:1", "grpcs://[::1]:1", "127.0.0.1:1, 127.0.0.1:2"} {
		w, err := trine.NewWorker(addr)
		if err != nil {
			t.Fatalf("NewWorker(%q): %v", addr, err)
		}
		_ = w.Close()
	}
	// With a dialer the address is the dialer's to read.
	w, err := trine.NewWorker("bufconn", trine.WithDialer(func(context.Context, string) (net.Conn, error) {
		return nil, errors.New("no")
	}))
	if err != nil {
		t.Fatalf("NewWorker with a dialer: %v", err)
	}
	_ = w.Close()
}
