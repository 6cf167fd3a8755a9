package grpcserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
	trine "github.com/trinehq/trine/worker-sdk"
)

func client(t *testing.T, addr string) trinev1.EngineServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return trinev1.NewEngineServiceClient(cc)
}

// trineCode extracts the Trine code from a status's ErrorInfo.
func trineCode(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == grpcserver.ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

func TestTriggerRPC(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{MaxMessageBytes: 32 << 10})
	c := client(t, srv.Addr)
	if err := srv.Engine.RegisterFunction("test::echo", "", engine.HandlerFunc(func(_ context.Context, call engine.Call) ([]byte, error) {
		return call.Payload, nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Engine.RegisterFunction("test::fail", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		return nil, errors.New("nope")
	})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Engine.RegisterFunction("test::hang", "", engine.HandlerFunc(func(ctx context.Context, _ engine.Call) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})); err != nil {
		t.Fatal(err)
	}

	res, err := c.Trigger(t.Context(), &trinev1.TriggerRequest{FunctionId: "test::echo", Payload: []byte(`{"a":1}`)})
	if err != nil || string(res.GetResult()) != `{"a":1}` {
		t.Fatalf("Trigger(echo) = %s, %v", res.GetResult(), err)
	}
	res, err = c.Trigger(t.Context(), &trinev1.TriggerRequest{FunctionId: "engine::health::check"})
	if err != nil {
		t.Fatalf("Trigger(health) = %v", err)
	}
	var h engine.Health
	if err := json.Unmarshal(res.GetResult(), &h); err != nil || h.Status != "ok" {
		t.Fatalf("health = %s (%v)", res.GetResult(), err)
	}

	tests := []struct {
		name     string
		req      *trinev1.TriggerRequest
		grpcCode grpccodes.Code
		code     string
	}{
		{"UnknownFunction", &trinev1.TriggerRequest{FunctionId: "no::such"}, grpccodes.NotFound, "function_not_found"},
		{"MalformedJSON", &trinev1.TriggerRequest{FunctionId: "test::echo", Payload: []byte(`{"a":`)}, grpccodes.InvalidArgument, "invalid_argument"},
		{"EmptyID", &trinev1.TriggerRequest{FunctionId: ""}, grpccodes.InvalidArgument, "invalid_argument"},
		{"UnprintableID", &trinev1.TriggerRequest{FunctionId: "a\tb"}, grpccodes.InvalidArgument, "invalid_argument"},
		{"LongID", &trinev1.TriggerRequest{FunctionId: strings.Repeat("x", engine.MaxIDLength+1)}, grpccodes.InvalidArgument, "invalid_argument"},
		{"HandlerError", &trinev1.TriggerRequest{FunctionId: "test::fail"}, grpccodes.Unknown, "handler_error"},
		{"Timeout", &trinev1.TriggerRequest{FunctionId: "test::hang", TimeoutMs: 50}, grpccodes.DeadlineExceeded, "deadline_exceeded"},
		{"VoidUnknown", &trinev1.TriggerRequest{FunctionId: "no::such", Action: trinev1.Action_ACTION_VOID}, grpccodes.NotFound, "function_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Trigger(t.Context(), tt.req)
			if got := status.Code(err); got != tt.grpcCode {
				t.Errorf("status code = %v (%v), want %v", got, err, tt.grpcCode)
			}
			if got := trineCode(err); got != tt.code {
				t.Errorf("trine code = %q, want %q", got, tt.code)
			}
		})
	}

	t.Run("OversizeRequest", func(t *testing.T) {
		big := []byte(`"` + strings.Repeat("x", 40<<10) + `"`)
		_, err := c.Trigger(t.Context(), &trinev1.TriggerRequest{FunctionId: "test::echo", Payload: big})
		if status.Code(err) != grpccodes.ResourceExhausted || trineCode(err) != "message_too_large" {
			t.Fatalf("oversize Trigger = %v, want ResourceExhausted with message_too_large", err)
		}
	})
	t.Run("VoidReturnsAtOnce", func(t *testing.T) {
		start := time.Now()
		res, err := c.Trigger(t.Context(), &trinev1.TriggerRequest{FunctionId: "test::hang", TimeoutMs: 300, Action: trinev1.Action_ACTION_VOID})
		if err != nil || len(res.GetResult()) != 0 {
			t.Fatalf("void Trigger = %s, %v", res.GetResult(), err)
		}
		if el := time.Since(start); el > time.Second {
			t.Fatalf("void Trigger took %v", el)
		}
	})
}

