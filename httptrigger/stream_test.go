package httptrigger_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/channels"
	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/poll"
)

// streamHarness is a harness whose provider has a channels.Hub, served on
// its own test server for the functions (playing workers) to dial.
type streamHarness struct {
	*harness
	hub    *recordingHub
	hubURL string
}

// recordingHub is a channels.Hub that remembers the refs it handed out.
type recordingHub struct {
	*channels.Hub
	mu   sync.Mutex
	refs []channels.Ref
}

func (h *recordingHub) OpenWriter(n int) (*channels.LocalWriter, channels.Ref, error) {
	w, ref, err := h.Hub.OpenWriter(n)
	h.record(ref)
	return w, ref, err
}

func (h *recordingHub) OpenReader(n int) (*channels.LocalReader, channels.Ref, error) {
	r, ref, err := h.Hub.OpenReader(n)
	h.record(ref)
	return r, ref, err
}

func (h *recordingHub) record(ref channels.Ref) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refs = append(h.refs, ref)
}

func startStreaming(t *testing.T, cfg httptrigger.Config, hcfg channels.Config) *streamHarness {
	t.Helper()
	h0, err := channels.New(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	hub := &recordingHub{Hub: h0}
	cfg.Channels = hub
	h := start(t, cfg)
	hubSrv := httptest.NewServer(hub)
	t.Cleanup(func() {
		hub.Close()
		hubSrv.Close()
	})
	return &streamHarness{harness: h, hub: hub, hubURL: "ws" + strings.TrimPrefix(hubSrv.URL, "http")}
}

// dial opens the end of a channel that ref names, as a worker would.
func (h *streamHarness) dial(ctx context.Context, ref *channels.Ref) (*websocket.Conn, error) {
	if ref == nil {
		return nil, errors.New("no channel ref in the payload")
	}
	q := url.Values{"key": {ref.AccessKey}, "dir": {ref.Direction}}
	c, _, err := websocket.Dial(ctx, h.hubURL+"/ws/channels/"+ref.ChannelID+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(-1)
	return c, nil
}

// noLeftovers checks that every channel the provider opened is gone: its
// remote end can no longer be dialled.
func (h *streamHarness) noLeftovers(t *testing.T) {
	t.Helper()
	h.hub.mu.Lock()
	refs := h.hub.refs
	h.hub.refs = nil
	h.hub.mu.Unlock()
	if len(refs) == 0 {
		t.Fatal("the provider opened no channels")
	}
	for _, ref := range refs {
		poll.CheckFor(t, 5*time.Second, poll.Holds("channel "+ref.ChannelID+" to be removed", func() bool {
			c, res, err := websocket.Dial(t.Context(), h.hubURL+"/ws/channels/"+ref.ChannelID+"?"+
				url.Values{"key": {ref.AccessKey}, "dir": {ref.Direction}}.Encode(), nil)
			if err == nil {
				c.CloseNow()
				return false
			}
			return res != nil && res.StatusCode == http.StatusNotFound
		}))
	}
}

// dialResponse dials the response channel of the request in payload, as
// a streaming function does.
func (h *streamHarness) dialResponse(ctx context.Context, payload []byte) (*websocket.Conn, error) {
	req, err := decodeRequest(payload)
	if err != nil {
		return nil, err
	}
	return h.dial(ctx, req.Response)
}

func decodeRequest(payload []byte) (httptrigger.Request, error) {
	var req httptrigger.Request
	err := json.Unmarshal(payload, &req)
	return req, err
}

// wsFrame is a frame a test function sends on the response channel.
type wsFrame struct {
	text   bool
	data   string
	closed bool // close the connection normally instead of sending
}

func text(s string) wsFrame   { return wsFrame{text: true, data: s} }
func binary(s string) wsFrame { return wsFrame{data: s} }

var endStream = wsFrame{closed: true}

// send writes frames on c, closing it normally at endStream.
func send(ctx context.Context, c *websocket.Conn, frames ...wsFrame) error {
	for _, f := range frames {
		var err error
		switch {
		case f.closed:
			err = c.Close(websocket.StatusNormalClosure, "")
		case f.text:
			err = c.Write(ctx, websocket.MessageText, []byte(f.data))
		default:
			err = c.Write(ctx, websocket.MessageBinary, []byte(f.data))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// streamer registers a function that streams frames on its response
// channel and then returns out.
func (h *streamHarness) streamer(t *testing.T, id, out string, frames ...wsFrame) {
	t.Helper()
	h.fn(t, id, func(ctx context.Context, c engine.Call) ([]byte, error) {
		conn, err := h.dialResponse(ctx, c.Payload)
		if err != nil {
			return nil, err
		}
		defer conn.CloseNow()
		if err := send(ctx, conn, frames...); err != nil {
			return nil, err
		}
		return []byte(out), nil
	})
}

const (
	status201  = `{"type":"set_status","status_code":201}`
	setHeaders = `{"type":"set_headers","headers":{"content-type":"text/plain","x-stream":"yes"}}`
)

func TestStreamedResponse(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{}, channels.Config{})

	// As iii's SDKs do: the function returns null at once, and its
	// response reaches the channel afterwards.
	var late sync.WaitGroup
	t.Cleanup(late.Wait)
	h.fn(t, "late", func(_ context.Context, c engine.Call) ([]byte, error) {
		req, err := decodeRequest(c.Payload)
		if err != nil {
			return nil, err
		}
		late.Go(func() {
			ctx := context.WithoutCancel(t.Context()) // the call's context ends when it returns
			conn, err := h.dial(ctx, req.Response)
			if err != nil {
				t.Errorf("dial response: %v", err)
				return
			}
			defer conn.CloseNow()
			if err := send(ctx, conn, text(status201), text(setHeaders), binary("hello "), binary("world"), endStream); err != nil {
				t.Errorf("stream: %v", err)
			}
		})
		return nil, nil
	})
	h.streamer(t, "early", "null", text(status201), text(setHeaders), binary("hello "), binary("world"), endStream)
	h.streamer(t, "empty", "null", endStream)
	h.streamer(t, "headers-only", "null", text(`{"type":"set_status","status_code":404}`), text(setHeaders), endStream)
	h.streamer(t, "defaults", "null", binary("raw"), endStream)
	h.streamer(t, "chatty", "null",
		text(`not json`), text(`{"type":"progress","n":1}`), text(`[1]`), // ignored
		text(status201),
		text(`{"type":"set_headers","headers":{"X-Multi":["a","b"],"content-length":"999","connection":"close"}}`),
		text(`{"type":"set_headers","headers":{"x-stream":"first"}}`),
		text(setHeaders), // a later set_headers replaces the names it gives
		binary("a"), binary(""),
		text(`{"type":"set_status","status_code":500}`), // after the header: ignored
		binary("b"), endStream)
	h.streamer(t, "no-content", "null", text(`{"type":"set_status","status_code":204}`), binary("dropped"), endStream)
	for _, id := range []string{"late", "early", "empty", "headers-only", "defaults", "chatty", "no-content"} {
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
	}
	h.route(t, "head", "early", `{"api_path": "early", "http_method": "HEAD"}`)

	for _, tt := range []struct {
		method, path string
		status       int
		body         string
		header       http.Header
	}{
		{"GET", "/late", 201, "hello world", http.Header{"Content-Type": {"text/plain"}, "X-Stream": {"yes"}}},
		{"GET", "/early", 201, "hello world", http.Header{"Content-Type": {"text/plain"}, "X-Stream": {"yes"}}},
		{"HEAD", "/early", 201, "", http.Header{"Content-Type": {"text/plain"}, "X-Stream": {"yes"}}},
		{"GET", "/empty", 200, "", nil},
		{"GET", "/headers-only", 404, "", http.Header{"X-Stream": {"yes"}}},
		{"GET", "/defaults", 200, "raw", nil},
		{"GET", "/chatty", 201, "ab", http.Header{"X-Multi": {"a", "b"}, "X-Stream": {"yes"}, "Content-Length": nil}},
		{"GET", "/no-content", 204, "", nil},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := h.do(t, tt.method, tt.path, nil)
			if r.status != tt.status || string(r.body) != tt.body {
				t.Fatalf("answer = %d %q, want %d %q", r.status, r.body, tt.status, tt.body)
			}
			for k, want := range tt.header {
				if got := r.header.Values(k); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if r.close {
				t.Errorf("the connection is closed after a complete streamed answer")
			}
		})
	}
	h.noLeftovers(t)
}

// A function reads the request body from its channel and answers with a
// buffered response.
func TestStreamedRequestBody(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{MaxBodyBytes: 1 << 20}, channels.Config{})
	h.fn(t, "read", func(ctx context.Context, c engine.Call) ([]byte, error) {
		req, err := decodeRequest(c.Payload)
		if err != nil {
			return nil, err
		}
		conn, err := h.dial(ctx, req.RequestBody)
		if err != nil {
			return nil, err
		}
		defer conn.CloseNow()
		var got bytes.Buffer
		frames := 0
		for {
			typ, data, err := conn.Read(ctx)
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				break
			}
			if err != nil {
				return nil, err
			}
			if typ != websocket.MessageBinary || len(data) == 0 || len(data) > 64<<10 {
				return nil, fmt.Errorf("frame %d: %v of %d bytes, want binary of 1 to 64 KiB", frames, typ, len(data))
			}
			frames++
			got.Write(data)
		}
		return json.Marshal(map[string]any{"status_code": 200, "body": map[string]any{
			"got": hex.EncodeToString(got.Bytes()), "frames": frames, "body": req.Body}})
	})
	h.route(t, "read", "read", `{"api_path": "read", "http_method": "POST"}`)

	big := strings.Repeat("0123456789abcdef", 20<<10) // 320 KiB: 5 frames
	for _, tt := range []struct {
		name, ctype, body string
		frames            int
		parsed            string
	}{
		{"text", "text/plain", "hello body", 1, `"hello body"`},
		{"json kept raw", "application/json", `{ "a" : [1,  2] }`, 1, `{"a":[1,2]}`},
		{"empty", "text/plain", "", 0, `null`},
		{"large", "text/plain", big, 5, ""},
		// Not UTF-8: no body member (415 without channels), the bytes in
		// request_body.
		{"binary", "application/octet-stream", "\xff\xfe\x00\x01", 1, `null`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(t, "POST", "/read", strings.NewReader(tt.body), "Content-Type", tt.ctype)
			var res struct {
				Got    string          `json:"got"`
				Frames int             `json:"frames"`
				Body   json.RawMessage `json:"body"`
			}
			if r.status != 200 || json.Unmarshal(r.body, &res) != nil {
				t.Fatalf("answer = %d %.200s", r.status, r.body)
			}
			if res.Got != hex.EncodeToString([]byte(tt.body)) || res.Frames != tt.frames {
				t.Errorf("read %d bytes in %d frames, want %d bytes in %d", len(res.Got), res.Frames, len(tt.body), tt.frames)
			}
			var compact bytes.Buffer
			_ = json.Compact(&compact, res.Body)
			if tt.parsed != "" && compact.String() != tt.parsed {
				t.Errorf("body member = %s, want %s", compact.String(), tt.parsed)
			}
		})
	}
	h.noLeftovers(t)
}

