package grpcserver_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/internal/enginetest"
	"github.com/trinehq/trine/internal/poll"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// goroutineID is the id runtime.Stack prints for the calling goroutine.
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	var id string
	_, _ = fmt.Sscanf(string(b), "goroutine %s", &id)
	return id
}

// alive reports whether the goroutine id is running.
func alive(id string) bool {
	b := make([]byte, 1<<20)
	b = b[:runtime.Stack(b, true)]
	return strings.Contains(string(b), "goroutine "+id+" [")
}

// A worker's calls, one after another, run on one goroutine that the
// session keeps between them (a fresh goroutine per call grew its stack
// again each time); it ends when the session does.
func TestCallsReuseGoroutinesUntilTheSessionEnds(t *testing.T) {
	t.Parallel()
	srv := enginetest.Start(t, engine.Config{}, grpcserver.Config{WorkerIdle: time.Minute})
	var mu sync.Mutex
	ids := map[string]bool{}
	if err := srv.Engine.RegisterFunction("probe", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		mu.Lock()
		ids[goroutineID()] = true
		mu.Unlock()
		return []byte(`{}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	stream, send := rawWorker(t, client(t, srv.Addr), "w")
	const calls = 50
	for i := range calls {
		id := strconv.Itoa(i)
		send(&trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Call{Call: &trinev1.Call{CallId: id, FunctionId: "probe"}}})
		f, err := stream.Recv()
		if err != nil || f.GetCallResult().GetCallId() != id || f.GetCallResult().GetError() != nil {
			t.Fatalf("call %d: %v, %v", i, f, err)
		}
	}
	mu.Lock()
	n := len(ids)
	var last string
	for id := range ids {
		last = id
	}
	mu.Unlock()
	// The answer is queued just before the goroutine waits again, so a
	// call may now and then find it still busy and start another.
	if n > 3 {
		t.Errorf("%d calls in turn ran on %d goroutines", calls, n)
	}
	if err := stream.CloseSend(); err != nil { // the session ends
		t.Fatal(err)
	}
	poll.CheckFor(t, 5*time.Second, poll.Holds("the session's goroutines to end", func() bool { return !alive(last) }))
}
