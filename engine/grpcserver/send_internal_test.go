package grpcserver

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// recordingStream is a Connect stream that records what is sent on it.
type recordingStream struct {
	connectStream // not called
	mu            sync.Mutex
	sent          []string
}

func (r *recordingStream) Send(f *trinev1.ConnectResponse) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, f.GetCallResult().GetCallId())
	return nil
}

func (r *recordingStream) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

func result(id string) *trinev1.ConnectResponse {
	return &trinev1.ConnectResponse{Frame: &trinev1.ConnectResponse_CallResult{CallResult: &trinev1.CallResult{CallId: id}}}
}

// A result sent from its call's goroutine goes to the stream directly
// when the writer is idle, and never overtakes a frame queued before it:
// then it queues behind it.
func TestDirectSendKeepsFrameOrder(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	rec := &recordingStream{}
	c := &conn{srv: New(nil, Config{}), stream: rec, out: make(chan outFrame, 8), ctx: ctx, cancel: cancel}

	c.answer(result("1")) // writer idle, nothing queued: sent at once
	if got := rec.ids(); len(got) != 1 || got[0] != "1" {
		t.Fatalf("sent %v, want [1] sent directly", got)
	}

	if !c.push(outFrame{result("2"), 10}) { // queued: the writer has not run
		t.Fatal("push refused")
	}
	c.answer(result("3")) // must queue behind 2
	if got := rec.ids(); len(got) != 1 {
		t.Fatalf("sent %v while 2 was queued, want only [1]", got)
	}

	done := make(chan error, 1)
	go func() { done <- c.write() }()
	poll.CheckFor(t, 10*time.Second, poll.Holds("the writer sent 2 and 3", func() bool { return len(rec.ids()) >= 3 }))
	if got := rec.ids(); len(got) != 3 || got[1] != "2" || got[2] != "3" {
		t.Fatalf("sent %v, want [1 2 3]", got)
	}
	poll.CheckFor(t, 10*time.Second, poll.Holds("the queue drained", func() bool { return c.queued.Load() == 0 }))
	c.answer(result("4")) // the queue is drained: direct again
	if got := rec.ids(); len(got) != 4 || got[3] != "4" {
		t.Fatalf("sent %v, want [1 2 3 4]", got)
	}
	cancel(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
