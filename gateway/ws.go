package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/trinehq/trine/internal/wsconn"
	"github.com/trinehq/trine/streammodule/wire"
)

// serveMux serves GET /: the multiplexed socket driven by join/leave
// frames, or with Accept: text/event-stream a multiplexed SSE stream whose
// frames come by POST /stream/session.
func (g *Gateway) serveMux(w http.ResponseWriter, r *http.Request) {
	adm, ok := g.admit(w, r)
	if !ok {
		return
	}
	if transportOf(r) == TransportSSE {
		g.serveSSE(w, r, adm, nil)
		return
	}
	g.serveWS(w, r, adm, nil)
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
	adm, ok := g.admit(w, r)
	if !ok {
		return
	}
	if transportOf(r) == TransportSSE {
		g.serveSSE(w, r, adm, &req)
		return
	}
	g.serveWS(w, r, adm, &req)
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

func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request, adm admission, initial *joinRequest) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "expected a WebSocket upgrade or Accept: text/event-stream", http.StatusBadRequest)
		return
	}
	nc, src, err := wsconn.Upgrade(w, r, g.cfg.WriteTimeout)
	if err != nil {
		return // the upgrader answered the request
	}
	c := g.newConn(adm, r.RemoteAddr)
	c.nc = nc
	c.raw = rawSocket(nc)
	if !g.add(c) {
		_ = nc.Close()
		return
	}
	go c.readLoop(bufio.NewReaderSize(src, readBufferSize), initial)
}

// PlainConn is a connection wrapper whose bytes are those of the
// connection it wraps, unchanged, and written only through it (cmd/trine's
// per-listener connection counts): the writer pool may then write that
// connection's socket directly.
type PlainConn interface {
	PlainConn() net.Conn
}

// rawSocket is nc's socket for the pool's non-blocking writes, or nil: a
// TCP or Unix socket, bare or under PlainConn wrappers. Any other
// wrapper (TLS, a meter or limiter with its own Write) keeps its Write.
func rawSocket(nc net.Conn) syscall.RawConn {
	for {
		p, ok := nc.(PlainConn)
		if !ok {
			break
		}
		nc = p.PlainConn()
	}
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// readBufferSize is the read buffer of a socket, held for its whole life:
// enough for a frame header. A longer payload is read straight into the
// message (bufio reads a request at least as long as its buffer directly),
// so a client frame costs a read or two, while an idle socket, which is
// what most sockets are, holds 16 bytes rather than a page.
const readBufferSize = 16

// readLoop reads client frames until the connection ends, then finishes it.
func (c *conn) readLoop(br *bufio.Reader, initial *joinRequest) {
	defer c.finish()
	if initial != nil {
		c.join(*initial, false)
	}
	c.rd = wsconn.Reader{Src: br, MaxMessage: c.g.cfg.MaxFrameBytes, Peer: (*wsPeer)(c)}
	for {
		_, msg, err := c.rd.Next()
		if err != nil {
			if code, reason, ok := wsconn.CloseCode(err); ok {
				c.shutdown(code, reason)
			}
			return
		}
		c.handle(msg)
	}
}

// wsPeer is a conn as its reader's wsconn.Peer.
type wsPeer conn

func (p *wsPeer) Ping(b []byte) error {
	(*conn)(p).enqueue(out{op: wsconn.OpPong, data: b})
	return nil
}

func (p *wsPeer) FrameRead() { p.lastRead.Store(time.Now().UnixNano()) }

// clientFrame is a frame from the browser.
type clientFrame struct {
	Type string     `json:"type"`
	Data *frameData `json:"data"`
}

// frameData is a client frame's data.
type frameData struct {
	SubscriptionID *string         `json:"subscriptionId"`
	StreamName     *string         `json:"streamName"`
	GroupID        *string         `json:"groupId"`
	ID             *string         `json:"id"`
	Since          json.RawMessage `json:"since"`
	Token          *string         `json:"token"`
	Presence       json.RawMessage `json:"presence"`
	Limit          *int            `json:"limit"`
	After          *string         `json:"after"`
	MS             json.RawMessage `json:"ms"`
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
	case "auth":
		var token *string
		if f.Data != nil {
			token = f.Data.Token
		}
		c.refresh(token)
		return
	case "presence":
		c.presencePage(f.Data)
		return
	case "latency":
		c.clientLatency(f.Data)
		return
	case "join", "leave":
	default:
		c.sendError(nil, "bad_frame", "unknown frame type "+strconv.Quote(f.Type)+"; want join, leave, presence, latency, ping or auth")
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
	w, code, why := c.g.parsePresence(d.Presence)
	switch {
	case code != "":
		c.sendError(quoted, code, why)
		return
	case w != nil && req.item != "":
		c.sendError(quoted, "bad_frame", "presence is for group subscriptions; drop id or presence")
		return
	case w != nil:
		if code, msg := c.g.presence.reserve(c, w); code != "" {
			c.sendError(quoted, code, msg)
			return
		}
		req.presence = w
	}
	c.join(req, true)
}

// presencePage answers a page request of a presence subscription.
func (c *conn) presencePage(d *frameData) {
	if d == nil || d.SubscriptionID == nil {
		c.sendError(nil, "bad_frame", "presence needs data.subscriptionId")
		return
	}
	quoted := wire.String(nil, *d.SubscriptionID)
	c.mu.Lock()
	s := c.subs.get(*d.SubscriptionID)
	c.mu.Unlock()
	if s == nil || s.presence == nil {
		c.sendError(quoted, "bad_frame", "no presence subscription with this subscriptionId")
		return
	}
	limit := maxPresencePage
	if d.Limit != nil {
		if *d.Limit <= 0 {
			c.sendError(quoted, "bad_frame", "limit must be above 0")
			return
		}
		limit = min(*d.Limit, maxPresencePage)
	}
	after := ""
	if d.After != nil {
		after = *d.After
	}
	f, ok := c.g.presence.page(s, after, limit)
	if !ok {
		c.sendError(quoted, "presence_not_ready", "this subscription has no presence yet: its join is not allowed (yet), and pages follow its sync")
		return
	}
	c.enqueue(out{data: f, sub: s.quotedID})
}

// maxPresencePage is the largest page of members one request gets.
const maxPresencePage = 1000
