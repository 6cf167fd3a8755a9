package channels_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/poll"
)

// env is an engine with the channels function registered, and the hub's
// endpoint on a test server.
type env struct {
	e   *engine.Engine
	h   *channels.Hub
	srv *httptest.Server
}

// start wires a hub into a running engine and an HTTP server; stop tears
// them down (hub first, so its sockets close before the server does).
func start(t *testing.T, cfg channels.Config) (*env, func()) {
	t.Helper()
	e, err := engine.New(engine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = e.Run(ctx); close(ran) }()
	h, err := channels.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Register(e); err != nil {
		t.Fatalf("Register = %v", err)
	}
	srv := httptest.NewServer(h)
	var once sync.Once
	return &env{e: e, h: h, srv: srv}, func() {
		once.Do(func() {
			h.Close()
			srv.Close()
			cancel()
			<-ran
		})
	}
}

func newEnv(t *testing.T, cfg channels.Config) *env {
	t.Helper()
	v, stop := start(t, cfg)
	t.Cleanup(stop)
	return v
}

// create calls engine::channels::create and checks the refs' shape.
func (v *env) create(t *testing.T, payload string) (w, r channels.Ref) {
	t.Helper()
	w, r, err := v.tryCreate(t.Context(), payload)
	if err != nil {
		t.Fatalf("create(%s) = %v", payload, err)
	}
	return w, r
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	keyRE  = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

func (v *env) tryCreate(ctx context.Context, payload string) (w, r channels.Ref, err error) {
	var p []byte
	if payload != "" {
		p = []byte(payload)
	}
	out, err := v.e.Trigger(ctx, engine.Call{FunctionID: channels.FnCreate, Payload: p})
	if err != nil {
		return w, r, err
	}
	var res struct{ Writer, Reader channels.Ref }
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		return w, r, fmt.Errorf("decode %s: %w", out, err)
	}
	w, r = res.Writer, res.Reader
	switch {
	case w.Direction != "write" || r.Direction != "read":
		err = fmt.Errorf("directions %q, %q, want write, read", w.Direction, r.Direction)
	case w.ChannelID != r.ChannelID || w.AccessKey != r.AccessKey:
		err = fmt.Errorf("refs differ: %+v, %+v", w, r)
	case !uuidRE.MatchString(w.ChannelID):
		err = fmt.Errorf("channel_id %q is not a UUID", w.ChannelID)
	case !keyRE.MatchString(w.AccessKey):
		err = fmt.Errorf("access_key %q is not 128 bits of hex", w.AccessKey)
	}
	return w, r, err
}

func (v *env) url(id, key, dir string) string {
	q := url.Values{"key": {key}, "dir": {dir}}
	return "ws" + strings.TrimPrefix(v.srv.URL, "http") + "/ws/channels/" + id + "?" + q.Encode()
}

// dial opens the end ref names; the test closes it on cleanup.
func (v *env) dial(t *testing.T, ref channels.Ref) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(t.Context(), v.url(ref.ChannelID, ref.AccessKey, ref.Direction), nil)
	if err != nil {
		t.Fatalf("Dial(%s) = %v", ref.Direction, err)
	}
	_ = resp
	c.SetReadLimit(-1)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// dialStatus tries to open an end and returns the HTTP status of the refusal
// (or 101 when the upgrade went through).
func (v *env) dialStatus(t *testing.T, id, key, dir string) int {
	t.Helper()
	c, resp, err := websocket.Dial(t.Context(), v.url(id, key, dir), nil)
	if err == nil {
		c.CloseNow()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("Dial = %v with no response", err)
	}
	return resp.StatusCode
}

// readTimeout bounds every wait for a close in these tests, a drain of
// TestBackpressure's 32 MiB included: under the race detector on a loaded
// 2-core machine that took past 10s in 2 runs of 10.
const readTimeout = 30 * time.Second

type msg struct {
	typ  websocket.MessageType
	data []byte
}

func (m msg) String() string { return fmt.Sprintf("%v %q", m.typ, m.data) }

// drain reads c until it closes and returns the frames and the close error.
// It fails the test if the close takes longer than readTimeout.
func drain(t *testing.T, c *websocket.Conn) ([]msg, websocket.CloseError) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	var got []msg
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("Read after %d frames = %v, want a close frame", len(got), err)
			}
			return got, ce
		}
		got = append(got, msg{typ, data})
	}
}

// readText reads one text frame from c.
func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil || typ != websocket.MessageText {
		t.Fatalf("Read = %v %q, %v, want a text frame", typ, data, err)
	}
	return string(data)
}

