package trine

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/internal/ratelog"
)

// Defaults for Subscribe.
const (
	DefaultSubscribeBuffer    = 256
	DefaultSubscribeReadLimit = 64 << 20
)

// subscribeDialTimeout bounds one WebSocket handshake.
const subscribeDialTimeout = 30 * time.Second

// StreamEvent is one frame of a stream subscription.
type StreamEvent struct {
	// Type is "sync", "create", "update", "delete", "event" or
	// "unauthorized"; the gateway may add others.
	Type   string
	Stream string
	Group  string
	// ItemID is the item the frame is about; "" for none.
	ItemID string
	// Seq is the group sequence of the change; for a sync, the sequence
	// the snapshot reflects.
	Seq       uint64
	Timestamp time.Time
	// Data is the item's value; for a sync of a group, a JSON array of
	// values; for Type "event", the event's data.
	Data json.RawMessage
	// ItemIDs are the ids of a group sync's values, in the same order.
	ItemIDs []string
	// Resync marks a sync sent because history could not fill a gap: it
	// replaces the state.
	Resync bool
	// EventType is the custom type of a Type "event" frame (stream::send).
	EventType string
	// Raw is the frame as received.
	Raw []byte
}

// SubscriptionStats counts what a subscription has seen.
type SubscriptionStats struct {
	// Connects counts successful handshakes, the first included.
	Connects int64
	// Resyncs counts sync frames marked resync.
	Resyncs int64
	// Duplicates counts events dropped because their sequence was already
	// delivered.
	Duplicates int64
	// Malformed counts frames skipped because they could not be decoded.
	Malformed int64
}

type subscribeOptions struct {
	item                   string
	since                  uint64
	hasSince               bool
	header                 http.Header
	query                  url.Values
	backoffMin, backoffMax time.Duration
	buffer                 int
	readLimit              int64
	idleTimeout            time.Duration
	httpClient             *http.Client
	tls                    *tls.Config
	token                  string
	logger                 *slog.Logger
}

func defaultSubscribeOptions() subscribeOptions {
	return subscribeOptions{
		header:     http.Header{},
		query:      url.Values{},
		backoffMin: 100 * time.Millisecond,
		backoffMax: 10 * time.Second,
		buffer:     DefaultSubscribeBuffer,
		readLimit:  DefaultSubscribeReadLimit,
		logger:     defaultLogger(),
	}
}