func TestConnectNeedsHello(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{})
	stream, err := client(t, srv.Addr).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterFunction{RegisterFunction: &trinev1.RegisterFunction{Id: "x"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != grpccodes.InvalidArgument || trineCode(err) != "invalid_argument" {
		t.Fatalf("Recv after a non-hello first frame = %v, want invalid_argument", err)
	}
}

// rawWorker opens a worker stream on c and says hello; send sends a frame
// on it. The stream ends with the test.
func rawWorker(t *testing.T, c trinev1.EngineServiceClient, name string) (grpc.BidiStreamingClient[trinev1.ConnectRequest, trinev1.ConnectResponse], func(*trinev1.ConnectRequest)) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	stream, err := c.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(f *trinev1.ConnectRequest) {
		t.Helper()
		if err := stream.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Hello{Hello: &trinev1.Hello{Name: name, Runtime: "test"}}})
	welcome, err := stream.Recv()
	if err != nil || welcome.GetWelcome().GetWorkerId() == "" || welcome.GetWelcome().GetMaxMessageBytes() != grpcserver.DefaultMaxMessageBytes {
		t.Fatalf("welcome = %v, %v", welcome, err)
	}
	return stream, send
}

func TestConnectRawProtocol(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{})
	stream, send := rawWorker(t, client(t, srv.Addr), "raw")
	// Every registration is acknowledged, with the request id echoed.
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterFunction{RegisterFunction: &trinev1.RegisterFunction{RequestId: "r1", Id: "raw::fn"}}})
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterFunction{RegisterFunction: &trinev1.RegisterFunction{RequestId: "r2", Id: ""}}})
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterTrigger{RegisterTrigger: &trinev1.RegisterTrigger{RequestId: "r3",
		Trigger: &trinev1.Trigger{Id: "t", Type: "nope", FunctionId: "raw::fn"}}}})
	acks := map[string]string{}
	for len(acks) < 3 {
		f, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		a := f.GetAck()
		if a == nil {
			t.Fatalf("got %v, want an ack", f)
		}
		acks[a.GetRequestId()] = a.GetError().GetCode()
	}
	want := map[string]string{"r1": "", "r2": "invalid_argument", "r3": "trigger_type_not_found"}
	for id, code := range want {
		if acks[id] != code {
			t.Errorf("ack %s code = %q, want %q", id, acks[id], code)
		}
	}
	// A call routed to this worker arrives as Invoke with a deadline; the
	// result travels back to the caller.
	res := make(chan error, 1)
	go func() {
		out, err := srv.Engine.Trigger(context.Background(), engine.Call{FunctionID: "raw::fn", Payload: []byte(`1`), Timeout: 5 * time.Second})
		if err == nil && string(out) != `2` {
			err = errors.New("result " + string(out))
		}
		res <- err
	}()
	f, err := stream.Recv()
	inv := f.GetInvoke()
	if err != nil || inv == nil || inv.GetFunctionId() != "raw::fn" || inv.GetTimeoutMs() <= 0 || inv.GetTimeoutMs() > 5000 {
		t.Fatalf("invoke = %v, %v", f, err)
	}
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_InvokeResult{InvokeResult: &trinev1.InvokeResult{InvocationId: inv.GetInvocationId(), Result: []byte(`2`)}}})
	if err := <-res; err != nil {
		t.Fatalf("call through raw worker = %v", err)
	}
	// A result that is not JSON is refused on the caller's behalf.
	go func() {
		_, err := srv.Engine.Trigger(context.Background(), engine.Call{FunctionID: "raw::fn", Timeout: 5 * time.Second})
		res <- err
	}()
	f, _ = stream.Recv()
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_InvokeResult{InvokeResult: &trinev1.InvokeResult{InvocationId: f.GetInvoke().GetInvocationId(), Result: []byte(`{oops`)}}})
	if err := <-res; !errors.Is(err, engine.ErrHandlerError) {
		t.Fatalf("non-JSON result = %v, want handler_error", err)
	}
}