// A function streams far more than the response channel buffers before it
// returns; the client reads the first bytes while it is still running.
func TestStreamLargerThanBuffer(t *testing.T) {
	t.Parallel()
	const half, size = 50, 4 << 10
	h := startStreaming(t, httptrigger.Config{}, channels.Config{DefaultBuffer: 2})
	clientHasData := make(chan struct{})
	returned := make(chan struct{})
	h.fn(t, "big", func(ctx context.Context, c engine.Call) ([]byte, error) {
		defer close(returned)
		conn, err := h.dialResponse(ctx, c.Payload)
		if err != nil {
			return nil, err
		}
		defer conn.CloseNow()
		chunk := bytes.Repeat([]byte("x"), size)
		for range half {
			if err := conn.Write(ctx, websocket.MessageBinary, chunk); err != nil {
				return nil, err
			}
		}
		select {
		case <-clientHasData:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		for range half {
			if err := conn.Write(ctx, websocket.MessageBinary, chunk); err != nil {
				return nil, err
			}
		}
		return nil, conn.Close(websocket.StatusNormalClosure, "")
	})
	h.route(t, "big", "big", `{"api_path": "big", "http_method": "GET"}`)

	res, err := h.srv.Client().Get(h.srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, half*size)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatalf("read the first half: %v", err)
	}
	select {
	case <-returned:
		t.Fatal("the function returned before the client had its data")
	default:
	}
	close(clientHasData)
	rest, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read the rest: %v", err)
	}
	if res.StatusCode != 200 || len(rest) != half*size {
		t.Fatalf("answer = %d with %d more bytes, want 200 and %d", res.StatusCode, len(rest), half*size)
	}
	h.noLeftovers(t)
}

