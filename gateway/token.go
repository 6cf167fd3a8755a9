package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/trinehq/trine/internal/jwtauth"
)

// tokenExpired closes a connection whose token's exp passed (unless an
// auth frame brought a fresh one meanwhile).
func (c *conn) tokenExpired() {
	if t := c.token.Load(); t != nil && time.Until(t.Expires) > 0 {
		c.expiry.Reset(time.Until(t.Expires))
		return
	}
	c.shutdown(CloseTokenExpired, "token expired; reconnect with a fresh token")
}

// refresh serves an auth frame: a fresh token for the same subject
// replaces the connection's, moving its expiry; subscriptions the new
// token's streams claim does not allow end with an unauthorized frame. A
// refused token leaves the current one in place, until its exp.
func (c *conn) refresh(raw *string) {
	t, code, msg := c.renew(raw)
	if code != "" {
		c.sendError(nil, code, msg)
		return
	}
	c.enqueue(out{data: append(strconv.AppendInt([]byte(`{"type":"auth","expiresAt":`), t.Expires.UnixMilli(), 10), '}')})
}

// renew replaces the connection's token with raw, a fresh one for the same
// subject, moving its expiry; subscriptions the new token's streams claim
// does not allow end with an unauthorized frame. A refusal (code and
// message) changes nothing.
func (c *conn) renew(raw *string) (t jwtauth.Token, code, msg string) {
	switch {
	case c.g.cfg.Tokens == nil:
		return t, "bad_frame", "this gateway does not take tokens"
	case raw == nil || *raw == "":
		return t, "bad_frame", "auth needs data.token"
	}
	t, err := c.g.cfg.Tokens.Verify(*raw)
	if err != nil {
		return t, "unauthorized", "token refused (" + err.Error() + "); the current one stays until it expires"
	}
	if old := c.token.Load(); old != nil && old.Subject != t.Subject {
		return t, "unauthorized", "a fresh token must have the same sub as the connection's"
	}
	c.token.Store(&t)
	c.expiry.Reset(time.Until(t.Expires))
	c.mu.Lock()
	gone := c.subs.removeIf(func(s *subscription) bool { return !t.Allows(s.stream, s.group) })
	c.mu.Unlock()
	for _, s := range gone {
		c.drop(s)
		c.denied(s)
	}
	return t, "", ""
}

// SessionHeader names an SSE stream's session on its response, for
// POST /stream/auth.
const SessionHeader = "Trine-Session"

// serveAuth serves POST /stream/auth: {"session":…,"token":…} renews the
// token of the SSE stream whose Trine-Session header named that session,
// as an auth frame renews a WebSocket's. 204 when it took the token;
// otherwise the status and the code of the refusal, which changes
// nothing. The body may be sent as text/plain, which needs no preflight.
func (g *Gateway) serveAuth(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Session string  `json:"session"`
		Token   *string `json:"token"`
	}
	c := g.sessionPost(w, r, &in.Session, &in, `{"session":…,"token":…}`)
	if c == nil {
		return
	}
	_, code, msg := c.renew(in.Token)
	switch code {
	case "":
		w.WriteHeader(http.StatusNoContent)
	case "unauthorized":
		http.Error(w, code+": "+msg, http.StatusUnauthorized)
	default:
		http.Error(w, code+": "+msg, http.StatusBadRequest)
	}
}

// serveSession serves POST /stream/session: {"session":…,"frames":[…]}
// hands the frames (join, leave, auth, ping, as a WebSocket takes them)
// to the multiplexed SSE stream that session names, in order; their
// answers and errors come on that stream. 204 when it took them.
func (g *Gateway) serveSession(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Session string            `json:"session"`
		Frames  []json.RawMessage `json:"frames"`
	}
	c := g.sessionPost(w, r, &in.Session, &in, `{"session":…,"frames":[…]}`)
	if c == nil {
		return
	}
	c.post.mu.Lock()
	for _, f := range in.Frames {
		c.handle(f)
	}
	c.post.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// sessionPost checks a POST to an SSE session: its origin, its body
// (decoded into in, naming the session), and the session's rate
// (Config.SessionPosts a second). On failure it has answered r and
// returns nil.
func (g *Gateway) sessionPost(w http.ResponseWriter, r *http.Request, session *string, in any, shape string) *conn {
	if ref := g.checkOrigin(r); ref != nil {
		http.Error(w, ref.Error(), ref.Status)
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, g.cfg.MaxFrameBytes)).Decode(in); err != nil {
		http.Error(w, "bad_frame: the body must be "+shape, http.StatusBadRequest)
		return nil
	}
	g.mu.Lock()
	c := g.sessions[*session]
	g.mu.Unlock()
	if c == nil {
		http.Error(w, "no_session: no SSE stream has this session; it ended", http.StatusNotFound)
		return nil
	}
	c.post.mu.Lock()
	if now := time.Now(); now.Sub(c.post.at) >= time.Second {
		c.post.at, c.post.n = now, 0
	}
	c.post.n++
	if c.post.n > g.cfg.SessionPosts {
		c.post.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "rate_limited: this session took "+strconv.Itoa(g.cfg.SessionPosts)+" POSTs in the last second", http.StatusTooManyRequests)
		return nil
	}
	c.post.mu.Unlock()
	return c
}