// TestGracefulShutdown: when the engine stops, an in-flight call finishes
// within the grace period, new calls are refused with unavailable, and the
// worker's stream ends.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{ShutdownGrace: 5 * time.Second}, grpcserver.Config{})
	w := trine.RegisterWorker(srv.Addr, trine.WithReconnectBackoff(20*time.Millisecond, 100*time.Millisecond))
	defer w.Close()
	if err := w.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	if err := w.RegisterFunction(t.Context(), "job", func(ctx context.Context, _ json.RawMessage) (any, error) {
		close(started)
		<-release
		return "finished", nil
	}); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		out, err := client(t, srv.Addr).Trigger(context.Background(), &trinev1.TriggerRequest{FunctionId: "job"})
		if err == nil && string(out.GetResult()) != `"finished"` {
			err = errors.New("result " + string(out.GetResult()))
		}
		res <- err
	}()
	<-started
	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Engine.Health().Status != "draining" {
		if time.Now().After(deadline) {
			t.Fatal("engine never started draining")
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err := srv.Engine.Trigger(t.Context(), engine.Call{FunctionID: "job"})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("call during drain = %v, want unavailable", err)
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("in-flight call across shutdown = %v, want it to finish", err)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not complete")
	}
}

// TestShutdownGraceExpires: a call that outlasts the grace period fails
// cleanly (worker_disconnected or cancelled), never hangs.
func TestShutdownGraceExpires(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{ShutdownGrace: 100 * time.Millisecond}, grpcserver.Config{})
	w := trine.RegisterWorker(srv.Addr, trine.WithCloseTimeout(time.Second))
	defer w.Close()
	if err := w.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	if err := w.RegisterFunction(t.Context(), "stuck", func(ctx context.Context, _ json.RawMessage) (any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := srv.Engine.Trigger(context.Background(), engine.Call{FunctionID: "stuck", Timeout: time.Minute})
		res <- err
	}()
	<-started
	start := time.Now()
	srv.Stop()
	err := <-res
	if !errors.Is(err, engine.ErrWorkerDisconnected) && !errors.Is(err, engine.ErrCancelled) {
		t.Fatalf("call cut by shutdown = %v, want worker_disconnected or cancelled", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("shutdown with 100ms grace took %v", el)
	}
}

// A worker that floods calls and never reads its results gets overloaded
// beyond its in-flight bound and has its stream ended once the results it
// is owed pass theirs; goroutines stay bounded meanwhile.
func TestFloodFromAWorkerThatNeverReads(t *testing.T) {
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{SendQueue: 16})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := client(t, srv.Addr).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Hello{Hello: &trinev1.Hello{Name: "flood", Runtime: "test"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	// The flood runs on its own goroutine: once the engine has ended the
	// stream, a Send can stay blocked on HTTP/2 flow control (nothing
	// reads on the other side any more) until the stream's context ends,
	// which the test does once Recv has seen the end.
	type result struct{ sent, peak int }
	flooded := make(chan result, 1)
	go func() {
		r := result{peak: base}
		pad := strings.Repeat("x", 2000)
		stop := time.Now().Add(10 * time.Second)
		for ; r.sent < 200_000 && time.Now().Before(stop); r.sent++ {
			f := &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Call{Call: &trinev1.Call{CallId: strconv.Itoa(r.sent),
				FunctionId: "engine::health::check", Payload: []byte(`{"pad":"` + pad + `"}`)}}}
			if err := stream.Send(f); err != nil {
				break // the engine ended the stream
			}
			if r.sent%500 == 0 {
				r.peak = max(r.peak, runtime.NumGoroutine())
			}
		}
		flooded <- r
	}()
	never := time.AfterFunc(30*time.Second, cancel) // a stream never ended fails below
	for {
		_, err := stream.Recv()
		if err != nil {
			if status.Code(err) != grpccodes.ResourceExhausted {
				t.Fatalf("stream ended with %v, want RESOURCE_EXHAUSTED (the engine never ended it?)", err)
			}
			break
		}
	}
	never.Stop()
	cancel()
	r := <-flooded
	sent, peak := r.sent, r.peak
	if peak > base+4*16+16+50 {
		t.Fatalf("goroutines %d → %d while flooding", base, peak)
	}
	t.Logf("%d calls sent; goroutines %d → peak %d", sent, base, peak)
}

// The engine → worker queue is bounded in bytes as well as frames: calls
// to a worker that does not read fail with overloaded once 16 ×
// MaxMessageBytes are queued for it, instead of each holding its payload
// until its deadline.
func TestSendQueueBoundedInBytes(t *testing.T) {
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{MaxMessageBytes: 64 << 10})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := client(t, srv.Addr).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(f *trinev1.ConnectRequest) {
		t.Helper()
		if err := stream.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Hello{Hello: &trinev1.Hello{Name: "deaf", Runtime: "test"}}})
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterFunction{RegisterFunction: &trinev1.RegisterFunction{RequestId: "r", Id: "deaf::f"}}})
	for range 2 { // welcome, ack; then it never reads again
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	payload := []byte(`"` + strings.Repeat("x", 60<<10) + `"`)
	var overloaded atomic.Int64
	var wg sync.WaitGroup
	for range 300 {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			_, err := srv.Engine.Trigger(cctx, engine.Call{FunctionID: "deaf::f", Payload: payload})
			if engine.AsError(err).Code == codes.Overloaded && cctx.Err() == nil {
				overloaded.Add(1)
			}
		})
	}
	wg.Wait()
	if overloaded.Load() == 0 {
		t.Fatal("300 calls of 60 KB to a worker that does not read all waited for their deadline: the queue is not bounded in bytes")
	}
	t.Logf("%d of 300 calls refused at once with overloaded", overloaded.Load())
}

