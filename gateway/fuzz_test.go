package gateway_test

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/streammodule"
)

// masked encodes msgs as masked client frames.
func masked(op ws.OpCode, fin bool, msgs ...string) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		f := ws.NewFrame(op, fin, []byte(m))
		_ = ws.WriteFrame(&b, ws.MaskFrame(f))
	}
	return b.Bytes()
}

// FuzzClientBytes sends arbitrary bytes as a browser's WebSocket stream,
// after a real upgrade, to a real gateway: frame headers, masks,
// fragments, control frames, UTF-8 and JSON. The gateway never crashes,
// and serves a normal client afterwards.
func FuzzClientBytes(f *testing.F) {
	f.Add(masked(ws.OpText, true, `{"type":"ping"}`))
	f.Add(masked(ws.OpText, true, `{"type":"join","data":{"subscriptionId":"a","streamName":"s","groupId":"g","since":"3"}}`, `{"type":"leave","data":{"subscriptionId":"a","streamName":"s","groupId":"g"}}`))
	f.Add(masked(ws.OpText, false, `{"type":`))
	f.Add(append(masked(ws.OpText, false, `{"type":`), masked(ws.OpContinuation, true, `"ping"}`)...))
	f.Add(masked(ws.OpText, true, "{\"type\":\"ping\",\"x\":\"\xff\"}"))
	f.Add(masked(ws.OpClose, true, "\x03\xe8bye"))
	f.Add(masked(ws.OpPing, true, "p"))
	f.Add(masked(ws.OpBinary, true, `[]`))
	f.Add([]byte{0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked
	s := newStack(f, gateway.Config{MaxFrameBytes: 64 << 10}, streammodule.Config{})
	addr := s.srv.Listener.Addr().String()
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		u, _ := url.Parse("ws://" + addr + "/")
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
