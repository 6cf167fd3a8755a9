package poll_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
)

// TestCheckFor: it returns once f succeeds, and fails the test with f's
// last error once the wait has passed.
func TestCheckFor(t *testing.T) {
	var n atomic.Int32
	poll.CheckFor(t, time.Second, func() error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n.Load() != 3 {
		t.Fatalf("f ran %d times, want 3", n.Load())
	}
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		poll.CheckFor(ft, 20*time.Millisecond, poll.Holds("the moon", func() bool { return false }))
	}()
	<-done
	if ft.msg != "after 20ms: still waiting for the moon" {
		t.Fatalf("failure %q", ft.msg)
	}
}

type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}