// TestHeadersBounded sends an RPC with more metadata than DefaultMaxHeaderBytes:
// it is refused, and the next normal RPC on a new connection is served.
func TestHeadersBounded(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{})
	c := client(t, srv.Addr)
	big := metadata.AppendToOutgoingContext(t.Context(), "x-big", strings.Repeat("a", grpcserver.DefaultMaxHeaderBytes+1))
	if _, err := c.Trigger(big, &trinev1.TriggerRequest{FunctionId: "engine::health::check"}); err == nil {
		t.Fatal("an RPC with more than DefaultMaxHeaderBytes of metadata was served")
	}
	ok := metadata.AppendToOutgoingContext(t.Context(), "x-ok", strings.Repeat("a", 32<<10))
	if _, err := client(t, srv.Addr).Trigger(ok, &trinev1.TriggerRequest{FunctionId: "engine::health::check"}); err != nil {
		t.Fatalf("an RPC with 32 KiB of metadata: %v", err)
	}
}

// TestOversizeFrames: over a real socket with the default limit (4 MiB), a
// 5 MiB Trigger request and a worker's 5 MiB frames are refused with
// Trine's message_too_large, as on the other transports, and the worker's
// session goes on: the refusal changes nothing.
func TestOversizeFrames(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{})
	c := client(t, srv.Addr)
	big := []byte(`"` + strings.Repeat("x", 5<<20) + `"`)
	_, err := c.Trigger(t.Context(), &trinev1.TriggerRequest{FunctionId: "engine::health::check", Payload: big})
	if status.Code(err) != grpccodes.ResourceExhausted || trineCode(err) != "message_too_large" || !strings.Contains(err.Error(), "4194304") {
		t.Fatalf("a 5 MiB Trigger = %v, want ResourceExhausted with message_too_large and the limit", err)
	}

	stream, send := rawWorker(t, c, "big")
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Call{Call: &trinev1.Call{CallId: "c1", FunctionId: "engine::health::check", Payload: big}}})
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterFunction{RegisterFunction: &trinev1.RegisterFunction{
		RequestId: "r1", Id: "big::fn", Description: string(big)}}})
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterFunction{RegisterFunction: &trinev1.RegisterFunction{RequestId: "r2", Id: "big::fn"}}})
	got := map[string]string{}
	for len(got) < 3 {
		f, err := stream.Recv()
		if err != nil {
			t.Fatalf("after oversize frames the stream ended: %v", err)
		}
		switch {
		case f.GetCallResult() != nil:
			got[f.GetCallResult().GetCallId()] = f.GetCallResult().GetError().GetCode()
		case f.GetAck() != nil:
			got[f.GetAck().GetRequestId()] = f.GetAck().GetError().GetCode()
		}
	}
	if want := map[string]string{"c1": "message_too_large", "r1": "message_too_large", "r2": ""}; !maps.Equal(got, want) {
		t.Fatalf("answers %v, want %v", got, want)
	}
	// A 5 MiB result fails its caller with message_too_large.
	res := make(chan error, 1)
	go func() {
		_, err := srv.Engine.Trigger(context.Background(), engine.Call{FunctionID: "big::fn", Timeout: 10 * time.Second})
		res <- err
	}()
	f, err := stream.Recv()
	if err != nil || f.GetInvoke() == nil {
		t.Fatalf("invoke = %v, %v", f, err)
	}
	send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_InvokeResult{InvokeResult: &trinev1.InvokeResult{InvocationId: f.GetInvoke().GetInvocationId(), Result: big}}})
	if err := <-res; !errors.Is(err, engine.ErrMessageTooLarge) {
		t.Fatalf("a 5 MiB result = %v, want message_too_large", err)
	}
	if !srv.Engine.HasFunction("big::fn") {
		t.Fatal("the worker's registration went with its oversize frames")
	}
}

