package gateway_test

import (
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/gateway"
	"github.com/trinehq/trine/internal/wstest"
	"github.com/trinehq/trine/streammodule"
)

// FuzzClientBytes sends arbitrary bytes as a browser's WebSocket stream,
// after a real upgrade, to a real gateway: frame headers, masks,
// fragments, control frames, UTF-8 and JSON. The gateway never crashes
// or hangs.
func FuzzClientBytes(f *testing.F) {
	f.Add(wstest.Masked(ws.OpText, true, `{"type":"ping"}`))
	f.Add(wstest.Masked(ws.OpText, true, `{"type":"join","data":{"subscriptionId":"a","streamName":"s","groupId":"g","since":"3"}}`, `{"type":"leave","data":{"subscriptionId":"a","streamName":"s","groupId":"g"}}`))
	f.Add(wstest.Masked(ws.OpText, true, `{"type":"join","data":{"subscriptionId":"p","streamName":"s","groupId":"g","presence":{"meta":{"n":1}}}}`,
		`{"type":"presence","data":{"subscriptionId":"p","limit":1,"after":"x"}}`, `{"type":"leave","data":{"subscriptionId":"p","streamName":"s","groupId":"g"}}`))
	f.Add(wstest.Masked(ws.OpText, true, `{"type":"join","data":{"subscriptionId":"p","streamName":"s","groupId":"g","presence":{"meta":[1]}}}`))
	f.Add(wstest.Masked(ws.OpText, false, `{"type":`))
	f.Add(append(wstest.Masked(ws.OpText, false, `{"type":`), wstest.Masked(ws.OpContinuation, true, `"ping"}`)...))
	f.Add(wstest.Masked(ws.OpText, true, "{\"type\":\"ping\",\"x\":\"\xff\"}"))
	f.Add(wstest.Masked(ws.OpClose, true, "\x03\xe8bye"))
	f.Add(wstest.Masked(ws.OpPing, true, "p"))
	f.Add(wstest.Masked(ws.OpBinary, true, `[]`))
	f.Add([]byte{0x81, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked
	s := newStack(f, gateway.Config{MaxFrameBytes: 64 << 10}, streammodule.Config{})
	addr := s.srv.Listener.Addr().String()
	f.Fuzz(func(t *testing.T, data []byte) {
		nc, err := wstest.Dial(t.Context(), addr, "/", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		wstest.SendAndDrain(nc, data, 2*time.Second)
	})
}
