package iiiserver_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/internal/poll"
)

// telemetrySink records what the server forwards.
type telemetrySink struct {
	mu  sync.Mutex
	got []string
	err error
}

func (s *telemetrySink) ForwardJSON(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.got = append(s.got, string(b))
	return nil
}

func (s *telemetrySink) forwarded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

// TestTelemetryForwardsTraces: the OTLP trace frames iii workers send on
// /otel and on their worker socket reach Config.Telemetry without their
// prefix; metrics and logs frames, and traces over the byte rate, are
// dropped and counted.
func TestTelemetryForwardsTraces(t *testing.T) {
	t.Parallel()
	sink := &telemetrySink{}
	s := start(t, iiiserver.Config{Telemetry: sink, MaxMessageBytes: 1 << 10, TelemetryBytesPerSecond: 1})
	o := s.dialRaw(t, "/otel")
	o.sendRaw(websocket.MessageBinary, []byte(`OTLP{"resourceSpans":[1]}`))
	o.sendRaw(websocket.MessageBinary, []byte(`MTRC{}`))
	o.sendRaw(websocket.MessageBinary, []byte(`LOGS{}`))
	c := s.dial(t)
	c.hello("w")
	c.sendRaw(websocket.MessageBinary, []byte(`OTLP{"resourceSpans":[2]}`))
	poll.CheckFor(t, 5*time.Second, poll.Holds("two trace frames forwarded", func() bool {
		return s.srv.TelemetryForwarded() == 2 && s.srv.TelemetryDropped() == 2
	}))
	got := sink.forwarded()
	if strings.Join(got, " ") != `{"resourceSpans":[1]} {"resourceSpans":[2]}` && strings.Join(got, " ") != `{"resourceSpans":[2]} {"resourceSpans":[1]}` {
		t.Errorf("forwarded %q", got)
	}
	// Past the burst (1 KiB), traces are dropped until the rate (1 byte a
	// second) refills.
	big := "OTLP" + strings.Repeat(" ", 900) + "{}"
	o.sendRaw(websocket.MessageBinary, []byte(big))
	o.sendRaw(websocket.MessageBinary, []byte(big))
	poll.CheckFor(t, 5*time.Second, poll.Holds("one of two large frames dropped", func() bool {
		return s.srv.TelemetryForwarded()+s.srv.TelemetryDropped() == 6
	}))
	if d := s.srv.TelemetryDropped(); d < 3 {
		t.Errorf("TelemetryDropped() = %d after two frames over the rate, want at least 3", d)
	}
	if ws := s.e.Workers(); len(ws) != 1 {
		t.Fatalf("workers %+v: the telemetry socket must not be one", ws)
	}
}

// TestTelemetryOffDropsAndCounts: without Telemetry (tracing off) trace
// frames are dropped and counted, and a pipeline's refusal counts too.
func TestTelemetryOffDropsAndCounts(t *testing.T) {
	t.Parallel()
	s := start(t, iiiserver.Config{})
	o := s.dialRaw(t, "/otel")
	o.sendRaw(websocket.MessageBinary, []byte(`OTLP{}`))
	o.sendRaw(websocket.MessageText, []byte(`OTLP{}`)) // not a telemetry frame: text
	poll.CheckFor(t, 5*time.Second, poll.Holds("one frame dropped", func() bool { return s.srv.TelemetryDropped() == 1 }))
	full := &telemetrySink{err: errors.New("full")}
	s2 := start(t, iiiserver.Config{Telemetry: full})
	o2 := s2.dialRaw(t, "/otel")
	o2.sendRaw(websocket.MessageBinary, []byte(`OTLP{}`))
	poll.CheckFor(t, 5*time.Second, poll.Holds("refused frame counted", func() bool {
		return s2.srv.TelemetryDropped() == 1 && s2.srv.TelemetryForwarded() == 0
	}))
}

// TestTelemetryNeedsTheListenersAuth: on a listener whose policy admits
// workers, /otel admits only who the worker socket would: a client
// without a token is refused (401) and cannot put spans of its choosing
// into the trace pipeline, nor spend the forwarding budget of the
// workers that may.
func TestTelemetryNeedsTheListenersAuth(t *testing.T) {
	t.Parallel()
	sink := &telemetrySink{}
	s := start(t, iiiserver.Config{Telemetry: sink, Access: &engine.Access{Tokens: noTokens{}}})
	ws, res, err := websocket.Dial(t.Context(), s.url+"/otel", nil)
	if err == nil {
		_ = ws.Write(t.Context(), websocket.MessageBinary, []byte(`OTLP{"resourceSpans":[{"forged":true}]}`))
		_ = ws.Close(websocket.StatusNormalClosure, "")
		t.Fatal("an unauthenticated client opened /otel on a listener that requires a token")
	}
	if res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial /otel without a token: %v, want 401", err)
	}
	if got := sink.forwarded(); len(got) != 0 || s.srv.TelemetryForwarded() != 0 {
		t.Fatalf("forwarded %q", got)
	}
}
