package trine

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// recordingStream is a Connect stream that records the call ids sent on
// it.
type recordingStream struct {
	connectStream // not called
	mu            sync.Mutex
	sent          []string
}

func (r *recordingStream) Send(f *trinev1.ConnectRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, f.GetCall().GetCallId())
	return nil
}

func (r *recordingStream) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}

func callFrameID(id string) *trinev1.ConnectRequest {
	return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_Call{Call: &trinev1.Call{CallId: id}}}
}

// A frame goes to the stream from its sender's goroutine when the writer
// is idle, and never overtakes a frame queued before it: then it queues
// behind it.
func TestDirectSendKeepsFrameOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rec := &recordingStream{}
	w := &Worker{quit: make(chan struct{})}
	s := &session{w: w, ctx: ctx, stream: rec, out: make(chan *trinev1.ConnectRequest, 8), maxBytes: 1 << 20}
	send := func(id string) {
		t.Helper()
		if err := s.send(ctx, callFrameID(id)); err != nil {
			t.Fatal(err)
		}
	}

	send("1") // writer idle, nothing queued: sent at once
	if got := rec.ids(); len(got) != 1 {
		t.Fatalf("sent %v, want [1] sent directly", got)
	}
	s.sendMu.Lock() // as the writer does while it sends
	send("2")       // queued
	s.sendMu.Unlock()
	send("3") // must queue behind 2
	if got := rec.ids(); len(got) != 1 {
		t.Fatalf("sent %v while 2 was queued, want only [1]", got)
	}

	done := make(chan bool, 1)
	go func() { done <- s.write() }()
	poll.CheckFor(t, 10*time.Second, poll.Holds("the writer sent 2 and 3", func() bool { return len(rec.ids()) >= 3 }))
	poll.CheckFor(t, 10*time.Second, poll.Holds("the queue drained", func() bool { return s.queued.Load() == 0 }))
	send("4") // the queue is drained: direct again
	if got := rec.ids(); len(got) != 4 || got[1] != "2" || got[2] != "3" || got[3] != "4" {
		t.Fatalf("sent %v, want [1 2 3 4]", got)
	}
	cancel()
	<-done
}