// closed reads c, which must receive no data, until it closes.
func closed(t *testing.T, c *websocket.Conn) websocket.CloseError {
	t.Helper()
	got, ce := drain(t, c)
	if len(got) > 0 {
		t.Fatalf("got frames %v before the close, want none", got)
	}
	return ce
}

func wantClose(t *testing.T, got websocket.CloseError, code websocket.StatusCode) {
	t.Helper()
	if got.Code != code {
		t.Fatalf("close = %d %q, want %d", got.Code, got.Reason, code)
	}
}

func (v *env) waitLen(t *testing.T, want int) {
	t.Helper()
	poll.CheckFor(t, 5*time.Second, func() error {
		if n := v.h.Len(); n != want {
			return fmt.Errorf("hub holds %d channels, want %d", n, want)
		}
		return nil
	})
}

// The iii data_channels_test scenario: the writer sends five bytes and closes
// before any reader exists; the reader then gets them all and a normal close,
// however the writer ended.
func TestWriteBeforeReader(t *testing.T) {
	t.Parallel()
	ends := map[string]func(*websocket.Conn) error{
		"close":              func(c *websocket.Conn) error { return c.Close(websocket.StatusNormalClosure, "") },
		"close_4000":         func(c *websocket.Conn) error { return c.Close(4000, "writer gave up") },
		"connection_dropped": func(c *websocket.Conn) error { return c.CloseNow() },
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := newEnv(t, channels.Config{})
			w, r := v.create(t, "")
			wc := v.dial(t, w)
			if err := wc.Write(t.Context(), websocket.MessageBinary, []byte{12, 34, 56, 78, 90}); err != nil {
				t.Fatalf("Write = %v", err)
			}
			if err := end(wc); err != nil {
				t.Fatalf("end writer = %v", err)
			}
			got, ce := drain(t, v.dial(t, r))
			count, sum := 0, 0
			for _, m := range got {
				if m.typ != websocket.MessageBinary {
					t.Fatalf("frame %v, want binary", m)
				}
				for _, b := range m.data {
					count++
					sum += int(b)
				}
			}
			if count != 5 || sum != 270 {
				t.Fatalf("read %d bytes summing to %d, want 5 and 270 (frames %v)", count, sum, got)
			}
			wantClose(t, ce, websocket.StatusNormalClosure)
			v.waitLen(t, 0)
		})
	}
}

func TestOrderAndTypesKept(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	w, r := v.create(t, `{"buffer_size":8}`)
	rc := v.dial(t, r)
	wc := v.dial(t, w)
	var want []msg
	for i := range 200 {
		m := msg{websocket.MessageText, []byte(fmt.Sprintf(`{"n":%d}`, i))}
		if i%3 != 0 {
			m = msg{websocket.MessageBinary, []byte{byte(i), byte(i >> 8), 0, 0xff}}
		}
		if i == 100 {
			m.data = []byte{} // empty frames pass too
		}
		want = append(want, m)
	}
	errc := make(chan error, 1)
	go func() {
		for _, m := range want {
			if err := wc.Write(t.Context(), m.typ, m.data); err != nil {
				errc <- err
				return
			}
		}
		errc <- wc.Close(websocket.StatusNormalClosure, "")
	}()
	got, ce := drain(t, rc)
	if err := <-errc; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].typ != want[i].typ || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("frame %d = %v, want %v", i, got[i], want[i])
		}
	}
	wantClose(t, ce, websocket.StatusNormalClosure)
}

// A writer that gets ahead of a missing reader is held back once the buffer
// is full, and the reader then gets the whole stream in order.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	const frames, size = 2000, 16 << 10 // 32 MiB: far beyond loopback socket buffers
	v := newEnv(t, channels.Config{})
	w, r := v.create(t, `{"buffer_size":4}`)
	wc := v.dial(t, w)
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, size)
		for i := range frames {
			binary.BigEndian.PutUint32(buf, uint32(i))
			if err := wc.Write(t.Context(), websocket.MessageBinary, buf); err != nil {
				errc <- fmt.Errorf("write %d: %w", i, err)
				return
			}
		}
		errc <- wc.Close(websocket.StatusNormalClosure, "")
	}()
	poll.CheckFor(t, 5*time.Second, func() error {
		if n, c, _ := v.h.Buffer(w.ChannelID); n != 4 || c != 4 {
			return fmt.Errorf("buffered %d of %d, want 4 of 4", n, c)
		}
		return nil
	})
	select {
	case err := <-errc:
		t.Fatalf("writer finished (%v) with no reader: nothing held it back", err)
	default:
	}

	rc := v.dial(t, r)
	got, ce := drain(t, rc)
	if err := <-errc; err != nil {
		t.Fatalf("writer: %v", err)
	}
	if len(got) != frames {
		t.Fatalf("got %d frames, want %d", len(got), frames)
	}
	for i, m := range got {
		if n := binary.BigEndian.Uint32(m.data); int(n) != i || len(m.data) != size || m.typ != websocket.MessageBinary {
			t.Fatalf("frame %d is %v frame %d of %d bytes", i, m.typ, n, len(m.data))
		}
	}
	wantClose(t, ce, websocket.StatusNormalClosure)
	v.waitLen(t, 0)
}

