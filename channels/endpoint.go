package channels

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// pathPrefix precedes the channel id in the endpoint's path.
const pathPrefix = "/ws/channels/"

// ServeHTTP serves GET /ws/channels/{id}?key=KEY&dir=write|read; mount it at
// that prefix (the id is what follows the last "/ws/channels/" of the path).
//
// Before the upgrade it answers 403 for a browser origin that is not
// allowed (Config.AllowedOrigins), 404 for an unknown channel, a wrong key or a
// dir other than write and read, and 409 when that end of the channel was
// already taken (iii accepts the upgrade and closes at once instead). Each
// end can be taken once; a failed upgrade does not use it up.
//
// The writer's socket ends with its own close, with 1009 for a frame over
// Config.MaxFrameBytes, or with 1001 when the reader goes away, the channel
// expires or the hub closes; its unread frames are then dropped. The reader's
// socket gets every frame and then 1000 once the writer has closed (or its
// connection ended), 1011 if the writer was cut off for an oversize frame,
// 1008 if the reader sends a data frame, and 1001 on expiry or Close. Readers
// must accept frames of Config.MaxFrameBytes (coder/websocket reads 32 KiB
// by default).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ref := h.origins.Check(r); ref != nil {
		http.Error(w, "channels: "+ref.Reason, ref.Status)
		return
	}
	i := strings.LastIndex(r.URL.Path, pathPrefix)
	q := r.URL.Query()
	dir := q.Get("dir")
	if i < 0 || (dir != dirWrite && dir != dirRead) {
		http.NotFound(w, r)
		return
	}
	id := r.URL.Path[i+len(pathPrefix):]
	ch, res := h.take(id, q.Get("key"), dir)
	switch res {
	case takeNotFound:
		http.NotFound(w, r)
		return
	case takeConflict:
		http.Error(w, "channels: the "+dir+" end of this channel is already taken", http.StatusConflict)
		return
	}
	defer h.wg.Done()
	log := h.log.With(logChannelID, id, logDirection, dir)
	// The origin was checked above.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		h.untake(ch, dir)
		log.Debug("channel upgrade failed", "error", err)
		return
	}
	defer conn.CloseNow()
	ch.markConnected()
	log.Debug("channel end attached")
	if dir == dirWrite {
		h.serveWriter(r.Context(), ch, conn)
	} else {
		h.serveReader(ch, conn)
	}
	log.Debug("channel end detached")
}

// serveWriter moves the writer's frames into ch.buf until the writer ends
// the stream, or closes the writer's socket when ch is cancelled.
func (h *Hub) serveWriter(ctx context.Context, ch *channel, conn *websocket.Conn) {
	conn.SetReadLimit(h.cfg.MaxFrameBytes)
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = ch.pump(ctx, conn)
	}()
	select {
	case <-done:
	case <-ch.ctx.Done():
		// Closing the socket ends the pump's read.
		st := abortStatus(context.Cause(ch.ctx))
		_ = conn.Close(st.code, st.reason)
		<-done
		return
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		// coder/websocket has sent the 1009 close frame; finish the
		// handshake.
		h.log.Warn("channel writer sent an oversize frame", logChannelID, ch.id, "limit", h.cfg.MaxFrameBytes)
		_ = conn.Close(websocket.StatusMessageTooBig, "")
	}
}

// pump reads the writer's frames into ch.buf. A full buffer stops the
// reading, which pushes back on the writer. When the writer ends the stream
// (any close frame, its connection ending, or an oversize frame), pump sets
// ch.end and closes ch.buf; when ch is cancelled first it returns the cause
// and leaves ch.buf open.
func (ch *channel) pump(ctx context.Context, conn *websocket.Conn) error {
	// Cancelling a read's ctx drops the connection without a close frame;
	// serveWriter closes it properly instead.
	ctx = context.WithoutCancel(ctx)
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			if ch.ctx.Err() != nil {
				return context.Cause(ch.ctx)
			}
			ch.end = statusEOF
			if errors.Is(err, websocket.ErrMessageTooBig) {
				ch.end = statusWriterTooBig
			} else {
				err = nil
			}
			close(ch.buf)
			return err
		}
		f := frame{typ: typ, data: data}
		if err := ch.reserve(ch.ctx, f); err != nil {
			return context.Cause(ch.ctx)
		}
		select {
		case ch.buf <- f:
		case <-ch.ctx.Done():
			return context.Cause(ch.ctx)
		}
	}
}

// writeFrame writes f to a reader's socket within readerWriteTimeout. Its
// context is not the channel's: coder/websocket tears a connection down
// without a close frame when a write's context ends, and the channel's
// ends exactly when the reader should get one (1001 on Abort, say).
// A write still blocked closeGrace after the channel ended is given up.
func writeFrame(ch *channel, conn *websocket.Conn, f frame) error {
	ctx, cancel := context.WithTimeout(context.Background(), readerWriteTimeout)
	defer cancel()
	defer context.AfterFunc(ch.ctx, func() { time.AfterFunc(closeGrace, cancel) })()
	return conn.Write(ctx, f.typ, f.data)
}

// closeGrace is how long a write to a reader may go on once its channel
// ended.
const closeGrace = time.Second

// readerWriteTimeout bounds one write to a reader.
const readerWriteTimeout = 30 * time.Second

// serveReader writes ch.buf to the reader's socket until the stream ends,
// the reader goes away or ch is cancelled. The channel is done when the
// reader is: serveReader removes it, and a writer still attached is closed.
func (h *Hub) serveReader(ch *channel, conn *websocket.Conn) {
	defer h.remove(ch, errReaderGone)
	// Readers send nothing: this read returns when the reader's socket
	// closes, or when it sends a data frame, which closes it with 1008.
	// (conn.CloseRead would do, but its own close waits 15s on itself.)
	var readErr error
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		_, _, readErr = conn.Reader(context.WithoutCancel(ch.ctx))
	}()
	defer func() {
		_ = conn.CloseNow()
		<-gone
	}()
	for {
		select {
		case f, ok := <-ch.buf:
			if !ok {
				_ = conn.Close(ch.end.code, ch.end.reason)
				return
			}
			ch.received(f)
			if err := writeFrame(ch, conn, f); err != nil {
				return
			}
		case <-gone:
			if readErr == nil {
				_ = conn.Close(websocket.StatusPolicyViolation, "readers do not send data")
			}
			return
		case <-ch.ctx.Done():
			st := abortStatus(context.Cause(ch.ctx))
			_ = conn.Close(st.code, st.reason)
			return
		}
	}
}