func (o *subscribeOptions) validate(stream, group string) error {
	for kind, v := range map[string]string{"stream name": stream, "group id": group} {
		if v == "" {
			return errorf(CodeInvalidArgument, "subscribe: the %s is empty", kind)
		}
	}
	for kind, v := range map[string]string{"stream name": stream, "group id": group, "item id": o.item} {
		if !utf8.ValidString(v) {
			return errorf(CodeInvalidArgument, "subscribe: the %s is not valid UTF-8", kind)
		}
	}
	if strings.ContainsFunc(o.token, func(r rune) bool {
		return r <= 0x20 || r >= 0x7f || r == '"' || r == ',' || r == ';' || r == '\\'
	}) {
		return errorf(CodeInvalidArgument, "subscribe: the token cannot be sent as a cookie (no spaces, quotes, commas, semicolons, backslashes or non-ASCII)")
	}
	switch {
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return errorf(CodeInvalidArgument, "subscribe: backoff needs 0 < min <= max")
	case o.buffer < 0:
		return errorf(CodeInvalidArgument, "subscribe: the buffer must not be negative")
	case o.readLimit <= 0:
		return errorf(CodeInvalidArgument, "subscribe: the read limit must be positive")
	case o.idleTimeout < 0:
		return errorf(CodeInvalidArgument, "subscribe: the idle timeout must not be negative")
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Subscription is a live subscription to a group (or an item) through the
// stream gateway. Its methods are safe for concurrent use.
type Subscription struct {
	stream, group string
	opts          subscribeOptions
	base          *url.URL
	header        http.Header
	log           *slog.Logger
	// reconnectLog limits the warnings of failed reconnects.
	reconnectLog ratelog.Limiter

	ctx    context.Context
	cancel context.CancelFunc
	events chan StreamEvent
	done   chan struct{}

	// Owned by the run goroutine.
	resumable bool // lastSeq is a position to resume from

	lastSeq    atomic.Uint64
	connects   atomic.Int64
	resyncs    atomic.Int64
	duplicates atomic.Int64
	malformed  atomic.Int64

	mu  sync.Mutex
	err error
}

// Subscribe opens a WebSocket to baseURL + "/stream/{stream}/{group}" and
// delivers events until ctx ends or Close. baseURL is like
// "ws://127.0.0.1:3112" (http and https become ws and wss); names are
// path-escaped, and sent as query parameters of "/stream" when one is "." or
// "..". The first connection is made before Subscribe returns, and its
// failure is returned. After a drop the client reconnects with backoff and
// resumes with ?since=<LastSeq>, so no event is lost or repeated; a sync
// marked Resync then replaces the state.
//
// A refused handshake (401, 403, 400: any 4xx but 408 and 429) or an
// unauthorized frame (the join was denied) ends the subscription: Events is
// closed and Err says why. Other failures are retried.
func Subscribe(ctx context.Context, baseURL, stream, group string, opts ...SubscribeOption) (*Subscription, error) {
	if ctx == nil {
		return nil, errorf(CodeInvalidArgument, "subscribe: nil context")
	}
	o, err := applyOptions(defaultSubscribeOptions(), opts, SubscribeOption.applySubscribe)
	if err != nil {
		return nil, err
	}
	if err := o.validate(stream, group); err != nil {
		return nil, err
	}
	base, err := gatewayURL(baseURL)
	if err != nil {
		return nil, err
	}
	s := &Subscription{stream: stream, group: group, opts: o, base: base, log: o.logger,
		events: make(chan StreamEvent, o.buffer), done: make(chan struct{})}
	s.header = o.header.Clone()
	if o.token != "" {
		s.header.Add("Cookie", (&http.Cookie{Name: "trine_token", Value: o.token}).String())
	}
	if o.httpClient == nil && o.tls != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.tls
		s.opts.httpClient = &http.Client{Transport: tr}
	}
	if o.hasSince {
		s.lastSeq.Store(o.since)
		s.resumable = true
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	cn, err := s.dial()
	if err != nil {
		s.cancel()
		var p permanentError
		if errors.As(err, &p) {
			err = p.err
		}
		return nil, err
	}
	go s.run(cn)
	return s, nil
}

// gatewayURL parses and checks the gateway's base URL.
func gatewayURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may hold a token
		}
		return nil, errorf(CodeInvalidArgument, "subscribe: bad gateway URL %q: %v", redactURL(raw), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		u.Scheme = "wss"
	default:
		return nil, errorf(CodeInvalidArgument, "subscribe: gateway URL %q: the scheme must be ws, wss, http or https", redactURL(raw))
	}
	if u.Host == "" {
		return nil, errorf(CodeInvalidArgument, "subscribe: gateway URL %q has no host", redactURL(raw))
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// dotSegment reports whether a name cannot be a URL path segment: clients
// and proxies resolve "." and "..".
func dotSegment(name string) bool { return name == "." || name == ".." }

// url is the handshake URL, resuming after LastSeq when there is one. Names
// are path segments, or query parameters (/stream?stream=&group=) when a
// path cannot carry them.
func (s *Subscription) url() string {
	u := *s.base
	path, raw := strings.TrimSuffix(s.base.Path, "/")+"/stream", strings.TrimSuffix(s.base.EscapedPath(), "/")+"/stream"
	q := s.base.Query()
	for k, vs := range s.opts.query {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	q.Del("since")
	q.Del("item_id")
	if dotSegment(s.stream) || dotSegment(s.group) {
		q.Set("stream", s.stream)
		q.Set("group", s.group)
	} else {
		path += "/" + s.stream + "/" + s.group
		raw += "/" + url.PathEscape(s.stream) + "/" + url.PathEscape(s.group)
	}
	u.Path, u.RawPath = path, raw
	if s.opts.item != "" {
		q.Set("item_id", s.opts.item)
	}
	if s.resumable {
		q.Set("since", strconv.FormatUint(s.lastSeq.Load(), 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Events delivers the subscription's events in order. It is closed when the
// subscription ends; then Err says why.
func (s *Subscription) Events() <-chan StreamEvent {
	if s == nil {
		ch := make(chan StreamEvent)
		close(ch)
		return ch
	}
	return s.events
}

// Err is why the subscription ended: nil while it runs and after Close or
// the end of its context.
func (s *Subscription) Err() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// LastSeq is the sequence of the last event delivered on Events (for a
// sync, the sequence it reflects): where a reconnect resumes. It is never
// behind an event the consumer has received.
func (s *Subscription) LastSeq() uint64 {
	if s == nil {
		return 0
	}
	return s.lastSeq.Load()
}

// Stats returns the subscription's counters.
func (s *Subscription) Stats() SubscriptionStats {
	if s == nil {
		return SubscriptionStats{}
	}
	return SubscriptionStats{Connects: s.connects.Load(), Resyncs: s.resyncs.Load(),
		Duplicates: s.duplicates.Load(), Malformed: s.malformed.Load()}
}

// Close ends the subscription and waits for its goroutines. Events still
// buffered stay readable. Close is idempotent.
func (s *Subscription) Close() error {
	if s == nil {
		return nil
	}
	s.cancel()
	<-s.done
	return nil
}

func (s *Subscription) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// errorf returns an *Error naming the subscription, wrapping cause if any.
func (s *Subscription) errorf(code Code, cause error, format string, args ...any) error {
	e := errorf(code, "subscribe stream %q group %q: %s", s.stream, s.group, fmt.Sprintf(format, args...))
	if cause == nil {
		return e
	}
	return fmt.Errorf("%w: %w", e, cause)
}

// clientParams are the query parameters Subscribe sets itself; any other
// may be a credential (?token=).
var clientParams = map[string]bool{"since": true, "item_id": true, "stream": true, "group": true}

// redactURL is target fit for errors and logs: the values of its query
// parameters other than clientParams, and any password, are redacted.
func redactURL(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		if i := strings.IndexAny(target, "?#"); i >= 0 {
			return target[:i] + "?REDACTED"
		}
		return target
	}
	q := u.Query()
	for k := range q {
		if !clientParams[k] {
			q[k] = []string{"REDACTED"}
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}

// redactedError is an error whose text has its URL redacted.
type redactedError struct {
	err error
	msg string
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }

// redactError redacts target's query wherever err's text holds it (the
// HTTP client names the URL with another scheme).
func redactError(err error, target string) error {
	u, perr := url.Parse(target)
	msg := err.Error()
	if perr != nil || u.RawQuery == "" || !strings.Contains(msg, u.RawQuery) {
		return err
	}
	r, _ := url.Parse(redactURL(target))
	return redactedError{err, strings.ReplaceAll(msg, u.RawQuery, r.RawQuery)}
}

// permanentError marks a failure that reconnecting cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// run serves connections until the subscription ends.
func (s *Subscription) run(cn *wsConn) {
	defer close(s.done)
	defer close(s.events)
	attempt := 0
	for {
		started := time.Now()
		err := s.serve(cn)
		if s.ctx.Err() != nil {
			return
		}
		var p permanentError
		if errors.As(err, &p) {
			s.log.Warn("stream subscription ended", "stream", s.stream, "group", s.group, "error", p.err)
			s.fail(p.err)
			return
		}
		if time.Since(started) > s.opts.backoffMax {
			attempt = 0
		}
		for {
			delay := backoffDelay(s.opts.backoffMin, s.opts.backoffMax, attempt)
			attempt++
			if held, ok := s.reconnectLog.Allow(0); ok {
				s.log.Warn("stream subscription dropped; reconnecting", "stream", s.stream, "group", s.group,
					"error", err, "retry_in", delay, "last_seq", s.lastSeq.Load(), "not_logged", held)
			}
			t := time.NewTimer(delay)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			cn, err = s.dial()
			if err == nil {
				break
			}
			if s.ctx.Err() != nil {
				return
			}
			if errors.As(err, &p) {
				s.log.Warn("stream subscription ended", "stream", s.stream, "group", s.group, "error", p.err)
				s.fail(p.err)
				return
			}
		}
	}
}

// backoffDelay is the reconnect delay after attempt failures: min doubled
// per attempt up to max, with ±20% jitter (as Worker reconnects).
func backoffDelay(min, max time.Duration, attempt int) time.Duration {
	d := float64(min) * math.Pow(2, float64(attempt))
	d = math.Min(d, float64(max))
	return time.Duration(d * (0.8 + 0.4*rand.Float64()))
}

// wsConn is one connection with its idle timer.
type wsConn struct {
	c    *websocket.Conn
	idle *time.Timer // nil without an idle timeout

	mu       sync.Mutex
	ended    bool
	timedOut bool
}

// onIdle closes a connection that stayed silent; it does nothing once the
// connection has ended.
func (cn *wsConn) onIdle() {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.ended {
		return
	}
	cn.timedOut = true
	_ = cn.c.CloseNow()
}

// end closes the connection and stops its timer; after it returns the timer
// does nothing.
func (cn *wsConn) end() {
	cn.mu.Lock()
	cn.ended = true
	cn.mu.Unlock()
	if cn.idle != nil {
		cn.idle.Stop()
	}
	_ = cn.c.CloseNow()
}

func (cn *wsConn) idleFired() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.timedOut
}

// dial makes one handshake. A refusal that retrying cannot fix is a
// permanentError.
func (s *Subscription) dial() (*wsConn, error) {
	o := websocket.DialOptions{HTTPClient: s.opts.httpClient, HTTPHeader: s.header.Clone()}
	cn := &wsConn{}
	if d := s.opts.idleTimeout; d > 0 {
		o.OnPingReceived = func(ctx context.Context, p []byte) bool {
			if cn.idle != nil { // called while reading, on the run goroutine
				cn.idle.Reset(d)
			}
			return true
		}
	}
	target := s.url()
	ctx, cancel := context.WithTimeout(s.ctx, subscribeDialTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, target, &o)
	if err != nil {
		return nil, s.dialError(target, resp, redactError(err, target))
	}
	c.SetReadLimit(s.opts.readLimit)
	cn.c = c
	if d := s.opts.idleTimeout; d > 0 {
		cn.idle = time.AfterFunc(d, cn.onIdle)
	}
	s.connects.Add(1)
	s.log.Debug("stream subscription connected", "url", redactURL(target))
	return cn, nil
}

func (s *Subscription) dialError(target string, resp *http.Response, err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return s.errorf(asError(cerr).Code, cerr, "cannot connect to the gateway")
	}
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return s.errorf(CodeUnavailable, err, "cannot connect to the gateway")
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 256))
	}
	why := resp.Status
	if b := strings.TrimSpace(string(body)); b != "" && utf8.ValidString(b) {
		why += ": " + b
	}
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized:
		return permanentError{s.errorf(CodeUnauthorized, nil, "the gateway refused the connection: %s", why)}
	case code == http.StatusForbidden:
		return permanentError{s.errorf(CodeForbidden, nil, "the gateway refused the connection (origin?): %s", why)}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return s.errorf(CodeOverloaded, nil, "the gateway answered %s", why)
	case code >= 400 && code < 500:
		return permanentError{s.errorf(CodeInvalidArgument, nil, "the gateway refused %s: %s", redactURL(target), why)}
	default:
		return s.errorf(CodeUnavailable, nil, "the gateway answered %s", why)
	}
}

// serve reads one connection until it ends. It returns nil when the
// subscription ended, a permanentError when it must end, or why the
// connection dropped.
func (s *Subscription) serve(cn *wsConn) error {
	defer cn.end()
	for {
		if cn.idle != nil {
			cn.idle.Reset(s.opts.idleTimeout)
		}
		_, msg, err := cn.c.Read(s.ctx)
		if cn.idle != nil {
			cn.idle.Stop()
		}
		if s.ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return s.readError(cn, err)
		}
		ev, kind, ferr := decodeFrame(msg)
		switch kind {
		case frameMalformed:
			s.malformed.Add(1)
			s.log.Warn("stream frame skipped", "stream", s.stream, "group", s.group, "error", ferr, "frame", truncate(msg, 200))
			continue
		case frameIgnored:
			s.log.Debug("stream frame ignored", "stream", s.stream, "group", s.group, "frame", truncate(msg, 200))
			continue
		case frameError:
			return s.errorf(CodeUnavailable, ferr, "the gateway reported an error")
		}
		switch ev.Type {
		case "unauthorized":
			s.deliver(ev)
			return permanentError{s.errorf(CodeUnauthorized, nil, "the join was denied")}
		case "sync":
		default:
			if s.resumable && ev.Seq <= s.lastSeq.Load() {
				s.duplicates.Add(1)
				continue
			}
		}
		// LastSeq moves first, so that a consumer never sees it behind an
		// event it received; it moves back if the event is not delivered.
		prev, wasResumable := s.lastSeq.Swap(ev.Seq), s.resumable
		s.resumable = true
		if !s.deliver(ev) {
			s.lastSeq.Store(prev)
			s.resumable = wasResumable
			return nil
		}
		if ev.Resync {
			s.resyncs.Add(1)
		}
	}
}

// deliver puts ev on Events, blocking while it is full; false means the
// subscription ended first.
func (s *Subscription) deliver(ev StreamEvent) bool {
	select {
	case s.events <- ev:
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *Subscription) readError(cn *wsConn, err error) error {
	if cn.idleFired() {
		return s.errorf(CodeUnavailable, nil, "nothing received for %v", s.opts.idleTimeout)
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return permanentError{s.errorf(CodeMessageTooLarge, err, "a frame is larger than the read limit of %d bytes", s.opts.readLimit)}
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		why := "the gateway closed the connection"
		if ce.Code == websocket.StatusPolicyViolation {
			why = "the gateway closed the connection (slow consumer?)"
		}
		return s.errorf(CodeUnavailable, err, "%s", why)
	}
	return s.errorf(CodeUnavailable, err, "connection lost")
}

// frameKind is what decodeFrame made of a frame.
type frameKind int

const (
	frameEvent     frameKind = iota // a stream frame, to deliver
	frameIgnored                    // a frame for another purpose (pong)
	frameMalformed                  // unreadable: skip it
	frameError                      // the gateway reported an error: reconnect
)

// wireFrame is a gateway frame (streammodule/wire).
type wireFrame struct {
	Seq        uint64  `json:"seq"`
	ID         *string `json:"id"`
	Type       string  `json:"type"`
	Timestamp  int64   `json:"timestamp"`
	StreamName string  `json:"streamName"`
	GroupID    string  `json:"groupId"`
	Code       string  `json:"code"`
	Message    string  `json:"message"`
	Event      *struct {
		Type   string          `json:"type"`
		Data   json.RawMessage `json:"data"`
		IDs    []string        `json:"ids"`
		Resync bool            `json:"resync"`
		Event  *struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"event"`
	} `json:"event"`
}

// decodeFrame decodes one gateway frame.
func decodeFrame(msg []byte) (StreamEvent, frameKind, error) {
	var f wireFrame
	if err := json.Unmarshal(msg, &f); err != nil {
		return StreamEvent{}, frameMalformed, err
	}
	switch f.Type {
	case "stream":
	case "error":
		return StreamEvent{}, frameError, fmt.Errorf("error frame %q: %s", f.Code, f.Message)
	case "":
		return StreamEvent{}, frameMalformed, errors.New("frame has no type")
	default:
		return StreamEvent{}, frameIgnored, nil
	}
	if f.Event == nil || f.Event.Type == "" {
		return StreamEvent{}, frameMalformed, errors.New("stream frame has no event type")
	}
	ev := StreamEvent{Type: f.Event.Type, Stream: f.StreamName, Group: f.GroupID, Seq: f.Seq,
		Data: f.Event.Data, Raw: msg}
	if f.ID != nil {
		ev.ItemID = *f.ID
	}
	if f.Timestamp != 0 {
		ev.Timestamp = time.UnixMilli(f.Timestamp)
	}
	switch ev.Type {
	case "sync":
		ev.ItemIDs, ev.Resync = f.Event.IDs, f.Event.Resync
	case "event":
		inner := f.Event.Event
		if inner == nil {
			return StreamEvent{}, frameMalformed, errors.New("event frame has no event")
		}
		ev.EventType, ev.Data = inner.Type, inner.Data
	}
	return ev, frameEvent, nil
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