// TestCallsInFlightPerWorkerBounded: a worker that floods calls (awaited
// and void) to a slow function and never reads its results has at most
// MaxCallsPerWorker of them running, and at most MaxCallBytesPerWorker of
// payload; the rest are refused with overloaded at once. Another
// connection still gets its calls through meanwhile.
func TestCallsInFlightPerWorkerBounded(t *testing.T) {
	for _, tc := range []struct {
		name         string
		calls, bytes int
		payload      int
		wantInFlight int
		void         bool
	}{
		{name: "count", calls: 8, bytes: 1 << 20, payload: 100, wantInFlight: 8},
		{name: "bytes", calls: 1000, bytes: 10 << 10, payload: 3 << 10, wantInFlight: 3},
		{name: "void", calls: 8, bytes: 1 << 20, payload: 100, wantInFlight: 8, void: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := enginetest.Start(t, engine.Config{MaxCallsPerWorker: tc.calls, MaxCallBytesPerWorker: tc.bytes}, grpcserver.Config{})
			release := make(chan struct{})
			var running, peak atomic.Int64
			if err := srv.Engine.RegisterFunction("slow::f", "", engine.HandlerFunc(func(ctx context.Context, c engine.Call) ([]byte, error) {
				n := running.Add(1)
				defer running.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				select {
				case <-release:
				case <-ctx.Done():
				}
				return []byte(`null`), nil
			})); err != nil {
				t.Fatal(err)
			}
			defer close(release)
			c := client(t, srv.Addr)
			stream, send := rawWorker(t, c, "flood")
			payload := []byte(`"` + strings.Repeat("x", tc.payload-2) + `"`)
			const sent = 200
			for i := range sent {
				call := &trinev1.Call{CallId: strconv.Itoa(i), FunctionId: "slow::f", Payload: payload}
				if tc.void {
					call.Action = trinev1.Action_ACTION_VOID
				}
				send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Call{Call: call}})
			}
			poll.CheckFor(t, 10*time.Second, poll.Holds("the admitted calls run", func() bool { return running.Load() == int64(tc.wantInFlight) }))
			// The other connection is not held back by the flood.
			if _, err := c.Trigger(t.Context(), &trinev1.TriggerRequest{FunctionId: "engine::health::check"}); err != nil {
				t.Fatal(err)
			}
			if !tc.void { // the refusals wait in the queue the worker does not read
				overloaded := 0
				for overloaded < sent-tc.wantInFlight {
					f, err := stream.Recv()
					if err != nil {
						t.Fatal(err)
					}
					if r := f.GetCallResult(); r != nil {
						if r.GetError().GetCode() != "overloaded" {
							t.Fatalf("call %s = %v, want overloaded", r.GetCallId(), r.GetError())
						}
						overloaded++
					}
				}
			}
			if p := peak.Load(); p != int64(tc.wantInFlight) {
				t.Fatalf("%d calls of the worker ran at once, want %d", p, tc.wantInFlight)
			}
		})
	}
}
