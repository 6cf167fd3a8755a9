package channels

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// budget holds the bytes buffered in one channel against every byte cap
// that applies to it, taken in this order: the channel's own
// (Config.MaxBufferBytes), its creator's (MaxConnBufferBytes) if it has
// one, and the hub's (MaxTotalBufferBytes). A writer takes a frame's
// weight before the frame is read, the reader gives it back; free gives
// back whatever a torn-down channel still held.
type budget struct {
	caps     []*semaphore.Weighted
	max      int64         // the smallest cap: no frame weighs more
	buffered *atomic.Int64 // the hub's count of bytes held

	mu    sync.Mutex
	held  int64
	freed bool
}

func newBudget(caps []*semaphore.Weighted, sizes []int64, buffered *atomic.Int64) *budget {
	return &budget{caps: caps, max: slices.Min(sizes), buffered: buffered}
}

// weight is what n bytes take from the caps.
func (b *budget) weight(n int64) int64 { return min(n, b.max) }

// acquire takes n bytes (a weight) from every cap, waiting until each has
// room or ctx ends. After free it takes nothing and fails.
func (b *budget) acquire(ctx context.Context, n int64) error {
	if n <= 0 {
		return nil
	}
	for i, c := range b.caps {
		if err := c.Acquire(ctx, n); err != nil {
			for _, c := range b.caps[:i] {
				c.Release(n)
			}
			return err
		}
	}
	b.mu.Lock()
	if b.freed {
		b.mu.Unlock()
		b.releaseCaps(n)
		return errFreed
	}
	b.held += n
	b.mu.Unlock()
	b.buffered.Add(n)
	return nil
}

// release gives back n bytes taken by acquire; after free it does nothing.
func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	if b.freed {
		b.mu.Unlock()
		return
	}
	b.held -= n
	b.mu.Unlock()
	b.give(n)
}

// free gives back everything the channel holds, for good.
func (b *budget) free() {
	b.mu.Lock()
	if b.freed {
		b.mu.Unlock()
		return
	}
	b.freed = true
	n := b.held
	b.held = 0
	b.mu.Unlock()
	b.give(n)
}

func (b *budget) give(n int64) {
	if n <= 0 {
		return
	}
	b.buffered.Add(-n)
	b.releaseCaps(n)
}

func (b *budget) releaseCaps(n int64) {
	for _, c := range b.caps {
		c.Release(n)
	}
}
