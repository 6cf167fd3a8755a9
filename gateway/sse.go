package gateway

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"strconv"
	"time"

	"github.com/trinehq/trine/internal/wsconn"
)

// serveSSE streams one subscription (req), or with req nil those that
// POST /stream/session joins, as Server-Sent Events: each frame is one
// event whose id is its sequence, so EventSource's Last-Event-ID resumes
// after the last event received (one subscription). A stream silent for
// Config.SSEKeepAlive gets a comment. Its Trine-Session header names it
// for POST /stream/session and /stream/auth.
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request, adm admission, req *joinRequest) {
	c := g.newConn(adm, r.RemoteAddr)
	c.sse = http.NewResponseController(w)
	c.wake = make(chan struct{}, 1)
	c.session = rand.Text()
	c.post = new(sessionPosts)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set(SessionHeader, c.session)
	w.WriteHeader(http.StatusOK)
	if !g.add(c) {
		return
	}
	defer c.finish()
	keepAlive := time.NewTimer(g.cfg.SSEKeepAlive)
	defer keepAlive.Stop()
	if err := c.sse.Flush(); err != nil {
		return
	}
	if req != nil {
		c.join(*req, false)
	}
	var buf []byte
	for {
		quiet := false
		select {
		case <-r.Context().Done():
			return
		case <-c.wake:
		case <-keepAlive.C:
			quiet = true
		}
		batch, closeNow, _, _ := c.take()
		buf = buf[:0]
		for _, o := range batch {
			buf = appendSSE(buf, o)
		}
		if quiet && len(buf) == 0 {
			buf = append(buf, ": ping\n\n"...)
		}
		if len(buf) > 0 {
			keepAlive.Reset(g.cfg.SSEKeepAlive)
			_ = c.sse.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := c.sse.Flush(); err != nil {
				return
			}
			c.delivered(batch, TransportSSE)
		}
		if closeNow {
			return
		}
		c.recycle(batch)
	}
}

// appendSSE frames o as one event; a ping is a comment line. The parts of
// a fragmented message make one event: the first starts it, the last ends
// it.
func appendSSE(buf []byte, o out) []byte {
	if o.op == wsconn.OpPing {
		return append(buf, ": ping\n\n"...)
	}
	if o.op != 0 {
		return buf
	}
	if o.frag <= fragFirst {
		if o.seq > 0 {
			buf = append(buf, "id: "...)
			buf = strconv.AppendUint(buf, o.seq, 10)
			buf = append(buf, '\n')
		}
		buf = append(buf, "data: "...)
	}
	payload := appendPayload(nil, o)
	for {
		line, rest, more := bytes.Cut(payload, []byte{'\n'})
		buf = append(buf, bytes.TrimSuffix(line, []byte{'\r'})...)
		if !more {
			break
		}
		buf = append(buf, "\ndata: "...)
		payload = rest
	}
	if o.frag == 0 || o.frag == fragLast {
		buf = append(buf, "\n\n"...)
	}
	return buf
}
