package iiiserver_test

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/engine/iiiserver"
)

func maskedText(msgs ...string) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewTextFrame([]byte(m))))
	}
	return b.Bytes()
}

// FuzzWorkerBytes sends arbitrary bytes as an iii worker's WebSocket
// stream, after a real upgrade, to a real iii listener: every message type
// with good, missing and mistyped fields, frames and fragments. The engine
// never crashes or hangs.
func FuzzWorkerBytes(f *testing.F) {
	f.Add(maskedText(`{"type":"ping"}`))
	f.Add(maskedText(`{"type":"registerfunction","id":"f","request_format":null,"response_format":null}`,
		`{"type":"invokefunction","invocation_id":"2b2a9a0e-8e0e-4f4e-9d55-1e1c4b7b1f00","function_id":"engine::functions::list","data":{}}`))
	f.Add(maskedText(`{"type":"invokefunction","invocation_id":7,"function_id":"f","data":{}}`))
	f.Add(maskedText(`{"type":"registertrigger","id":"t","trigger_type":"http","function_id":"f","config":{"api_path":"x","http_method":"GET"}}`))
	f.Add(maskedText(`{"type":"registertriggertype","id":"tt","description":"d"}`, `{"type":"unregistertriggertype","id":"tt"}`))
	f.Add(maskedText(`{"type":"invocationresult","invocation_id":"x","function_id":"f","result":1}`))
	f.Add(maskedText(`{"type":"reattach","previous_worker_id":"w","reattach_token":"t"}`))
	f.Add(maskedText(`{"type":"invokefunction","function_id":"engine::workers::register","data":{"name":"n"},"action":{"type":"void"}}`))
	f.Add(maskedText("{\"type\":\"ping\",\"x\":\"\xff\"}"))
	f.Add(maskedText(`[`, `null`, `{"type":null}`))
	s := start(f, iiiserver.Config{MaxMessageBytes: 64 << 10})
	addr := strings.TrimPrefix(s.url, "ws://")
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		u, _ := url.Parse(s.url)
		if _, _, err := (ws.Dialer{}).Upgrade(nc, u); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = nc.Write(data)
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, nc)
	})
}
