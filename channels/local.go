package channels

import (
	"context"
	"io"
	"sync"
	"sync/atomic"

	"github.com/trinehq/trine/internal/wsconn"
)

// Frame is one message of a channel: a text message, or (Binary) a chunk of
// the stream's bytes.
type Frame struct {
	Binary bool
	Data   []byte
}

// OpenReader creates a channel whose read end the engine holds itself. It
// returns that end and the ref of the write end, for a remote party to dial.
// The channel buffers bufferSize frames (Config.DefaultBuffer when
// bufferSize < 1; Config.MaxBuffer, which limits FnCreate's callers, does
// not apply). The read end counts as taken: dialling it is refused with
// 409. The caller must Close the reader; until then the channel lives as
// long as a channel made by FnCreate (its writer must attach within
// Config.TTL).
func (h *Hub) OpenReader(bufferSize int) (*LocalReader, Ref, error) {
	ch, err := h.openLocal(bufferSize, dirRead)
	if err != nil {
		return nil, Ref{}, err
	}
	return &LocalReader{h: h, ch: ch}, Ref{ChannelID: ch.id, AccessKey: ch.key, Direction: dirWrite}, nil
}

// OpenWriter creates a channel whose write end the engine holds itself. It
// returns that end and the ref of the read end, for a remote party to dial.
// Buffering and the taken end are as for OpenReader. The caller must Close
// the writer (end of stream) or Abort it; a closed writer's frames wait for
// the reader until Config.TTL after the channel was opened.
func (h *Hub) OpenWriter(bufferSize int) (*LocalWriter, Ref, error) {
	ch, err := h.openLocal(bufferSize, dirWrite)
	if err != nil {
		return nil, Ref{}, err
	}
	return &LocalWriter{h: h, ch: ch, stop: make(chan struct{})}, Ref{ChannelID: ch.id, AccessKey: ch.key, Direction: dirRead}, nil
}

func (h *Hub) openLocal(size int, local string) (*channel, error) {
	if size < 1 {
		size = h.cfg.DefaultBuffer
	}
	ch, err := h.open(size, local, creator{})
	if err != nil {
		return nil, err
	}
	h.log.Debug("channel opened", logChannelID, ch.id, "local_end", local, "buffer_size", size)
	return ch, nil
}

// LocalReader is the engine's read end of a channel (see Hub.OpenReader).
// Next must not be called concurrently with itself; Close may be called at
// any time, from any goroutine.
type LocalReader struct {
	h      *Hub
	ch     *channel
	closed atomic.Bool
}

// Next returns the next frame the remote writer sent, waiting for one until
// ctx is done. It returns io.EOF once the writer has ended the stream (its
// close, or its connection ending) and every frame was read; ErrTruncated
// if the writer was cut off for an oversize frame; ErrEndClosed after
// Close; and another error when the channel expired (no writer within
// Config.TTL) or the hub closed. Frames already buffered are returned
// before any of these but ErrEndClosed.
func (r *LocalReader) Next(ctx context.Context) (Frame, error) {
	if r.closed.Load() {
		return Frame{}, ErrEndClosed
	}
	select {
	case f, ok := <-r.ch.buf:
		return r.frame(f, ok)
	default:
	}
	select {
	case f, ok := <-r.ch.buf:
		return r.frame(f, ok)
	case <-r.ch.ctx.Done():
		if r.closed.Load() {
			return Frame{}, ErrEndClosed
		}
		return Frame{}, context.Cause(r.ch.ctx)
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

func (r *LocalReader) frame(f frame, ok bool) (Frame, error) {
	if !ok {
		// ch.end was set before buf was closed.
		if r.ch.end == statusWriterTooBig || r.ch.end == statusWriterBroke {
			return Frame{}, ErrTruncated
		}
		return Frame{}, io.EOF
	}
	r.ch.received(f)
	return Frame{Binary: f.op == wsconn.OpBinary, Data: f.data}, nil
}

// Connected is closed once the remote writer's socket has attached.
func (r *LocalReader) Connected() <-chan struct{} { return r.ch.connected }

// Close removes the channel: a writer still attached is closed with 1001
// (going away) and its unread frames are dropped, and a writer that comes
// later gets 404. Close may be called more than once.
func (r *LocalReader) Close() {
	r.closed.Store(true)
	r.h.remove(r.ch, errReaderGone)
}

// LocalWriter is the engine's write end of a channel (see Hub.OpenWriter).
// Write must not be called concurrently with itself; Close and Abort may be
// called at any time, from any goroutine.
type LocalWriter struct {
	h  *Hub
	ch *channel

	stopOnce sync.Once
	stop     chan struct{} // closed by Close and Abort: a blocked Write gives up

	mu    sync.Mutex // serialises sends on ch.buf with its close
	ended bool       // ch.buf is closed; guarded by mu
}

// Write sends one frame, a binary one (bytes of the stream) or a text one
// (a message). It waits while the channel's buffer is full, until ctx is
// done. It keeps data until the reader has it: do not modify data
// afterwards. It fails with ErrEndClosed after Close or Abort, and with
// another error when the reader went away, the channel expired (no reader
// within Config.TTL) or the hub closed.
func (w *LocalWriter) Write(ctx context.Context, binary bool, data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return ErrEndClosed
	}
	if err := context.Cause(w.ch.ctx); err != nil {
		return err // even if the buffer has room
	}
	f := frame{op: wsconn.OpText, data: data}
	if binary {
		f.op = wsconn.OpBinary
	}
	if err := w.reserve(ctx, &f); err != nil {
		return err
	}
	select {
	case w.ch.buf <- f:
		return nil
	case <-w.stop:
		w.ch.received(f)
		return ErrEndClosed
	case <-w.ch.ctx.Done():
		w.ch.received(f)
		return context.Cause(w.ch.ctx)
	case <-ctx.Done():
		w.ch.received(f)
		return ctx.Err()
	}
}

// reserve takes room in the channel's budget for f, waiting while the
// reader is behind by a byte cap.
func (w *LocalWriter) reserve(ctx context.Context, f *frame) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(w.ch.ctx, cancel)()
	go func() { // Close or Abort while waiting
		select {
		case <-w.stop:
			cancel()
		case <-rctx.Done():
		}
	}()
	if err := w.ch.reserve(rctx, f); err != nil {
		select {
		case <-w.stop:
			return ErrEndClosed
		default:
		}
		if err := context.Cause(w.ch.ctx); err != nil {
			return err
		}
		return ctx.Err()
	}
	return nil
}

// Close ends the stream: the reader gets every frame written and then a
// normal close (1000), even when it attaches after Close (within
// Config.TTL). A Write blocked at the same time fails with ErrEndClosed.
// Close may be called more than once, and after Abort does nothing.
func (w *LocalWriter) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return
	}
	w.ended = true
	w.ch.end = statusEOF
	close(w.ch.buf)
}

// Abort removes the channel, closed or not: a reader still attached is
// closed with 1001 (going away) and the frames it has not read are
// dropped, and a reader that comes later gets 404. Once the reader has had
// the whole stream, Abort changes nothing. Abort may be called more than
// once.
func (w *LocalWriter) Abort() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.mu.Lock()
	w.ended = true // ch.buf stays open: nobody reads it to its end now
	w.mu.Unlock()
	w.h.remove(w.ch, errWriterGone)
}
