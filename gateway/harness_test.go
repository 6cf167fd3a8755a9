package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/streamtest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stack is an engine with the StreamModule, a NATS server and a gateway
// served over loopback HTTP.
type stack struct {
	e   *engine.Engine
	m   *streammodule.Module
	gw  *gateway.Gateway
	srv *httptest.Server
	sub *natsfanout.Subscriber
	ns  *server.Server
	st  *streamtest.Stack
}

func newStack(t testing.TB, gcfg gateway.Config, mcfg streammodule.Config) *stack {
	t.Helper()
	st := streamtest.Start(t, mcfg)
	gcfg.Events, gcfg.Caller = st.Events, st.Engine
	if h, ok := gcfg.Backend.(*countingHistory); ok {
		h.countingBackend.Backend = st.Module
	} else if cb, ok := gcfg.Backend.(*countingBackend); ok {
		cb.Backend = st.Module
	} else {
		gcfg.Backend = st.Module
	}
	gw, err := gateway.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		gw.Close()
		srv.Close()
	})
	return &stack{st: st, e: st.Engine, m: st.Module, gw: gw, srv: srv, sub: st.Events, ns: st.NATS}
}

// gateway serves another gateway of the same engine and NATS.
func (s *stack) gateway(t testing.TB, gcfg gateway.Config) *stack {
	t.Helper()
	gcfg.Backend, gcfg.Events, gcfg.Caller, gcfg.AuthFunction = s.m, s.sub, s.e, s.gw.AuthFunction()
	gw, err := gateway.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		gw.Close()
		srv.Close()
	})
	o := *s
	o.gw, o.srv = gw, srv
	return &o
}

func (s *stack) call(t testing.TB, fn string, in any) string {
	t.Helper()
	return string(s.st.Call(t, fn, in))
}

func (s *stack) set(t testing.TB, stream, group, item string, data any) {
	t.Helper()
	s.call(t, "stream::set", map[string]any{"stream_name": stream, "group_id": group, "item_id": item, "data": data})
}

func (s *stack) wsURL(path string) string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + path }

// groupPath is the socket path of a group; "." and ".." go in the query,
// since URL paths cannot carry them.
func groupPath(stream, group string, query ...string) string {
	p := "/stream/" + url.PathEscape(stream) + "/" + url.PathEscape(group)
	if stream == "." || stream == ".." || group == "." || group == ".." {
		p = "/stream"
		query = append(query, "stream="+url.QueryEscape(stream), "group="+url.QueryEscape(group))
	}
	if len(query) > 0 {
		p += "?" + strings.Join(query, "&")
	}
	return p
}

// client is a real WebSocket client. A goroutine reads every frame into
// a channel (coder/websocket closes a connection whose Read is cancelled).
type client struct {
	t      *testing.T
	c      *websocket.Conn
	frames chan []byte
	done   chan struct{}
	err    error // the read error that ended the connection, once done
}

func (s *stack) dial(t *testing.T, path string, h http.Header) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.wsURL(path), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.SetReadLimit(64 << 20)
	cl := &client{t: t, c: c, frames: make(chan []byte, 100000), done: make(chan struct{})}
	go func() {
		defer close(cl.done)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				cl.err = err
				return
			}
			cl.frames <- b
		}
	}()
	t.Cleanup(func() { c.CloseNow(); <-cl.done })
	return cl
}

// frame is an outbound frame as browsers see it.
type frame struct {
	Seq            uint64          `json:"seq"`
	ID             *string         `json:"id"`
	Type           string          `json:"type"`
	StreamName     string          `json:"streamName"`
	GroupID        string          `json:"groupId"`
	SubscriptionID *string         `json:"subscriptionId"`
	Code           string          `json:"code"`
	Message        string          `json:"message"`
	Event          json.RawMessage `json:"event"`
	Raw            string          `json:"-"`
}

type event struct {
	Type   string          `json:"type"`
	Data   json.RawMessage `json:"data"`
	IDs    []string        `json:"ids"`
	Resync bool            `json:"resync"`
	Event  *struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	} `json:"event"`
}

func (f frame) event(t testing.TB) event {
	t.Helper()
	var e event
	if err := json.Unmarshal(f.Event, &e); err != nil {
		t.Fatalf("event of %s: %v", f.Raw, err)
	}
	return e
}

// kind is "sync", "create", … for stream frames, else the frame type.
func (f frame) kind() string {
	if f.Type != "stream" {
		return f.Type
	}
	var e struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(f.Event, &e)
	return e.Type
}

func parseFrame(t testing.TB, b []byte) frame {
	t.Helper()
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	f.Raw = string(b)
	return f
}

func (c *client) read() frame {
	c.t.Helper()
	select {
	case b := <-c.frames:
		return parseFrame(c.t, b)
	case <-c.done:
		select {
		case b := <-c.frames:
			return parseFrame(c.t, b)
		default:
		}
		c.t.Fatalf("read: %v", c.err)
	case <-time.After(5 * time.Second):
		c.t.Fatal("read: no frame within 5s")
	}
	return frame{}
}

// closed waits for the connection to end and returns its close status.
func (c *client) closed() websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
		return websocket.CloseStatus(c.err)
	case <-time.After(10 * time.Second):
		c.t.Fatal("connection still open after 10s")
	}
	return 0
}

// quiet asserts that nothing arrives for d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case b := <-c.frames:
		c.t.Fatalf("unexpected frame %s", b)
	case <-time.After(d):
	}
}

func (c *client) send(v any) {
	c.t.Helper()
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.c.Write(context.Background(), websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func join(sub, stream, group string, extra ...any) map[string]any {
	d := map[string]any{"subscriptionId": sub, "streamName": stream, "groupId": group}
	for i := 0; i+1 < len(extra); i += 2 {
		d[extra[i].(string)] = extra[i+1]
	}
	return map[string]any{"type": "join", "data": d}
}

func leave(sub, stream, group string) map[string]any {
	return map[string]any{"type": "leave", "data": map[string]any{"subscriptionId": sub, "streamName": stream, "groupId": group}}
}

// sseClient reads Server-Sent Events.
type sseClient struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

func (s *stack) sse(t *testing.T, path string, h http.Header) *sseClient {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+path, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE %s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
	}
	return &sseClient{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
}

// next returns the next event's id and frame, skipping comments.
func (c *sseClient) next() (string, frame) {
	c.t.Helper()
	type res struct {
		id, data string
		err      error
	}
	ch := make(chan res, 1)
	go func() {
		var id, data string
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				ch <- res{err: err}
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "" && data != "":
				ch <- res{id: id, data: data}
				return
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data += line[6:]
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			c.t.Fatalf("SSE read: %v", r.err)
		}
		return r.id, parseFrame(c.t, []byte(r.data))
	case <-time.After(5 * time.Second):
		c.t.Fatal("SSE: no event within 5s")
	}
	return "", frame{}
}

func must(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}

var _ = fmt.Sprint

// liveHeap returns the bytes of the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// comment reads lines up to the next comment line and returns it; it fails
// when none comes within d.
func (c *sseClient) comment(d time.Duration) string {
	c.t.Helper()
	ch := make(chan string, 1)
	go func() {
		for {
			line, err := c.r.ReadString('\n')
			if err != nil {
				ch <- ""
				return
			}
			if strings.HasPrefix(line, ":") {
				ch <- strings.TrimRight(line, "\n")
				return
			}
		}
	}()
	select {
	case l := <-ch:
		return l
	case <-time.After(d):
		c.t.Fatalf("SSE: no comment within %v", d)
	}
	return ""
}