// Functions that return their response keep working, channels or not.
func TestStreamBufferedResults(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{}, channels.Config{})
	h.reply(t, "plain", `{"status_code": 202, "headers": {"x-a": "1"}, "body": "buffered"}`)
	h.reply(t, "invalid", `{"status_code": 99}`)
	h.reply(t, "not-object", `"str"`)
	// This one closes its response channel unused, then returns a response.
	h.streamer(t, "closed-unused", `{"status_code": 203, "body": "after close"}`, endStream)
	// This one opens its response channel but writes nothing on it.
	attached := make(chan *websocket.Conn, 1)
	t.Cleanup(func() {
		select {
		case c := <-attached:
			c.CloseNow()
		default:
		}
	})
	h.fn(t, "attached", func(ctx context.Context, c engine.Call) ([]byte, error) {
		conn, err := h.dialResponse(context.WithoutCancel(ctx), c.Payload)
		if err != nil {
			return nil, err
		}
		attached <- conn
		return []byte(`{"body": {"ok": true}}`), nil
	})
	for _, id := range []string{"plain", "invalid", "not-object", "closed-unused", "attached"} {
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
	}
	if r := h.do(t, "GET", "/plain", nil); r.status != 202 || string(r.body) != "buffered" || r.header.Get("X-A") != "1" ||
		r.header.Get("Content-Length") != "8" {
		t.Errorf("GET /plain = %d %v %q", r.status, r.header, r.body)
	}
	h.do(t, "GET", "/invalid", nil).wantError(t, http.StatusBadGateway, httptrigger.CodeInvalidResponse)
	h.do(t, "GET", "/not-object", nil).wantError(t, http.StatusBadGateway, httptrigger.CodeInvalidResponse)
	if r := h.do(t, "GET", "/closed-unused", nil); r.status != 203 || string(r.body) != "after close" {
		t.Errorf("GET /closed-unused = %d %q, want 203 after close", r.status, r.body)
	}
	if r := h.do(t, "GET", "/attached", nil); r.status != 200 || string(r.body) != `{"ok": true}` {
		t.Errorf("GET /attached = %d %q", r.status, r.body)
	}
	// The idle writer is told the reader went away.
	conn := <-attached
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, _, err := conn.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("idle response writer: Read = %v, want a 1001 close", err)
	}
	h.noLeftovers(t)
}

