package httptrigger_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/httptrigger"
	"github.com/trinehq/trine/internal/enginetest"
)

// harness is a running engine with the http trigger type served by an
// httptest server, and a worker session that owns the triggers.
type harness struct {
	e   *engine.Engine
	p   *httptrigger.Provider
	srv *httptest.Server
	s   *engine.Session
}

func start(t *testing.T, cfg httptrigger.Config) *harness {
	t.Helper()
	return startWith(t, engine.Config{}, cfg)
}

func startWith(t *testing.T, ecfg engine.Config, cfg httptrigger.Config) *harness {
	t.Helper()
	e := enginetest.Run(t, ecfg)

	p, err := httptrigger.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Register(e); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	s, err := e.Attach(engine.WorkerInfo{Name: "test"}, nopPeer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return &harness{e: e, p: p, srv: srv, s: s}
}

type nopPeer struct{}

func (nopPeer) Invoke(context.Context, engine.Invocation) error { return errors.New("no worker") }
func (nopPeer) Cancel(string)                                   {}
func (nopPeer) ConfigureTrigger(context.Context, string, engine.Trigger, bool) error {
	return nil
}

// fn registers a built-in function.
func (h *harness) fn(t *testing.T, id string, f func(ctx context.Context, c engine.Call) ([]byte, error)) {
	t.Helper()
	if err := h.e.RegisterFunction(id, "", engine.HandlerFunc(f)); err != nil {
		t.Fatalf("RegisterFunction(%q) = %v", id, err)
	}
}

// echo registers a function that answers its payload as a JSON body, and
// returns a counter of its calls.
func (h *harness) echo(t *testing.T, id string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	h.fn(t, id, func(_ context.Context, c engine.Call) ([]byte, error) {
		n.Add(1)
		return json.Marshal(map[string]any{"body": json.RawMessage(c.Payload)})
	})
	return &n
}

// reply registers a function that returns out as is.
func (h *harness) reply(t *testing.T, id, out string) {
	t.Helper()
	h.fn(t, id, func(context.Context, engine.Call) ([]byte, error) { return []byte(out), nil })
}

func (h *harness) register(id, fn, config string) error {
	return h.s.RegisterTrigger(context.Background(), engine.Trigger{ID: id, Type: httptrigger.TriggerType, FunctionID: fn, Config: json.RawMessage(config)})
}

func (h *harness) route(t *testing.T, id, fn, config string) {
	t.Helper()
	if err := h.register(id, fn, config); err != nil {
		t.Fatalf("RegisterTrigger(%s, %s) = %v", id, config, err)
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
	close  bool // the server closes the connection after this answer
}

// do sends a request; header values are added in order.
func (h *harness) do(t *testing.T, method, path string, body io.Reader, header ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, h.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return reply{res.StatusCode, res.Header, b, res.Close}
}

// request decodes an echo function's answer.
func (r reply) request(t *testing.T) httptrigger.Request {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status = %d (%s), want 200", r.status, r.body)
	}
	var req httptrigger.Request
	if err := json.Unmarshal(r.body, &req); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return req
}

// wantError checks an error answer: status, envelope code and JSON type.
func (r reply) wantError(t *testing.T, status int, code string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d (%s), want %d", r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var env struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Error == nil {
		t.Fatalf("body %s is not an error envelope (%v)", r.body, err)
	}
	if env.Error.Code != code {
		t.Fatalf("error code = %q (%s), want %q", env.Error.Code, r.body, code)
	}
	if env.Error.Message == "" {
		t.Errorf("error %s has no message", r.body)
	}
	return env.Error.Message
}

func code(err error) engine.Code {
	if err == nil {
		return ""
	}
	return engine.AsError(err).Code
}