func TestEndpointRefusals(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	w, r := v.create(t, "")
	id, key := w.ChannelID, w.AccessKey
	_, other := v.create(t, "")
	cases := []struct {
		name         string
		id, key, dir string
		want         int
	}{
		{"unknown_id", "00000000-0000-4000-8000-000000000000", key, "read", 404},
		{"empty_id", "", key, "read", 404},
		{"wrong_key", id, strings.Repeat("0", 32), "read", 404},
		{"other_channels_key", id, other.AccessKey, "write", 404},
		{"key_prefix", id, key[:16], "read", 404},
		{"no_key", id, "", "read", 404},
		{"bad_dir", id, key, "both", 404},
		{"no_dir", id, key, "", 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := v.dialStatus(t, c.id, c.key, c.dir); got != c.want {
				t.Fatalf("dial(%q, %q, %q) status = %d, want %d", c.id, c.key, c.dir, got, c.want)
			}
		})
	}
	// Nothing above used up an end.
	rc := v.dial(t, r)
	wc := v.dial(t, w)
	for _, dir := range []string{"read", "write"} {
		if got := v.dialStatus(t, id, key, dir); got != http.StatusConflict {
			t.Fatalf("second %s dial status = %d, want 409", dir, got)
		}
	}
	// The first takers still work.
	if err := wc.Write(t.Context(), websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, rc); got != "hi" {
		t.Fatalf("Read = %q, want hi", got)
	}
}

// A request that is not a WebSocket upgrade fails, and does not use up the
// end it named.
func TestFailedUpgradeKeepsEnd(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	_, r := v.create(t, "")
	u := strings.Replace(v.url(r.ChannelID, r.AccessKey, "read"), "ws", "http", 1)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode == http.StatusNotFound {
		t.Fatalf("plain GET status = %d, want an upgrade failure", resp.StatusCode)
	}
	v.dial(t, r)
	if got := v.dialStatus(t, r.ChannelID, r.AccessKey, "read"); got != http.StatusConflict {
		t.Fatalf("second reader status = %d, want 409", got)
	}
}

func TestCreateInput(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	small := newEnv(t, channels.Config{MaxBuffer: 8, DefaultBuffer: 100})
	cases := []struct {
		name     string
		v        *env
		payload  string
		wantSize int // 0: refused with invalid_argument
	}{
		{"absent", v, "", 64},
		{"null", v, "null", 64},
		{"empty_object", v, "{}", 64},
		{"null_size", v, `{"buffer_size":null}`, 64},
		{"min", v, `{"buffer_size":1}`, 1},
		{"max", v, `{"buffer_size":1024}`, 1024},
		{"unknown_field_ignored", v, `{"buffer_size":3,"owner":"x"}`, 3},
		{"zero", v, `{"buffer_size":0}`, 0},
		{"negative", v, `{"buffer_size":-1}`, 0},
		{"over_max", v, `{"buffer_size":1025}`, 0},
		{"fraction", v, `{"buffer_size":2.5}`, 0},
		{"string", v, `{"buffer_size":"4"}`, 0},
		{"not_object", v, `[4]`, 0},
		{"config_default_capped", small, "", 8},
		{"config_max", small, `{"buffer_size":8}`, 8},
		{"config_over_max", small, `{"buffer_size":9}`, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w, _, err := c.v.tryCreate(t.Context(), c.payload)
			if c.wantSize == 0 {
				if got := engine.AsError(err); got == nil || got.Code != codes.InvalidArgument {
					t.Fatalf("create(%s) error = %v, want invalid_argument", c.payload, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("create(%s) = %v", c.payload, err)
			}
			if _, size, _ := c.v.h.Buffer(w.ChannelID); size != c.wantSize {
				t.Fatalf("create(%s) buffer size = %d, want %d", c.payload, size, c.wantSize)
			}
		})
	}
}

func TestUniqueRefs(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	seen := map[string]bool{}
	for range 100 {
		w, _ := v.create(t, "")
		if seen[w.ChannelID] || seen[w.AccessKey] {
			t.Fatalf("create repeated %+v", w)
		}
		seen[w.ChannelID], seen[w.AccessKey] = true, true
	}
}

func TestOversizeFrame(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{MaxFrameBytes: 1024})
	w, r := v.create(t, "")
	rc := v.dial(t, r)
	wc := v.dial(t, w)
	for _, n := range []int{1024, 1025} {
		if err := wc.Write(t.Context(), websocket.MessageBinary, make([]byte, n)); err != nil {
			t.Fatalf("Write(%d bytes) = %v", n, err)
		}
	}
	wantClose(t, closed(t, wc), websocket.StatusMessageTooBig)
	got, ce := drain(t, rc)
	if len(got) != 1 || len(got[0].data) != 1024 {
		t.Fatalf("reader got %d frames, want the 1024-byte one", len(got))
	}
	// The reader learns the stream was cut short.
	wantClose(t, ce, websocket.StatusInternalError)
	v.waitLen(t, 0)
}

