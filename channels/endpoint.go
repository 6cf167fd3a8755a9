package channels

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/trinehq/trine/internal/wsconn"
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
// connection ended), 1011 if the writer was cut off for an oversize frame
// or another broken rule (1007 to the writer for a text message that is
// not UTF-8),
// 1008 if the reader sends a data frame, and 1001 on expiry or Close. Readers
// must accept frames of Config.MaxFrameBytes (coder/websocket reads 32 KiB
// by default). A reader that sends a message over Config.MaxFrameBytes
// gets 1009.
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
	if err := wsconn.CheckUpgrade(r); err != nil {
		// Before the end is taken: a request the upgrade would refuse
		// must not use it up, even for a moment.
		http.Error(w, "channels: "+err.Error(), http.StatusBadRequest)
		return
	}
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
	nc, src, err := wsconn.Upgrade(w, r, readerWriteTimeout)
	if err != nil {
		h.untake(ch, dir)
		log.Debug("channel upgrade failed", "error", err)
		return
	}
	conn := wsconn.NewConn(nc, src, 4<<10, h.cfg.MaxFrameBytes, readerWriteTimeout)
	defer nc.Close()
	ch.markConnected()
	log.Debug("channel end attached")
	if dir == dirWrite {
		h.serveWriter(ch, conn)
	} else {
		h.serveReader(ch, conn)
	}
	log.Debug("channel end detached")
}

// serveWriter moves the writer's frames into ch.buf until the writer ends
// the stream, or closes the writer's socket when ch is cancelled.
func (h *Hub) serveWriter(ch *channel, conn *wsconn.Conn) {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		err = ch.pump(conn)
	}()
	select {
	case <-done:
	case <-ch.ctx.Done():
		// The close frame, then the pump's read ends with the writer's
		// answer or after the grace.
		st := abortStatus(context.Cause(ch.ctx))
		conn.Close(st.code, st.reason)
		_ = conn.NC.SetReadDeadline(time.Now().Add(wsconn.CloseGrace))
		<-done
		return
	}
	if code, _, _ := wsconn.CloseCode(err); code == wsconn.CloseTooBig {
		h.log.Warn("channel writer sent an oversize frame", logChannelID, ch.id, "limit", h.cfg.MaxFrameBytes)
	}
	conn.CloseAfter(err)
}

// pump reads the writer's frames into ch.buf. A frame is read off the
// socket only once the channel's budget has room for it, so a full buffer
// (or a creator or hub at its byte cap) stops the reading, which pushes
// back on the writer. When the writer ends the stream (any close frame,
// its connection ending, or an oversize frame), pump sets ch.end, closes
// ch.buf and returns the read's error; when ch is cancelled first it
// returns the cause and leaves ch.buf open.
func (ch *channel) pump(conn *wsconn.Conn) error {
	var admitted int64 // the weight of the message being read
	conn.Reader.Admit = func(n int64) error {
		n = ch.budget.weight(admitted+n) - admitted // a message weighs at most the smallest cap
		if err := ch.budget.acquire(ch.ctx, n); err != nil {
			return err
		}
		admitted += n
		return nil
	}
	for {
		op, data, err := conn.Next()
		if err != nil {
			ch.budget.release(admitted)
			if ch.ctx.Err() != nil {
				return context.Cause(ch.ctx)
			}
			ch.end = statusEOF
			var broke *wsconn.Error
			if errors.As(err, &broke) {
				ch.end = statusWriterBroke
				if broke.Code == wsconn.CloseTooBig {
					ch.end = statusWriterTooBig
				}
			}
			close(ch.buf)
			return err
		}
		f := frame{op: op, data: data, weight: admitted}
		admitted = 0
		select {
		case ch.buf <- f:
		case <-ch.ctx.Done():
			ch.received(f)
			return context.Cause(ch.ctx)
		}
	}
}

// writeFrame writes f to a reader's socket within readerWriteTimeout; a
// write still blocked CloseGrace after the channel ended is given up.
func writeFrame(ch *channel, conn *wsconn.Conn, f frame) error {
	defer context.AfterFunc(ch.ctx, func() {
		_ = conn.NC.SetWriteDeadline(time.Now().Add(wsconn.CloseGrace))
	})()
	return conn.Write(wsconn.Frame(f.op, f.data))
}

// readerWriteTimeout bounds one write to a reader.
const readerWriteTimeout = 30 * time.Second

// serveReader writes ch.buf to the reader's socket until the stream ends,
// the reader goes away or ch is cancelled. The channel is done when the
// reader is: serveReader removes it, and a writer still attached is closed.
func (h *Hub) serveReader(ch *channel, conn *wsconn.Conn) {
	defer h.remove(ch, errReaderGone)
	// Readers send nothing: this read returns when the reader's socket
	// closes, or when it sends a data message, which closes it with 1008.
	var readErr error
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		_, _, readErr = conn.Next()
	}()
	// The socket ends once the reader answered the close frame (its
	// answer ends the read), or after the grace.
	defer func() {
		_ = conn.NC.SetReadDeadline(time.Now().Add(wsconn.CloseGrace))
		<-gone
	}()
	for {
		select {
		case f, ok := <-ch.buf:
			if !ok {
				conn.Close(ch.end.code, ch.end.reason)
				return
			}
			ch.received(f)
			if err := writeFrame(ch, conn, f); err != nil {
				return
			}
		case <-gone:
			if readErr == nil {
				conn.Close(wsconn.ClosePolicy, "readers do not send data")
			} else if code, reason, ok := wsconn.CloseCode(readErr); ok {
				conn.Close(code, reason)
			}
			return
		case <-ch.ctx.Done():
			st := abortStatus(context.Cause(ch.ctx))
			conn.Close(st.code, st.reason)
			return
		}
	}
}
