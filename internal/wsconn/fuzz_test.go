package wsconn_test

import (
	"bufio"
	"bytes"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/trinehq/trine/internal/wsconn"
)

// Whatever a client sends, the reader returns messages within the limit,
// text ones valid UTF-8, and ends with an error rather than a panic or a
// hang.
func FuzzReader(f *testing.F) {
	f.Add(frames(text(false, "he"), control(ws.OpPing, []byte("p")), cont(true, "llo")))
	f.Add(frames(text(false, "\xc3"), cont(true, "\xa9")))
	f.Add(control(ws.OpClose, closeBody(1000, "bye")))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		r := wsconn.Reader{Src: bufio.NewReader(bytes.NewReader(raw)), MaxMessage: 64, Peer: &pingCounter{}}
		for {
			op, m, err := r.Next()
			if err != nil {
				return
			}
			if len(m) > 64 || (op == wsconn.OpText && !utf8.Valid(m)) || (op != wsconn.OpText && op != wsconn.OpBinary) {
				t.Fatalf("message op %d of %d bytes: %q", op, len(m), m)
			}
		}
	})
}
