package main

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The bounds of releaseIdleMemory: the process is quiet when it allocated
// less than quietAllocBytes since the last look; it then releases when the
// heap holds at least releaseMinBytes, and a quarter of the live heap,
// more than is live.
const (
	quietAllocBytes = 1 << 20
	releaseMinBytes = 16 << 20
)

// releaseIdleMemory hands the heap's free pages back to the system when
// the process goes quiet (--memory-release-idle): it looks every interval
// and, once the process allocated next to nothing since the last look
// while its heap holds much more than is live (the garbage of a burst of
// connects, say), runs debug.FreeOSMemory once. Between collections the
// runtime keeps up to twice the live heap, stacks included, so that an
// idle gateway's RSS would otherwise stay about twice what its sockets
// hold. A busy process allocates more than quietAllocBytes every interval
// and never releases. interval 0 turns it off. It returns when ctx ends.
func releaseIdleMemory(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	var allocs uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		metrics.Read(s)
		quiet := s[0].Value.Uint64()-allocs < quietAllocBytes
		allocs = s[0].Value.Uint64()
		live, held := s[1].Value.Uint64(), s[2].Value.Uint64()+s[3].Value.Uint64()
		if quiet && held > live && held-live >= max(releaseMinBytes, live/4) {
			debug.FreeOSMemory()
			metrics.Read(s[:1])
			allocs = s[0].Value.Uint64()
		}
	}
}