func TestStreamInvalidMessages(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{}, channels.Config{})
	for i, msg := range []string{
		`{"type":"set_headers","headers":{"bad name":"x"}}`,
		`{"type":"set_headers","headers":{"x":"a\r\nSet-Cookie: evil"}}`,
		`{"type":"set_headers","headers":{"x":1}}`,
		`{"type":"set_headers","headers":"x"}`,
		`{"type":"set_status","status_code":99}`,
		`{"type":"set_status","status_code":"200"}`,
		`{"type":"set_status"}`,
	} {
		id := fmt.Sprintf("bad%d", i)
		h.streamer(t, id, "null", text(msg), binary("never sent"), endStream)
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
		t.Run(msg, func(t *testing.T) {
			h.do(t, "GET", "/"+id, nil).wantError(t, http.StatusBadGateway, httptrigger.CodeInvalidResponse)
		})
	}
	h.noLeftovers(t)
}

// A function that returns null and streams nothing is answered 504 at the
// Timeout.
func TestStreamNoResponse(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{Timeout: 300 * time.Millisecond}, channels.Config{})
	h.reply(t, "null", `null`)
	h.reply(t, "absent", ``)
	// This one sets a status and then neither writes a body nor closes.
	var open []*websocket.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.CloseNow()
		}
	})
	h.fn(t, "unfinished", func(ctx context.Context, c engine.Call) ([]byte, error) {
		conn, err := h.dialResponse(context.WithoutCancel(ctx), c.Payload)
		if err != nil {
			return nil, err
		}
		open = append(open, conn)
		return nil, send(ctx, conn, text(status201))
	})
	for _, id := range []string{"null", "absent", "unfinished"} {
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
	}
	for _, tt := range []struct{ path, message string }{
		{"/null", "returned no response and wrote none to its response channel"},
		{"/absent", "returned no response and wrote none to its response channel"},
		{"/unfinished", "did not finish streaming its response"},
	} {
		t.Run(tt.path, func(t *testing.T) {
			began := time.Now()
			msg := h.do(t, "GET", tt.path, nil).wantError(t, http.StatusGatewayTimeout, httptrigger.CodeTimeout)
			if !strings.Contains(msg, tt.message) {
				t.Errorf("message = %q, want it to contain %q", msg, tt.message)
			}
			if d := time.Since(began); d < 250*time.Millisecond || d > 5*time.Second {
				t.Errorf("answered after %v, want about 300ms", d)
			}
		})
	}
	h.noLeftovers(t)
}

