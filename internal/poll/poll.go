// Package poll is the tests' one way to wait for something that happens
// in the background: CheckFor, in the shape of nats-server's checkFor.
// Tests never sleep for a fixed time; they poll with a deadline.
//
// Concurrency: CheckFor runs f on the calling goroutine and starts none;
// Holds returns a function as safe to call concurrently as its cond.
package poll

import (
	"errors"
	"testing"
	"time"
)

// interval is how often CheckFor calls f.
const interval = 5 * time.Millisecond

// CheckFor calls f until it returns nil, every few milliseconds, and
// fails the test with f's last error once wait has passed.
func CheckFor(t testing.TB, wait time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", wait, err)
		}
		<-tick.C
	}
}

// Holds adapts a condition to CheckFor: the error, until cond holds, says
// what is awaited.
func Holds(what string, cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errors.New("still waiting for " + what)
	}
}