// A text frame that is not UTF-8 closes the writer with 1007, as on every
// Trine WebSocket, and the reader learns that the stream was cut short.
func TestInvalidUTF8FromWriter(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	w, r := v.create(t, "")
	rc := v.dial(t, r)
	wc := v.dial(t, w)
	for _, m := range []string{"fine", "bad \xff byte"} {
		if err := wc.Write(t.Context(), websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	wantClose(t, closed(t, wc), websocket.StatusInvalidFramePayloadData)
	got, ce := drain(t, rc)
	if len(got) != 1 || string(got[0].data) != "fine" {
		t.Fatalf("reader got %d frames, want the valid one", len(got))
	}
	wantClose(t, ce, websocket.StatusInternalError)
	v.waitLen(t, 0)
}

func TestReaderLeavingClosesWriter(t *testing.T) {
	t.Parallel()
	leave := map[string]func(*testing.T, *websocket.Conn){
		"close":   func(_ *testing.T, c *websocket.Conn) { _ = c.Close(websocket.StatusNormalClosure, "") },
		"dropped": func(_ *testing.T, c *websocket.Conn) { _ = c.CloseNow() },
		"sends_data": func(t *testing.T, c *websocket.Conn) {
			if err := c.Write(t.Context(), websocket.MessageText, []byte("readers do not write")); err != nil {
				t.Fatal(err)
			}
			wantClose(t, closed(t, c), websocket.StatusPolicyViolation)
		},
	}
	for name, f := range leave {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := newEnv(t, channels.Config{})
			w, r := v.create(t, "")
			rc := v.dial(t, r)
			wc := v.dial(t, w)
			if err := wc.Write(t.Context(), websocket.MessageText, []byte("one")); err != nil {
				t.Fatal(err)
			}
			if got := readText(t, rc); got != "one" {
				t.Fatalf("Read = %q, want one", got)
			}
			f(t, rc)
			wantClose(t, closed(t, wc), websocket.StatusGoingAway)
			v.waitLen(t, 0)
			if got := v.dialStatus(t, r.ChannelID, r.AccessKey, "read"); got != http.StatusNotFound {
				t.Fatalf("dial after the reader left: status %d, want 404", got)
			}
		})
	}
}

func TestTTL(t *testing.T) {
	t.Parallel()
	// The fully attached channel is made first, and the TTL leaves its two
	// dials time on a loaded machine (with 50 ms they sometimes came late).
	v := newEnv(t, channels.Config{TTL: 300 * time.Millisecond})
	fw, fr := v.create(t, "")
	fwc, frc := v.dial(t, fw), v.dial(t, fr)
	idle, _ := v.create(t, "")
	w, r := v.create(t, "")
	waiting := v.dial(t, w) // its reader never comes

	ce := closed(t, waiting)
	wantClose(t, ce, websocket.StatusGoingAway)
	if ce.Reason != "channel expired" {
		t.Fatalf("close reason = %q, want channel expired", ce.Reason)
	}
	v.waitLen(t, 1) // the fully attached one stays
	for _, ref := range []channels.Ref{idle, r} {
		if got := v.dialStatus(t, ref.ChannelID, ref.AccessKey, "read"); got != http.StatusNotFound {
			t.Fatalf("dial of an expired channel: status %d, want 404", got)
		}
	}
	if err := fwc.Write(t.Context(), websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, frc); got != "still here" {
		t.Fatalf("Read on the attached channel = %q, want still here", got)
	}
}

