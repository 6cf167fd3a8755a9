package contract

import (
	"container/list"
	"sync"
)

// lru is a cache bounded by entry count and by a byte size given per entry;
// the least recently used entries go first. It is safe for concurrent use.
type lru[K comparable, V any] struct {
	mu       sync.Mutex
	maxCount int
	maxBytes int64
	bytes    int64
	order    *list.List // of *lruEntry[K, V], most recent first
	byKey    map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key   K
	value V
	size  int64
}

func newLRU[K comparable, V any](maxCount int, maxBytes int64) *lru[K, V] {
	return &lru[K, V]{maxCount: maxCount, maxBytes: maxBytes, order: list.New(), byKey: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).value, true
}

// put keeps v under k unless v alone is over the byte bound.
func (c *lru[K, V]) put(k K, v V, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.remove(e)
	}
	if size > c.maxBytes {
		return
	}
	c.byKey[k] = c.order.PushFront(&lruEntry[K, V]{key: k, value: v, size: size})
	c.bytes += size
	for c.order.Len() > c.maxCount || c.bytes > c.maxBytes {
		c.remove(c.order.Back())
	}
}

func (c *lru[K, V]) delete(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.remove(e)
	}
}

func (c *lru[K, V]) remove(e *list.Element) {
	ent := e.Value.(*lruEntry[K, V])
	c.order.Remove(e)
	delete(c.byKey, ent.key)
	c.bytes -= ent.size
}

// len reports the entry count and their bytes.
func (c *lru[K, V]) len() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.bytes
}
