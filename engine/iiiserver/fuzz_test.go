package iiiserver_test

import (
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/internal/wstest"
)

func masked(msgs ...string) []byte { return wstest.Masked(ws.OpText, true, msgs...) }

// FuzzWorkerBytes sends arbitrary bytes as an iii worker's WebSocket
// stream, after a real upgrade, to a real iii listener: every message type
// with good, missing and mistyped fields, frames and fragments. The engine
// never crashes or hangs.
func FuzzWorkerBytes(f *testing.F) {
	f.Add(masked(`{"type":"ping"}`))
	f.Add(masked(`{"type":"registerfunction","id":"f","request_format":null,"response_format":null}`,
		`{"type":"invokefunction","invocation_id":"2b2a9a0e-8e0e-4f4e-9d55-1e1c4b7b1f00","function_id":"engine::functions::list","data":{}}`))
	f.Add(masked(`{"type":"invokefunction","invocation_id":7,"function_id":"f","data":{}}`))
	f.Add(masked(`{"type":"registertrigger","id":"t","trigger_type":"http","function_id":"f","config":{"api_path":"x","http_method":"GET"}}`))
	f.Add(masked(`{"type":"registertriggertype","id":"tt","description":"d"}`, `{"type":"unregistertriggertype","id":"tt"}`))
	f.Add(masked(`{"type":"invocationresult","invocation_id":"x","function_id":"f","result":1}`))
	f.Add(masked(`{"type":"reattach","previous_worker_id":"w","reattach_token":"t"}`))
	f.Add(masked(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"name":"n"},"action":{"type":"void"}}`))
	f.Add(masked("{\"type\":\"ping\",\"x\":\"\xff\"}"))
	f.Add(masked(`[`, `null`, `{"type":null}`))
	s := start(f, iiiserver.Config{MaxMessageBytes: 64 << 10})
	addr := strings.TrimPrefix(s.url, "ws://")
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := wstest.Dial(t.Context(), addr, "/", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wstest.SendAndDrain(nc, data, 2*time.Second)
	})
}