func TestUsedChannelRemoved(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	w, r := v.create(t, "")
	if n := v.h.Len(); n != 1 {
		t.Fatalf("Len = %d after create, want 1", n)
	}
	rc := v.dial(t, r)
	wc := v.dial(t, w)
	if err := wc.Write(t.Context(), websocket.MessageText, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := wc.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	if got, ce := drain(t, rc); len(got) != 1 || ce.Code != websocket.StatusNormalClosure {
		t.Fatalf("reader got %v then %v", got, ce)
	}
	v.waitLen(t, 0)
	for _, dir := range []string{"read", "write"} {
		if got := v.dialStatus(t, w.ChannelID, w.AccessKey, dir); got != http.StatusNotFound {
			t.Fatalf("%s dial after use: status %d, want 404", dir, got)
		}
	}
}

// Not parallel: it checks that Close leaves no goroutine behind.
func TestClose(t *testing.T) {
	base := goleak.IgnoreCurrent()
	v, stop := start(t, channels.Config{})
	t.Cleanup(stop)
	w, r := v.create(t, "")
	rc, wc := v.dial(t, r), v.dial(t, w)
	w2, r2 := v.create(t, "")
	wc2 := v.dial(t, w2) // its reader never comes

	// Close waits for the close handshakes, so the clients must be reading.
	closeDone := make(chan struct{})
	go func() { v.h.Close(); close(closeDone) }()
	for _, c := range []*websocket.Conn{rc, wc, wc2} {
		ce := closed(t, c)
		wantClose(t, ce, websocket.StatusGoingAway)
	}
	<-closeDone
	v.h.Close() // idempotent
	if _, _, err := v.tryCreate(t.Context(), ""); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("create after Close = %v, want unavailable", err)
	}
	if got := v.dialStatus(t, r2.ChannelID, r2.AccessKey, "read"); got != http.StatusNotFound {
		t.Fatalf("dial after Close: status %d, want 404", got)
	}
	for _, c := range []*websocket.Conn{rc, wc, wc2} {
		c.CloseNow()
	}
	stop()
	goleak.VerifyNone(t, base)
}

// Browsers from origins that are not allowed get 403 and use up no end;
// allowed ones connect.
func TestOrigins(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{AllowedOrigins: []string{"https://app.test"}})
	w, r := v.create(t, "")
	dial := func(ref channels.Ref, origin string) (*websocket.Conn, int) {
		c, resp, err := websocket.Dial(t.Context(), v.url(ref.ChannelID, ref.AccessKey, ref.Direction),
			&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
		if err != nil {
			if resp == nil {
				t.Fatal(err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { _ = c.CloseNow() })
		return c, http.StatusSwitchingProtocols
	}
	if _, st := dial(r, "https://evil.test"); st != http.StatusForbidden {
		t.Fatalf("disallowed origin: status %d, want 403", st)
	}
	rc, st := dial(r, "https://app.test")
	wc, st2 := dial(w, "https://app.test")
	if st != http.StatusSwitchingProtocols || st2 != http.StatusSwitchingProtocols {
		t.Fatalf("allowed origin: statuses %d, %d", st, st2)
	}
	if err := wc.Write(t.Context(), websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, rc); got != "hi" {
		t.Fatalf("Read = %q, want hi", got)
	}
}

// next reads one frame from a local reader, failing the test on an error.
func next(t *testing.T, r *channels.LocalReader) channels.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	f, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("Next = %v, want a frame", err)
	}
	return f
}

// nextErr reads from a local reader that must have no frame left.
func nextErr(t *testing.T, r *channels.LocalReader) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), readTimeout)
	defer cancel()
	f, err := r.Next(ctx)
	if err == nil {
		t.Fatalf("Next = %v %q, want an error", f.Binary, f.Data)
	}
	return err
}

func openReader(t *testing.T, v *env, size int) (*channels.LocalReader, channels.Ref) {
	t.Helper()
	r, ref, err := v.h.OpenReader(size)
	if err != nil {
		t.Fatalf("OpenReader(%d) = %v", size, err)
	}
	t.Cleanup(r.Close)
	if ref.Direction != "write" || !uuidRE.MatchString(ref.ChannelID) || !keyRE.MatchString(ref.AccessKey) {
		t.Fatalf("OpenReader ref = %+v, want a write ref", ref)
	}
	return r, ref
}

func openWriter(t *testing.T, v *env, size int) (*channels.LocalWriter, channels.Ref) {
	t.Helper()
	w, ref, err := v.h.OpenWriter(size)
	if err != nil {
		t.Fatalf("OpenWriter(%d) = %v", size, err)
	}
	t.Cleanup(w.Abort)
	if ref.Direction != "read" || !uuidRE.MatchString(ref.ChannelID) || !keyRE.MatchString(ref.AccessKey) {
		t.Fatalf("OpenWriter ref = %+v, want a read ref", ref)
	}
	return w, ref
}

