package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// serveSSE streams one subscription as Server-Sent Events: each frame is
// one event whose id is its sequence, so EventSource's Last-Event-ID
// resumes after the last event received.
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request, authCtx json.RawMessage, req joinRequest) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	c := g.newConn(authCtx, r.RemoteAddr)
	c.sse = http.NewResponseController(w)
	c.wake = make(chan struct{}, 1)
	if !g.add(c) {
		return
	}
	defer c.finish()
	if err := c.sse.Flush(); err != nil {
		return
	}
	c.join(req, false)
	var buf []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.wake:
		}
		batch, closeNow, _, _ := c.take()
		buf = buf[:0]
		for _, o := range batch {
			buf = appendSSE(buf, o)
		}
		if len(buf) > 0 {
			_ = c.sse.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
			if _, err := w.Write(buf); err != nil {
				return
			}
			if err := c.sse.Flush(); err != nil {
				return
			}
		}
		if closeNow {
			return
		}
		c.recycle(batch)
	}
}

// appendSSE frames o as one event; a ping is a comment line.
func appendSSE(buf []byte, o out) []byte {
	if o.op == opPing {
		return append(buf, ": ping\n\n"...)
	}
	if o.op != 0 {
		return buf
	}
	if o.seq > 0 {
		buf = append(buf, "id: "...)
		buf = strconv.AppendUint(buf, o.seq, 10)
		buf = append(buf, '\n')
	}
	payload := appendPayload(nil, o)
	for line := range bytes.SplitSeq(payload, []byte{'\n'}) {
		buf = append(buf, "data: "...)
		buf = append(buf, bytes.TrimSuffix(line, []byte{'\r'})...)
		buf = append(buf, '\n')
	}
	return append(buf, '\n')
}
