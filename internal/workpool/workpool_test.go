package workpool_test

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/internal/workpool"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// goroutineID is the id runtime.Stack prints for the calling goroutine.
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	var id string
	fmt.Sscanf(string(b), "goroutine %s", &id)
	return id
}

// Work given one at a time runs on one goroutine, not one each.
func TestWorkersAreReused(t *testing.T) {
	t.Parallel()
	p := workpool.New(4, time.Minute)
	defer p.Close()
	ids := map[string]bool{}
	for range 100 {
		done := make(chan string)
		if !p.Go(func() { done <- goroutineID() }) {
			t.Fatal("Go refused work on an open pool")
		}
		ids[<-done] = true
		// The worker is idle again once it waits for work. Idle counts
		// it just before it waits: a task that comes in between finds
		// no worker to take it and starts one, which the pool keeps.
		poll.CheckFor(t, 5*time.Second, poll.Holds("an idle worker", func() bool { return p.Idle() >= 1 }))
	}
	// Without reuse each task would run on a goroutine of its own.
	if len(ids) > 4 {
		t.Errorf("100 tasks in turn ran on %d goroutines, want at most the 4 the pool keeps", len(ids))
	}
}

// At most max workers are kept: work beyond them runs on goroutines that
// end with it, and every task runs.
func TestKeepsAtMostMax(t *testing.T) {
	t.Parallel()
	p := workpool.New(3, time.Minute)
	defer p.Close()
	release := make(chan struct{})
	var ran atomic.Int32
	var started sync.WaitGroup
	for range 10 {
		started.Add(1)
		p.Go(func() {
			started.Done()
			<-release
			ran.Add(1)
		})
	}
	started.Wait()
	if n := p.Running(); n != 10 {
		t.Fatalf("%d goroutines run 10 blocked tasks", n)
	}
	close(release)
	poll.CheckFor(t, 5*time.Second, poll.Holds("every task run and 3 workers kept", func() bool {
		return ran.Load() == 10 && p.Running() == 3 && p.Idle() == 3
	}))
}

// A worker with no work for the idle time ends: nothing is kept between
// bursts of work longer than that.
func TestIdleWorkersEnd(t *testing.T) {
	t.Parallel()
	p := workpool.New(8, 20*time.Millisecond)
	defer p.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		p.Go(func() { wg.Done(); wg.Wait() })
	}
	wg.Wait()
	poll.CheckFor(t, 5*time.Second, poll.Holds("no goroutine left", func() bool { return p.Running() == 0 }))
}

// Close waits for the running work, ends the idle workers and refuses
// work from then on: nothing the pool started outlives Close.
func TestCloseWaitsAndRefuses(t *testing.T) {
	t.Parallel()
	p := workpool.New(2, time.Hour)
	var finished atomic.Bool
	started, release := make(chan struct{}), make(chan struct{})
	p.Go(func() {}) // leaves an idle worker
	p.Go(func() {
		close(started)
		<-release
		finished.Store(true)
	})
	<-started
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	poll.CheckFor(t, 5*time.Second, poll.Holds("Close to refuse work", func() bool { return !p.Go(func() {}) }))
	select {
	case <-closed:
		t.Fatal("Close returned while work was running")
	default:
	}
	close(release)
	<-closed
	if !finished.Load() {
		t.Error("Close returned before the work it had")
	}
	if n := p.Running(); n != 0 {
		t.Errorf("%d goroutines after Close", n)
	}
	if p.Go(func() { t.Error("work ran after Close") }) {
		t.Error("Go took work after Close")
	}
	p.Close() // a second Close is harmless
}