// A remote writer streams into the engine's reader: frames in order with
// their types, more than the buffer holds, then io.EOF for good.
func TestLocalReader(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	r, ref := openReader(t, v, 2)
	if _, size, ok := v.h.Buffer(ref.ChannelID); !ok || size != 2 {
		t.Fatalf("buffer size = %d (held %v), want 2", size, ok)
	}
	select {
	case <-r.Connected():
		t.Fatal("Connected before any writer dialled")
	default:
	}
	wc := v.dial(t, ref)
	select {
	case <-r.Connected():
	case <-time.After(5 * time.Second):
		t.Fatal("Connected not closed after the writer attached")
	}
	var want []msg
	for i := range 50 {
		m := msg{websocket.MessageBinary, []byte{byte(i), 1, 2}}
		if i%5 == 0 {
			m = msg{websocket.MessageText, []byte(fmt.Sprintf(`{"n":%d}`, i))}
		}
		want = append(want, m)
	}
	errc := make(chan error, 1)
	go func() {
		for _, m := range want {
			if err := wc.Write(t.Context(), m.typ, m.data); err != nil {
				errc <- err
				return
			}
		}
		errc <- wc.Close(websocket.StatusNormalClosure, "")
	}()
	for i, m := range want {
		f := next(t, r)
		if f.Binary != (m.typ == websocket.MessageBinary) || !bytes.Equal(f.Data, m.data) {
			t.Fatalf("frame %d = %v %q, want %v", i, f.Binary, f.Data, m)
		}
	}
	for range 2 {
		if err := nextErr(t, r); !errors.Is(err, io.EOF) {
			t.Fatalf("Next at the end = %v, want io.EOF", err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("writer: %v", err)
	}
	// The reader is done with the channel only when it closes it.
	if n := v.h.Len(); n != 1 {
		t.Fatalf("Len = %d before Close, want 1", n)
	}
	r.Close()
	r.Close() // idempotent
	v.waitLen(t, 0)
	if err := nextErr(t, r); !errors.Is(err, channels.ErrEndClosed) {
		t.Fatalf("Next after Close = %v, want ErrEndClosed", err)
	}
}

// The writer's connection dropping also ends the stream, after the frames
// it sent.
func TestLocalReaderWriterDropped(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	r, ref := openReader(t, v, 0)
	if _, size, _ := v.h.Buffer(ref.ChannelID); size != channels.DefaultBuffer {
		t.Fatalf("buffer size = %d, want the default %d", size, channels.DefaultBuffer)
	}
	wc := v.dial(t, ref)
	if err := wc.Write(t.Context(), websocket.MessageBinary, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	wc.CloseNow()
	if f := next(t, r); string(f.Data) != "abc" || !f.Binary {
		t.Fatalf("Next = %v %q, want binary abc", f.Binary, f.Data)
	}
	if err := nextErr(t, r); !errors.Is(err, io.EOF) {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
}

// Closing the engine's reader closes an attached writer with 1001 and
// removes the channel; a blocked Next returns.
func TestLocalReaderClose(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	r, ref := openReader(t, v, 4)
	wc := v.dial(t, ref)
	if err := wc.Write(t.Context(), websocket.MessageText, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if f := next(t, r); string(f.Data) != "one" || f.Binary {
		t.Fatalf("Next = %v %q, want text one", f.Binary, f.Data)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := r.Next(t.Context())
		errc <- err
	}()
	r.Close()
	if err := <-errc; !errors.Is(err, channels.ErrEndClosed) {
		t.Fatalf("Next blocked during Close = %v, want ErrEndClosed", err)
	}
	ce := closed(t, wc)
	wantClose(t, ce, websocket.StatusGoingAway)
	v.waitLen(t, 0)
	if got := v.dialStatus(t, ref.ChannelID, ref.AccessKey, "write"); got != http.StatusNotFound {
		t.Fatalf("dial after Close: status %d, want 404", got)
	}
}

// Local ends are taken: dialling them is refused, and does not disturb the
// channel.
func TestLocalEndsTaken(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	_, wref := openReader(t, v, 1)
	_, rref := openWriter(t, v, 1)
	if got := v.dialStatus(t, wref.ChannelID, wref.AccessKey, "read"); got != http.StatusConflict {
		t.Fatalf("dial of a LocalReader's end: status %d, want 409", got)
	}
	if got := v.dialStatus(t, rref.ChannelID, rref.AccessKey, "write"); got != http.StatusConflict {
		t.Fatalf("dial of a LocalWriter's end: status %d, want 409", got)
	}
	if got := v.dialStatus(t, wref.ChannelID, strings.Repeat("0", 32), "write"); got != http.StatusNotFound {
		t.Fatalf("dial with a wrong key: status %d, want 404", got)
	}
	// The remote ends are still free.
	v.dial(t, wref)
	v.dial(t, rref)
}

// Local ends whose remote party never comes leave nothing behind: Close
// (or Abort) removes the channel at once.
func TestLocalEndsNeverAttached(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	r, _ := openReader(t, v, 1)
	w, _ := openWriter(t, v, 1)
	if err := w.Write(t.Context(), true, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n := v.h.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with no writer = %v, want deadline exceeded", err)
	}
	// A full buffer holds Write back until its ctx ends.
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := w.Write(ctx, true, []byte("y")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write to a full buffer = %v, want deadline exceeded", err)
	}
	r.Close()
	w.Abort()
	w.Abort() // idempotent
	v.waitLen(t, 0)
	if err := w.Write(t.Context(), true, []byte("z")); !errors.Is(err, channels.ErrEndClosed) {
		t.Fatalf("Write after Abort = %v, want ErrEndClosed", err)
	}
}

// The engine writes and closes before the reader attaches: the reader
// still gets it all, then a normal close, and the channel is then gone.
func TestLocalWriterBeforeReader(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	w, ref := openWriter(t, v, 3)
	want := []msg{
		{websocket.MessageText, []byte(`{"type":"hello"}`)},
		{websocket.MessageBinary, []byte{12, 34, 56}},
		{websocket.MessageBinary, []byte{78, 90}},
	}
	for _, m := range want {
		if err := w.Write(t.Context(), m.typ == websocket.MessageBinary, m.data); err != nil {
			t.Fatalf("Write = %v", err)
		}
	}
	w.Close()
	w.Close() // idempotent
	if err := w.Write(t.Context(), true, []byte("late")); !errors.Is(err, channels.ErrEndClosed) {
		t.Fatalf("Write after Close = %v, want ErrEndClosed", err)
	}
	got, ce := drain(t, v.dial(t, ref))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reader got %v, want %v", got, want)
	}
	wantClose(t, ce, websocket.StatusNormalClosure)
	v.waitLen(t, 0)
	w.Abort() // after the whole stream was read: nothing to do
}

// A live reader drains a writer that writes far more than the buffer.
func TestLocalWriterBackpressure(t *testing.T) {
	t.Parallel()
	const frames = 500
	v := newEnv(t, channels.Config{})
	w, ref := openWriter(t, v, 2)
	rc := v.dial(t, ref)
	errc := make(chan error, 1)
	go func() {
		for i := range frames {
			if err := w.Write(t.Context(), true, binary.BigEndian.AppendUint32(nil, uint32(i))); err != nil {
				errc <- fmt.Errorf("write %d: %w", i, err)
				return
			}
		}
		w.Close()
		errc <- nil
	}()
	got, ce := drain(t, rc)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(got) != frames {
		t.Fatalf("got %d frames, want %d", len(got), frames)
	}
	for i, m := range got {
		if n := binary.BigEndian.Uint32(m.data); int(n) != i || m.typ != websocket.MessageBinary {
			t.Fatalf("frame %d is %v frame %d", i, m.typ, n)
		}
	}
	wantClose(t, ce, websocket.StatusNormalClosure)
	v.waitLen(t, 0)
}

// Abort cuts an attached reader off with 1001.
func TestLocalWriterAbort(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	w, ref := openWriter(t, v, 4)
	rc := v.dial(t, ref)
	if err := w.Write(t.Context(), false, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, rc); got != "first" {
		t.Fatalf("Read = %q, want first", got)
	}
	w.Abort()
	wantClose(t, closed(t, rc), websocket.StatusGoingAway)
	v.waitLen(t, 0)
	if got := v.dialStatus(t, ref.ChannelID, ref.AccessKey, "read"); got != http.StatusNotFound {
		t.Fatalf("dial after Abort: status %d, want 404", got)
	}
	w.Close() // after Abort: nothing to do
}

// A writer blocked on a full buffer gives up when the reader leaves, and
// when the writer is closed.
func TestLocalWriterUnblocked(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{})
	t.Run("reader_leaves", func(t *testing.T) {
		t.Parallel()
		w, ref := openWriter(t, v, 1)
		rc := v.dial(t, ref)
		errc := make(chan error, 1)
		go func() {
			for {
				if err := w.Write(t.Context(), true, make([]byte, 1024)); err != nil {
					errc <- err
					return
				}
			}
		}()
		rc.CloseNow()
		select {
		case err := <-errc:
			if errors.Is(err, channels.ErrEndClosed) || errors.Is(err, context.Canceled) {
				t.Fatalf("Write = %v, want the reader's departure", err)
			}
		case <-time.After(readTimeout):
			t.Fatal("Write still blocked after the reader left")
		}
	})
	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		w, _ := openWriter(t, v, 1)
		if err := w.Write(t.Context(), true, []byte("fills the buffer")); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- w.Write(t.Context(), true, []byte("blocked")) }()
		w.Close()
		if err := <-errc; !errors.Is(err, channels.ErrEndClosed) {
			t.Fatalf("blocked Write during Close = %v, want ErrEndClosed", err)
		}
	})
}