// A function that returns null and never connects to its response channel
// is answered 502 after the connect grace, not at the (long) Timeout; one
// that connects late but within it still streams.
func TestStreamNullWithoutWriter(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{Timeout: 20 * time.Second}, channels.Config{})
	h.reply(t, "null", `null`)
	h.route(t, "null", "null", `{"api_path": "null", "http_method": "GET"}`)
	began := time.Now()
	msg := h.do(t, "GET", "/null", nil).wantError(t, http.StatusBadGateway, httptrigger.CodeInvalidResponse)
	if !strings.Contains(msg, "returned null and streamed no response") {
		t.Errorf("message = %q", msg)
	}
	if d := time.Since(began); d < time.Second || d > 10*time.Second {
		t.Errorf("answered after %v, want about the 2 s connect grace", d)
	}

	// Returns null first, connects 500 ms later, then streams.
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	h.fn(t, "late", func(ctx context.Context, c engine.Call) ([]byte, error) {
		req, err := decodeRequest(c.Payload)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(500 * time.Millisecond)
			conn, err := h.dial(context.Background(), req.Response)
			if err != nil {
				return
			}
			defer conn.CloseNow()
			_ = send(context.Background(), conn, text(status201))
			_ = conn.Write(context.Background(), websocket.MessageBinary, []byte("late body"))
			_ = conn.Close(websocket.StatusNormalClosure, "")
		}()
		return []byte("null"), nil
	})
	h.route(t, "late", "late", `{"api_path": "late", "http_method": "GET"}`)
	res := h.do(t, "GET", "/late", nil)
	if res.status != http.StatusCreated || string(res.body) != "late body" {
		t.Fatalf("late stream: %d %q", res.status, res.body)
	}
	h.noLeftovers(t)
}

