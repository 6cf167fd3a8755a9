package channels

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// The two ends of a channel, as spelled in refs and in the dir query
// parameter.
const (
	dirWrite = "write"
	dirRead  = "read"
)

// frame is one WebSocket data message, forwarded as is.
type frame struct {
	op   byte // wsconn.OpText or OpBinary
	data []byte
}

// channel is one pipe from a writer socket to a reader socket.
type channel struct {
	id      string
	key     string
	created time.Time

	// buf holds the frames between the writer and the reader. Only the
	// writer's pump sends on it, and it closes buf at the end of the
	// stream after setting end.
	buf chan frame
	// room bounds the bytes in buf: a sender takes a frame's size (at most
	// the whole budget) before it sends, the receiver gives it back.
	room       *semaphore.Weighted
	roomBudget int64
	// end is how the reader's socket closes once buf is drained; written
	// before close(buf), read after it.
	end closeStatus

	// ctx is cancelled, with one of the causes in errors.go, when the
	// channel is torn down before the stream ended; both ends then close.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// writer and reader are set once an end is taken. Guarded by Hub.mu.
	writer, reader bool

	// connected is closed once a remote party's socket is attached to an
	// end (after its upgrade succeeded).
	connected     chan struct{}
	connectedOnce sync.Once
}

// markConnected records that a remote end's socket is attached.
func (ch *channel) markConnected() { ch.connectedOnce.Do(func() { close(ch.connected) }) }

func newChannel(parent context.Context, size int, budget int64) *channel {
	ctx, cancel := context.WithCancelCause(parent)
	return &channel{id: newID(), key: newKey(), created: time.Now(),
		buf: make(chan frame, size), room: semaphore.NewWeighted(budget), roomBudget: budget,
		ctx: ctx, cancel: cancel, connected: make(chan struct{})}
}

func (ch *channel) weight(f frame) int64 { return min(int64(len(f.data)), ch.roomBudget) }

// reserve waits until buf has room for f's bytes, or ctx or the channel
// ends.
func (ch *channel) reserve(ctx context.Context, f frame) error {
	if n := ch.weight(f); n > 0 {
		return ch.room.Acquire(ctx, n)
	}
	return nil
}

// received gives back the room of a frame taken from buf.
func (ch *channel) received(f frame) {
	if n := ch.weight(f); n > 0 {
		ch.room.Release(n)
	}
}

// attached reports whether both ends have been taken. Callers hold Hub.mu.
func (ch *channel) attached() bool { return ch.writer && ch.reader }

// taken returns the taken flag of dir. Callers hold Hub.mu.
func (ch *channel) taken(dir string) *bool {
	if dir == dirWrite {
		return &ch.writer
	}
	return &ch.reader
}

// newID returns a random version 4 UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// newKey returns 128 random bits in hex.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
