package main

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/trinehq/trine/internal/poll"
)

var liveHeap [][]byte

// TestReleaseIdleMemory: with 32 MiB live and the garbage of a burst
// collected but kept by the runtime (under its heap goal, so that its own
// scavenger keeps it too), a quiet process hands it back.
func TestReleaseIdleMemory(t *testing.T) {
	released := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	for range 32 {
		liveHeap = append(liveHeap, make([]byte, 1<<20))
	}
	t.Cleanup(func() { liveHeap = nil })
	var garbage [][]byte
	for range 24 {
		garbage = append(garbage, make([]byte, 1<<20))
	}
	runtime.KeepAlive(garbage)
	garbage = nil
	runtime.GC()
	before := released()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- releaseIdleMemory(ctx, 50*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	poll.CheckFor(t, 5*time.Second, poll.Holds("16 MiB released", func() bool { return released()-before >= 16<<20 }))
}