// An oversize frame from the remote writer ends the engine's stream with
// ErrTruncated, after the frames before it.
func TestLocalReaderOversizeFrame(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{MaxFrameBytes: 1024})
	r, ref := openReader(t, v, 4)
	wc := v.dial(t, ref)
	for _, n := range []int{1024, 1025} {
		if err := wc.Write(t.Context(), websocket.MessageBinary, make([]byte, n)); err != nil {
			t.Fatalf("Write(%d bytes) = %v", n, err)
		}
	}
	if f := next(t, r); len(f.Data) != 1024 {
		t.Fatalf("Next = %d bytes, want 1024", len(f.Data))
	}
	if err := nextErr(t, r); !errors.Is(err, channels.ErrTruncated) {
		t.Fatalf("Next = %v, want ErrTruncated", err)
	}
	wantClose(t, closed(t, wc), websocket.StatusMessageTooBig)
}

// Local channels whose remote party never comes expire like any other, and
// their ends then fail.
func TestLocalEndsExpire(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{TTL: 50 * time.Millisecond})
	r, _ := openReader(t, v, 1)
	w, _ := openWriter(t, v, 1)
	w.Close()
	v.waitLen(t, 0)
	if err := nextErr(t, r); err == nil || errors.Is(err, io.EOF) || errors.Is(err, channels.ErrEndClosed) {
		t.Fatalf("Next on an expired channel = %v, want the expiry", err)
	}
	w2, _ := openWriter(t, v, 1)
	poll.CheckFor(t, 5*time.Second, func() error {
		if err := w2.Write(t.Context(), true, []byte("x")); err == nil {
			return errors.New("Write still succeeds")
		}
		return nil
	})
}

