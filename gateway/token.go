package gateway

import (
	"strconv"
	"time"
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
	switch {
	case c.g.cfg.Tokens == nil:
		c.sendError(nil, "bad_frame", "this gateway does not take tokens")
		return
	case raw == nil || *raw == "":
		c.sendError(nil, "bad_frame", "auth needs data.token")
		return
	}
	t, err := c.g.cfg.Tokens.Verify(*raw)
	if err != nil {
		c.sendError(nil, "unauthorized", "token refused ("+err.Error()+"); the current one stays until it expires")
		return
	}
	if old := c.token.Load(); old != nil && old.Subject != t.Subject {
		c.sendError(nil, "unauthorized", "a fresh token must have the same sub as the connection's")
		return
	}
	c.token.Store(&t)
	c.expiry.Reset(time.Until(t.Expires))
	c.mu.Lock()
	var gone []*subscription
	for id, s := range c.subs {
		if !t.Allows(s.stream, s.group) {
			gone = append(gone, s)
			delete(c.subs, id)
		}
	}
	c.mu.Unlock()
	for _, s := range gone {
		c.drop(s)
		c.denied(s)
	}
	c.enqueue(out{data: append(strconv.AppendInt([]byte(`{"type":"auth","expiresAt":`), t.Expires.UnixMilli(), 10), '}')})
}
