package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/streammodule/wire"
)

// serveMux serves GET /: the multiplexed socket driven by join/leave frames.
func (g *Gateway) serveMux(w http.ResponseWriter, r *http.Request) {
	authCtx, ok := g.admit(w, r)
	if !ok {
		return
	}
	g.serveWS(w, r, authCtx, nil)
}

// serveGroup serves one group: a WebSocket, or SSE when the client accepts
// text/event-stream, subscribed to the group (or one item with ?item_id=),
// resuming after ?since= or Last-Event-ID.
func (g *Gateway) serveGroup(w http.ResponseWriter, r *http.Request, stream, group string) {
	req := joinRequest{stream: stream, group: group, item: r.URL.Query().Get("item_id")}
	since := r.URL.Query().Get("since")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		since = id
	}
	if since != "" {
		n, err := strconv.ParseUint(since, 10, 64)
		if err != nil {
			http.Error(w, "since must be a sequence number", http.StatusBadRequest)
			return
		}
		req.since = &n
	}
	if msg := g.checkNames(req.stream, req.group, req.item); msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	authCtx, ok := g.admit(w, r)
	if !ok {
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		g.serveSSE(w, r, authCtx, req)
		return
	}
	g.serveWS(w, r, authCtx, &req)
}

// checkNames checks a subscription's stream, group and item names as the
// stream module checks them on writes.
func (g *Gateway) checkNames(names ...string) string {
	for i, n := range names {
		if n == "" && i < 2 {
			return "stream and group names must not be empty"
		}
		if len(n) > g.cfg.MaxNameBytes {
			return fmt.Sprintf("a name is %d bytes long, the limit is %d", len(n), g.cfg.MaxNameBytes)
		}
		if !utf8.ValidString(n) {
			return "names must be valid UTF-8"
		}
	}
	return ""
}

func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request, authCtx json.RawMessage, initial *joinRequest) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "expected a WebSocket upgrade or Accept: text/event-stream", http.StatusBadRequest)
		return
	}
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: g.cfg.WriteTimeout}.Upgrade(r, w)
	if err != nil {
		return // the upgrader answered the request
	}
	c := g.newConn(authCtx, r.RemoteAddr)
	c.nc = nc
	// Keep only what the HTTP server already read, not its buffers.
	var src io.Reader = nc
	if n := rw.Reader.Buffered(); n > 0 {
		pre, _ := rw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc)
	}
	if !g.add(c) {
		_ = nc.Close()
		return
	}
	go c.readLoop(bufio.NewReaderSize(src, 512), initial)
}

// readLoop reads client frames until the connection ends, then finishes it.
func (c *conn) readLoop(br *bufio.Reader, initial *joinRequest) {
	defer c.finish()
	if initial != nil {
		c.join(*initial, false)
	}
	var msg []byte
	var msgOp ws.OpCode
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if !h.Masked || h.Rsv != 0 {
			c.shutdown(closeProtocol, "client frames must be masked and use no extensions")
			return
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				c.shutdown(closeProtocol, "bad control frame")
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpPing:
				c.enqueue(out{op: opPong, data: p})
			case ws.OpClose:
				code := closeNormal
				if len(p) >= 2 {
					code = int(binary.BigEndian.Uint16(p))
				}
				if code == 1005 || code < 1000 || code >= 5000 {
					code = closeNormal
				}
				c.shutdown(code, "")
				return
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && msg == nil:
			c.shutdown(closeProtocol, "continuation without a message")
			return
		case h.OpCode != ws.OpContinuation && msg != nil:
			c.shutdown(closeProtocol, "new message inside a fragmented one")
			return
		}
		if int64(len(msg))+h.Length > c.g.cfg.MaxFrameBytes {
			c.shutdown(closeTooBig, "message larger than "+strconv.FormatInt(c.g.cfg.MaxFrameBytes, 10)+" bytes")
			return
		}
		if h.OpCode != ws.OpContinuation {
			msgOp = h.OpCode
			msg = make([]byte, 0, h.Length)
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(br, msg[start:]); err != nil {
			return
		}
		ws.Cipher(msg[start:], h.Mask, 0)
		if !h.Fin {
			continue
		}
		if msgOp == ws.OpText && !utf8.Valid(msg) {
			c.shutdown(closeInvalidText, "text message is not valid UTF-8")
			return
		}
		if msgOp == ws.OpText || msgOp == ws.OpBinary {
			c.handle(msg)
		}
		msg = nil
	}
}

// clientFrame is a frame from the browser.
type clientFrame struct {
	Type string `json:"type"`
	Data *struct {
		SubscriptionID *string         `json:"subscriptionId"`
		StreamName     *string         `json:"streamName"`
		GroupID        *string         `json:"groupId"`
		ID             *string         `json:"id"`
		Since          json.RawMessage `json:"since"`
	} `json:"data"`
}

var errFrameFields = errors.New("join and leave need data.subscriptionId, data.streamName and data.groupId strings")

// handle serves one client message: join, leave or ping. A bad one gets an
// error frame; the socket stays open.
func (c *conn) handle(msg []byte) {
	if len(bytes.TrimSpace(msg)) == 0 {
		return
	}
	var f clientFrame
	if err := json.Unmarshal(msg, &f); err != nil {
		c.sendError(nil, "bad_frame", "frame is not a JSON object: "+err.Error())
		return
	}
	switch f.Type {
	case "ping":
		c.enqueue(out{data: []byte(`{"type":"pong"}`)})
		return
	case "join", "leave":
	default:
		c.sendError(nil, "bad_frame", "unknown frame type "+strconv.Quote(f.Type)+"; want join, leave or ping")
		return
	}
	d := f.Data
	if d == nil || d.SubscriptionID == nil || d.StreamName == nil || d.GroupID == nil {
		c.sendError(nil, "bad_frame", errFrameFields.Error())
		return
	}
	quoted := wire.String(nil, *d.SubscriptionID)
	if f.Type == "leave" {
		c.leave(*d.SubscriptionID)
		return
	}
	req := joinRequest{id: *d.SubscriptionID, stream: *d.StreamName, group: *d.GroupID}
	if d.ID != nil {
		req.item = *d.ID
	}
	if msg := c.g.checkNames(req.stream, req.group, req.item); msg != "" {
		c.sendError(quoted, "bad_frame", msg)
		return
	}
	if len(d.Since) > 0 && string(d.Since) != "null" {
		n, err := strconv.ParseUint(strings.Trim(string(d.Since), `"`), 10, 64)
		if err != nil {
			c.sendError(quoted, "bad_frame", "since must be a sequence number")
			return
		}
		req.since = &n
	}
	c.join(req, true)
}