// Failures before the header give today's error answers; after it, the
// response is cut off.
func TestStreamFailures(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{Timeout: 500 * time.Millisecond}, channels.Config{})
	// failAfter's function streams frames, waits for wait (if any), and
	// fails.
	failAfter := func(wait chan struct{}, frames ...wsFrame) func(context.Context, engine.Call) ([]byte, error) {
		return func(ctx context.Context, c engine.Call) ([]byte, error) {
			conn, err := h.dialResponse(ctx, c.Payload)
			if err != nil {
				return nil, err
			}
			defer conn.CloseNow()
			if err := send(ctx, conn, frames...); err != nil {
				return nil, err
			}
			if wait != nil {
				select {
				case <-wait:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return nil, &engine.Error{Code: "payment_required", Message: "card declined"}
		}
	}
	gotHeader := make(chan struct{})
	h.fn(t, "fail-early", failAfter(nil, text(status201)))
	h.fn(t, "fail-closed", failAfter(nil, text(status201), endStream))
	h.fn(t, "fail-late", failAfter(gotHeader, text(status201), binary("partial")))
	h.fn(t, "stall", func(ctx context.Context, c engine.Call) ([]byte, error) {
		conn, err := h.dialResponse(ctx, c.Payload)
		if err != nil {
			return nil, err
		}
		defer conn.CloseNow()
		if err := send(ctx, conn, binary("partial")); err != nil {
			return nil, err
		}
		<-ctx.Done() // never ends the stream
		return nil, ctx.Err()
	})
	for _, id := range []string{"fail-early", "fail-closed", "fail-late", "stall"} {
		h.route(t, id, id, fmt.Sprintf(`{"api_path": %q, "http_method": "GET"}`, id))
	}

	for _, path := range []string{"/fail-early", "/fail-closed"} {
		msg := h.do(t, "GET", path, nil).wantError(t, http.StatusBadGateway, "payment_required")
		if msg != "card declined" {
			t.Errorf("GET %s: message = %q, want card declined", path, msg)
		}
	}
	for _, tt := range []struct {
		path   string
		status int
	}{{"/fail-late", 201}, {"/stall", 200}} {
		t.Run(tt.path, func(t *testing.T) {
			res, err := h.srv.Client().Get(h.srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if tt.path == "/fail-late" {
				close(gotHeader)
			}
			b, err := io.ReadAll(res.Body)
			if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("reading the body = %q, %v, want it cut short (unexpected EOF)", b, err)
			}
			if res.StatusCode != tt.status || string(b) != "partial" {
				t.Errorf("answer = %d %q, want %d partial", res.StatusCode, b, tt.status)
			}
		})
	}
	h.noLeftovers(t)
}

// The payload has channel refs only when the provider has channels, and the
// condition function never gets them.
func TestStreamPayloadRefs(t *testing.T) {
	t.Parallel()
	raw := func(t *testing.T, h *harness, path string) map[string]json.RawMessage {
		t.Helper()
		r := h.do(t, "POST", path, strings.NewReader(`{"x":1}`))
		var m map[string]json.RawMessage
		if r.status != 200 || json.Unmarshal(r.body, &m) != nil {
			t.Fatalf("POST %s = %d %s", path, r.status, r.body)
		}
		return m
	}

	plain := start(t, httptrigger.Config{})
	plain.echo(t, "echo")
	plain.route(t, "p", "echo", `{"api_path": "p", "http_method": "POST"}`)
	for _, k := range []string{"request_body", "response"} {
		if v, ok := raw(t, plain, "/p")[k]; ok {
			t.Errorf("payload without channels has %s: %s", k, v)
		}
	}

	h := startStreaming(t, httptrigger.Config{}, channels.Config{})
	h.echo(t, "echo")
	var condPayload []byte
	h.fn(t, "cond", func(_ context.Context, c engine.Call) ([]byte, error) {
		condPayload = c.Payload
		return []byte("true"), nil
	})
	h.route(t, "p", "echo", `{"api_path": "p", "http_method": "POST", "condition_function_id": "cond"}`)
	m := raw(t, h.harness, "/p")
	for k, dir := range map[string]string{"request_body": "read", "response": "write"} {
		var ref channels.Ref
		if err := json.Unmarshal(m[k], &ref); err != nil || ref.Direction != dir || ref.ChannelID == "" || ref.AccessKey == "" {
			t.Errorf("%s = %s, want a %s ref", k, m[k], dir)
		}
	}
	if string(m["body"]) != `{"x":1}` {
		t.Errorf("body = %s, want {\"x\":1}", m["body"])
	}
	if bytes.Contains(condPayload, []byte("request_body")) || bytes.Contains(condPayload, []byte(`"response"`)) {
		t.Errorf("condition payload has channel refs: %s", condPayload)
	}
	h.noLeftovers(t)
}

// A function that keeps running after it ended its stream is cancelled
// after a grace period, so the response finishes long before the Timeout.
func TestStreamEndedFunctionStillRunning(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{Timeout: 20 * time.Second}, channels.Config{})
	ended := make(chan error, 1)
	h.fn(t, "linger", func(ctx context.Context, c engine.Call) ([]byte, error) {
		conn, err := h.dialResponse(ctx, c.Payload)
		if err != nil {
			return nil, err
		}
		defer conn.CloseNow()
		if err := send(ctx, conn, binary("done"), endStream); err != nil {
			return nil, err
		}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	h.route(t, "linger", "linger", `{"api_path": "linger", "http_method": "GET"}`)
	began := time.Now()
	if r := h.do(t, "GET", "/linger", nil); r.status != 200 || string(r.body) != "done" {
		t.Fatalf("GET /linger = %d %q, want 200 done", r.status, r.body)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("answered after %v, want about a second", d)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("function context ended with %v, want canceled", err)
	}
	h.noLeftovers(t)
}

// A client leaving mid-stream cancels the function and closes the channels.
func TestStreamClientGone(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{}, channels.Config{})
	ended := make(chan error, 1)
	h.fn(t, "endless", func(ctx context.Context, c engine.Call) ([]byte, error) {
		conn, err := h.dialResponse(ctx, c.Payload)
		if err != nil {
			return nil, err
		}
		defer conn.CloseNow()
		for ctx.Err() == nil {
			if err := conn.Write(ctx, websocket.MessageBinary, []byte("tick\n")); err != nil {
				break // the channel may close before the call is cancelled
			}
		}
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, ctx.Err()
	})
	h.route(t, "endless", "endless", `{"api_path": "endless", "http_method": "GET"}`)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/endless", nil)
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, 100)); err != nil {
		t.Fatalf("read the first ticks: %v", err)
	}
	cancel()
	res.Body.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("function context ended with %v, want canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the function's context did not end when the client went away")
	}
	h.noLeftovers(t)
}

