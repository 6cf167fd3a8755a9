package workgroup_test

import (
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/workgroup"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWaitWaitsAndThenRefuses: Wait returns once every goroutine Go started
// has returned, and Go starts none from then on.
func TestWaitWaitsAndThenRefuses(t *testing.T) {
	var g workgroup.Group
	var ran atomic.Int32
	release := make(chan struct{})
	for range 3 {
		if !g.Go(func() { <-release; ran.Add(1) }) {
			t.Fatal("Go refused before Wait")
		}
	}
	close(release)
	g.Wait()
	if n := ran.Load(); n != 3 {
		t.Fatalf("Wait returned with %d of 3 goroutines done", n)
	}
	if g.Go(func() { ran.Add(1) }) {
		t.Fatal("Go started a goroutine after Wait")
	}
	g.Wait() // a second Wait returns at once
	if n := ran.Load(); n != 3 {
		t.Fatalf("%d goroutines ran, want 3", n)
	}
}

// TestGoFromAGoroutineOfTheGroup: a goroutine of the group may start
// another while Wait is waiting; the new one is refused, not lost in a
// race with Wait.
func TestGoFromAGoroutineOfTheGroup(t *testing.T) {
	var g workgroup.Group
	inside := make(chan struct{})
	started := make(chan bool, 1)
	g.Go(func() {
		<-inside
		started <- g.Go(func() {})
	})
	done := make(chan struct{})
	go func() { g.Wait(); close(done) }()
	// Wait has begun refusing once a fresh Go on this goroutine is refused.
	for g.Go(func() {}) {
	}
	close(inside)
	<-done
	if <-started {
		t.Fatal("a goroutine started after Wait began")
	}
}
