package wsconn_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/wsconn"
	"github.com/trinehq/trine/internal/wstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func frames(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func text(fin bool, s string) []byte { return wstest.Masked(ws.OpText, fin, s) }
func cont(fin bool, s string) []byte { return wstest.Masked(ws.OpContinuation, fin, s) }
func control(op ws.OpCode, p []byte) []byte {
	var b bytes.Buffer
	_ = ws.WriteFrame(&b, ws.MaskFrame(ws.NewFrame(op, true, p)))
	return b.Bytes()
}

func closeBody(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

type pingCounter struct{ n int }

func (p *pingCounter) Ping([]byte) error { p.n++; return nil }
func (p *pingCounter) FrameRead()        {}

// read runs a Reader over raw client bytes and returns the messages read
// and the error that ended it, with the pings it saw.
func read(raw []byte, max int64) (msgs []string, pings int, err error) {
	p := &pingCounter{}
	defer func() { pings = p.n }()
	r := wsconn.Reader{Src: bufio.NewReader(bytes.NewReader(raw)), MaxMessage: max, Peer: p}
	for {
		_, m, err := r.Next()
		if err != nil {
			return msgs, pings, err
		}
		msgs = append(msgs, string(m))
	}
}

// Every rule a client can break ends reading with the close code for it,
// after the messages that came before; messages that keep the rules are
// reassembled from their fragments, with control frames between them.
func TestReaderRules(t *testing.T) {
	unmasked := []byte{0x81, 0x02, 'h', 'i'}
	rsv := text(true, "x")
	rsv[0] |= 0x40
	cases := []struct {
		name string
		raw  []byte
		msgs []string
		code int
	}{
		{"fragments and a ping between them", frames(text(false, "he"), control(ws.OpPing, []byte("p")), cont(false, "l"), cont(true, "lo")), []string{"hello"}, -1},
		{"a character split across fragments", frames(text(false, "\xc3"), cont(true, "\xa9")), []string{"é"}, -1},
		{"invalid UTF-8 in the last fragment", frames(text(true, "ok"), text(false, "fine"), cont(true, "\xff")), []string{"ok"}, wsconn.CloseInvalidData},
		{"a lone surrogate", text(true, "\xed\xa0\x80"), nil, wsconn.CloseInvalidData},
		{"a message over the limit in fragments", frames(text(false, strings.Repeat("x", 10)), cont(true, strings.Repeat("x", 7))), nil, wsconn.CloseTooBig},
		{"unmasked", unmasked, nil, wsconn.CloseProtocol},
		{"reserved bits", rsv, nil, wsconn.CloseProtocol},
		{"a continuation first", cont(true, "x"), nil, wsconn.CloseProtocol},
		{"a message inside a fragmented one", frames(text(false, "a"), text(true, "b")), nil, wsconn.CloseProtocol},
		{"an unknown opcode", wstest.Masked(ws.OpCode(3), true, "x"), nil, wsconn.CloseProtocol},
		{"a long control frame", control(ws.OpPing, make([]byte, 126)), nil, wsconn.CloseProtocol},
		{"a fragmented control frame", wstest.Masked(ws.OpPing, false, "x"), nil, wsconn.CloseProtocol},
		{"close 4000 is echoed", control(ws.OpClose, closeBody(4000, "bye")), nil, 4000},
		{"close 1005 may not be sent: 1000", control(ws.OpClose, closeBody(1005, "")), nil, wsconn.CloseNormal},
		{"close 1016 is not registered: 1000", control(ws.OpClose, closeBody(1016, "")), nil, wsconn.CloseNormal},
		{"close 1013 is echoed", control(ws.OpClose, closeBody(1013, "")), nil, 1013},
		{"close 999: 1000", control(ws.OpClose, closeBody(999, "")), nil, wsconn.CloseNormal},
		{"close with no body: 1000", control(ws.OpClose, nil), nil, wsconn.CloseNormal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msgs, _, err := read(c.raw, 16)
			if strings.Join(msgs, "|") != strings.Join(c.msgs, "|") {
				t.Fatalf("messages %q, want %q", msgs, c.msgs)
			}
			code, _, ok := wsconn.CloseCode(err)
			switch {
			case c.code == -1 && (ok || err == nil):
				t.Fatalf("ended with %v (close %d), want the end of input", err, code)
			case c.code != -1 && (!ok || code != c.code):
				t.Fatalf("ended with %v (close %d), want close %d", err, code, c.code)
			}
		})
	}
	if _, pings, _ := read(cases[0].raw, 16); pings != 1 {
		t.Fatalf("%d pings seen, want 1", pings)
	}
}