// TestStreamedUpload: a route with max_body_bytes over MaxBodyBytes gets
// its body as it arrives, never buffered whole: a body 8 times the
// buffered limit reaches the function, which reads it while the client is
// still sending; over the route's limit the stream breaks (and a declared
// length is refused at once); bad limits are refused.
func TestStreamedUpload(t *testing.T) {
	t.Parallel()
	h := startStreaming(t, httptrigger.Config{MaxBodyBytes: 64 << 10, MaxStreamBodyBytes: 4 << 20}, channels.Config{})
	firstFrame := make(chan struct{}, 4)
	h.fn(t, "count", func(ctx context.Context, c engine.Call) ([]byte, error) {
		req, err := decodeRequest(c.Payload)
		if err != nil {
			return nil, err
		}
		if len(req.Body) != 0 && string(req.Body) != "null" {
			return nil, fmt.Errorf("a streamed route got body %s", req.Body)
		}
		conn, err := h.dial(ctx, req.RequestBody)
		if err != nil {
			return nil, err
		}
		defer conn.CloseNow()
		n, frames := 0, 0
		for {
			_, data, err := conn.Read(ctx)
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				break
			}
			if err != nil {
				return json.Marshal(map[string]any{"status_code": 400, "body": map[string]any{"broken_after": n}})
			}
			if frames == 0 {
				firstFrame <- struct{}{}
			}
			frames++
			n += len(data)
		}
		return json.Marshal(map[string]any{"status_code": 200, "body": map[string]any{"bytes": n}})
	})
	h.route(t, "up", "count", `{"api_path": "up", "http_method": "POST", "max_body_bytes": 1048576}`)
	h.route(t, "small", "count", `{"api_path": "small", "http_method": "POST", "max_body_bytes": 10}`)

	// 512 KiB through a pipe: the function has the first frame before the
	// client has sent the rest.
	pr, pw := io.Pipe()
	done := make(chan reply, 1)
	defer pr.Close()
	go func() { done <- h.do(t, "POST", "/up", pr, "Content-Type", "application/octet-stream") }()
	chunk := bytes.Repeat([]byte{0xab}, 64<<10)
	pw.Write(chunk)
	select {
	case <-firstFrame:
	case <-time.After(5 * time.Second):
		t.Fatal("the function saw nothing of the body while it was being sent")
	}
	for range 7 {
		pw.Write(chunk)
	}
	pw.Close()
	r := <-done
	if r.status != 200 || !strings.Contains(string(r.body), `"bytes":524288`) {
		t.Fatalf("streamed upload: %d %s", r.status, r.body)
	}

	// Over the route's limit, sent without a length: the stream breaks,
	// and the client sees an error answer or its connection closed.
	pr, pw = io.Pipe()
	go func() {
		for range 20 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", h.srv.URL+"/up", pr)
	res, err := h.srv.Client().Do(req)
	pr.CloseWithError(errors.New("done"))
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		// The function saw a broken stream (or none, when the body
		// outran it): never the whole body.
		if res.StatusCode < 400 || strings.Contains(string(b), `"bytes"`) {
			t.Fatalf("over max_body_bytes: %d %s", res.StatusCode, b)
		}
	}
	// With a declared length over it: 413 before the function runs.
	h.do(t, "POST", "/up", bytes.NewReader(make([]byte, 2<<20))).wantError(t, http.StatusRequestEntityTooLarge, httptrigger.CodePayloadTooLarge)
	// A smaller buffered limit applies as such.
	h.do(t, "POST", "/small", strings.NewReader(strings.Repeat("x", 11))).wantError(t, http.StatusRequestEntityTooLarge, httptrigger.CodePayloadTooLarge)
	for _, bad := range []string{
		`{"api_path": "b", "http_method": "POST", "max_body_bytes": 0}`,
		`{"api_path": "b", "http_method": "POST", "max_body_bytes": -1}`,
		`{"api_path": "b", "http_method": "POST", "max_body_bytes": 5000000}`,
		`{"api_path": "b", "http_method": "POST", "max_body_bytes": "1"}`,
	} {
		if err := h.register("b", "count", bad); code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v", bad, err)
		}
	}
	h.noLeftovers(t)
}

// Without channels, a route cannot stream its body.
func TestStreamedUploadNeedsChannels(t *testing.T) {
	t.Parallel()
	h := start(t, httptrigger.Config{MaxBodyBytes: 1024})
	h.echo(t, "echo")
	if err := h.register("up", "echo", `{"api_path": "up", "http_method": "POST", "max_body_bytes": 4096}`); code(err) != codes.InvalidArgument {
		t.Fatalf("a streamed route without channels: %v", err)
	}
	h.route(t, "ok", "echo", `{"api_path": "ok", "http_method": "POST", "max_body_bytes": 512}`)
}