// Hub.Close fails the local ends, and no more can be opened.
func TestLocalEndsHubClose(t *testing.T) {
	t.Parallel()
	v, stop := start(t, channels.Config{})
	t.Cleanup(stop)
	r, _, err := v.h.OpenReader(1)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := v.h.OpenWriter(1)
	if err != nil {
		t.Fatal(err)
	}
	v.h.Close()
	if _, err := r.Next(t.Context()); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Next after Hub.Close = %v, want an error", err)
	}
	if err := w.Write(t.Context(), true, []byte("x")); err == nil {
		t.Fatal("Write after Hub.Close succeeded")
	}
	r.Close()
	w.Abort()
	if _, _, err := v.h.OpenReader(1); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("OpenReader after Close = %v, want unavailable", err)
	}
	if _, _, err := v.h.OpenWriter(1); !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("OpenWriter after Close = %v, want unavailable", err)
	}
}

// A channel buffers at most MaxBufferBytes whatever its buffer_size: a
// writer that far ahead of a reader that does not read waits. Frames
// larger than the budget still pass one at a time, and everything arrives.
func TestBufferBoundedInBytes(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{MaxBufferBytes: 256 << 10})
	w, ref := openWriter(t, v, 1024)
	frame := make([]byte, 64<<10)
	written := 0
	for ; written < 100; written++ {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		err := w.Write(ctx, true, frame)
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("write %d: %v", written, err)
			}
			break
		}
	}
	if written != 4 {
		t.Fatalf("%d frames of 64 KiB buffered with no reader, want 4 (256 KiB)", written)
	}
	rc := v.dial(t, ref)
	done := make(chan error, 1)
	go func() {
		if err := w.Write(t.Context(), true, make([]byte, 1<<20)); err != nil { // larger than the budget
			done <- err
			return
		}
		w.Close()
		done <- nil
	}()
	got, ce := drain(t, rc)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != written+1 || len(got[written].data) != 1<<20 {
		t.Fatalf("reader got %d frames", len(got))
	}
	wantClose(t, ce, websocket.StatusNormalClosure)
}

// At most MaxChannels are open at once; more are refused with overloaded.
func TestMaxChannels(t *testing.T) {
	t.Parallel()
	v := newEnv(t, channels.Config{MaxChannels: 3})
	for range 3 {
		v.create(t, `{}`)
	}
	_, _, err := v.tryCreate(t.Context(), `{}`)
	if engine.AsError(err).Code != codes.Overloaded {
		t.Fatalf("fourth channel: %v, want overloaded", err)
	}
}
