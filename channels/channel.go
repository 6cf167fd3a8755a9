package channels

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// The two ends of a channel, as spelled in refs and in the dir query
// parameter.
const (
	dirWrite = "write"
	dirRead  = "read"
)

// frame is one WebSocket data message, forwarded as is.
type frame struct {
	op     byte // wsconn.OpText or OpBinary
	data   []byte
	weight int64 // what it holds of the channel's budget
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
	// budget bounds the bytes in buf, and in buf's of the same creator
	// and of the whole hub: a sender takes a frame's weight before it
	// reads or sends it, the receiver gives it back.
	budget *budget
	// owner is the connection that created the channel, nil for none;
	// its fields are guarded by Hub.mu.
	owner *owner
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

// newChannel returns a channel of size frames whose buffered bytes count
// against budget; once the channel is torn down (its ctx cancelled) the
// bytes still in buf are given back.
func newChannel(parent context.Context, size int, b *budget, o *owner) *channel {
	ctx, cancel := context.WithCancelCause(parent)
	context.AfterFunc(ctx, b.free)
	return &channel{id: newID(), key: newKey(), created: time.Now(),
		buf: make(chan frame, size), budget: b, owner: o,
		ctx: ctx, cancel: cancel, connected: make(chan struct{})}
}

// reserve waits until the budget has room for f's bytes, or ctx or the
// channel ends, and sets f's weight.
func (ch *channel) reserve(ctx context.Context, f *frame) error {
	n := ch.budget.weight(int64(len(f.data)))
	if err := ch.budget.acquire(ctx, n); err != nil {
		return err
	}
	f.weight = n
	return nil
}

// received gives back the bytes of a frame taken from buf.
func (ch *channel) received(f frame) { ch.budget.release(f.weight) }

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