// Close reasons stay within a control frame and stay UTF-8, however long
// or broken the reason given; codes that may not be sent become 1000.
func TestCloseFrames(t *testing.T) {
	for _, reason := range []string{"", "short", strings.Repeat("é", 100), strings.Repeat("x", 122) + "é", "bad \xff byte", strings.Repeat("🔥", 40)} {
		f := wsconn.AppendClose(nil, 4001, reason)
		if f[0] != 0x88 || int(f[1]) != len(f)-2 || len(f)-2 > 125 {
			t.Fatalf("close frame header % x for a %d-byte reason", f[:2], len(reason))
		}
		got := string(f[4:])
		if !utf8.ValidString(got) || binary.BigEndian.Uint16(f[2:]) != 4001 || !strings.HasPrefix(strings.ToValidUTF8(reason, ""), got) {
			t.Fatalf("close reason %q from %q", got, reason)
		}
	}
	for _, code := range []int{1004, 1005, 1006, 1015, 2999, 0, 5000, 70000} {
		if f := wsconn.AppendClose(nil, code, ""); binary.BigEndian.Uint16(f[2:]) != wsconn.CloseNormal {
			t.Fatalf("close code %d sent as %d", code, binary.BigEndian.Uint16(f[2:]))
		}
	}
}

// A Conn over a real socket: a client's pings get pongs, its messages
// arrive, the close handshake completes with the client's code echoed,
// and a socket keeps only the bytes the HTTP server read past the
// handshake (here a message sent with it).
func TestConnOverASocket(t *testing.T) {
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, src, err := wsconn.Upgrade(w, r, time.Second)
		if err != nil {
			return
		}
		defer nc.Close()
		c := wsconn.NewConn(nc, src, 512, 1<<20, time.Second)
		for {
			_, m, err := c.Next()
			if err != nil {
				c.CloseAfter(err)
				got <- "end"
				return
			}
			got <- string(m)
			_ = c.Write(wsconn.Frame(wsconn.OpText, append([]byte("echo "), m...)))
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.CloseNow()
	if err := cc.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := cc.Read(ctx); err != nil || string(b) != "echo hi" {
		t.Fatalf("echo: %q %v", b, err)
	}
	if m := <-got; m != "hi" {
		t.Fatalf("server got %q", m)
	}
	if err := cc.Close(4001, "bye"); err != nil {
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 {
			t.Fatalf("close handshake: %v", err)
		}
	}
	if m := <-got; m != "end" {
		t.Fatalf("server got %q", m)
	}

	// A message and a ping in the same packet as the handshake.
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write(frames([]byte(req), text(true, "early"), control(ws.OpPing, []byte("p")))); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "early" {
			t.Fatalf("server got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the message sent with the handshake was lost")
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v", err)
	}
	for _, want := range []string{"echo early", "p"} {
		//lint:ignore SA1019 the test reads small frames from its own server
		f, err := ws.ReadFrame(br)
		if err != nil || string(f.Payload) != want {
			t.Fatalf("server sent %v %q, want %q", f.Header.OpCode, f.Payload, want)
		}
	}
	nc.Close()
	<-got
}

// A fragment whose length would overflow the message's running size is
// too big, not a huge allocation.
func TestHugeFragmentLength(t *testing.T) {
	first := text(false, "abc")
	var huge bytes.Buffer
	_ = ws.WriteHeader(&huge, ws.Header{OpCode: ws.OpContinuation, Fin: true, Masked: true, Length: 1<<63 - 2})
	_, _, err := read(frames(first, huge.Bytes()), 16)
	if code, _, _ := wsconn.CloseCode(err); code != wsconn.CloseTooBig {
		t.Fatalf("ended with %v, want close 1009", err)
	}
}

func TestCheckUpgrade(t *testing.T) {
	good := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	if err := wsconn.CheckUpgrade(good()); err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(*http.Request){
		"POST":        func(r *http.Request) { r.Method = http.MethodPost },
		"no upgrade":  func(r *http.Request) { r.Header.Del("Upgrade") },
		"no conn":     func(r *http.Request) { r.Header.Set("Connection", "keep-alive") },
		"version 8":   func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") },
		"short key":   func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "YWJj") },
		"garbage key": func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "%%%") },
	} {
		r := good()
		spoil(r)
		if wsconn.CheckUpgrade(r) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
