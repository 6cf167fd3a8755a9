// Package wsconn is the server side of WebSocket (RFC 6455) for every
// listener that speaks it: the stream gateway, the iii worker listener and
// channels. It upgrades a request that passed the listener's Host/Origin
// policy, reads client messages with bounded size and UTF-8 checked,
// frames server messages (pre-framed, so that a writer sends many in one
// system call), and runs the close handshake, with one set of close codes
// and one rule for close reasons.
//
// It is built on gobwas/ws's header parsing. A socket keeps only what the
// HTTP server had already read, not its buffers, so an idle one costs a
// few hundred bytes besides the kernel's.
//
// Concurrency: a Conn has one reader (the goroutine of its ServeHTTP) and
// any number of writers: Write, Ping and Close serialize on its lock. Drain
// and Close may be called from any goroutine, more than once. The package
// starts no goroutines.
package wsconn

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Close codes servers send.
const (
	CloseNormal      = 1000
	CloseGoingAway   = 1001
	CloseProtocol    = 1002
	CloseInvalidData = 1007 // a text message that is not UTF-8
	ClosePolicy      = 1008
	CloseTooBig      = 1009
	CloseServerError = 1011
	CloseTryLater    = 1013
)

// MaxCloseReason is the longest close reason, in bytes: a control frame
// carries 125 bytes, 2 of them the code.
const MaxCloseReason = 123

// Opcodes.
const (
	OpContinuation = byte(ws.OpContinuation)
	OpText         = byte(ws.OpText)
	OpBinary       = byte(ws.OpBinary)
	OpClose        = byte(ws.OpClose)
	OpPing         = byte(ws.OpPing)
	OpPong         = byte(ws.OpPong)
)

// CheckUpgrade reports why r is not a valid WebSocket upgrade request, or
// nil: a listener that reserves something for the socket checks first, so
// that a request Upgrade would refuse reserves nothing.
func CheckUpgrade(r *http.Request) error {
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	switch {
	case r.Method != http.MethodGet:
		return errors.New("a WebSocket upgrade is a GET")
	case !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket"):
		return errors.New("expected a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return errors.New("unsupported Sec-WebSocket-Version; want 13")
	case err != nil || len(key) != 16:
		return errors.New("bad Sec-WebSocket-Key")
	}
	return nil
}

// headerHas reports whether a comma-separated header has token (any case).
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Upgrade answers r's WebSocket handshake; the caller has checked its Host
// and Origin (internal/origin). On failure the response is already
// written. The reader holds only the bytes the HTTP server had read past
// the request, if any; wrap it in a small bufio.Reader.
func Upgrade(w http.ResponseWriter, r *http.Request, timeout time.Duration) (net.Conn, io.Reader, error) {
	nc, rw, _, err := ws.HTTPUpgrader{Timeout: timeout}.Upgrade(r, w)
	if err != nil {
		return nil, nil, err
	}
	var src io.Reader = nc
	if n := rw.Reader.Buffered(); n > 0 {
		pre, _ := rw.Reader.Peek(n)
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc)
	}
	return nc, src, nil
}

// Error is a broken rule of the protocol: the socket is to be closed with
// Code and Reason.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return "websocket: " + e.Reason }

// PeerClosed ends reading when the peer sent a close frame; Code is its
// code (CloseNormal when it gave none or an invalid one), to echo.
type PeerClosed struct{ Code int }

func (e *PeerClosed) Error() string { return "websocket: peer closed (" + strconv.Itoa(e.Code) + ")" }

// Peer gets what a Reader sees besides messages.
type Peer interface {
	// Ping gets each ping's payload, to answer with a pong; an error ends
	// reading with it.
	Ping(payload []byte) error
	// FrameRead runs for every frame read, control frames too.
	FrameRead()
}

// Reader reads client messages from Src. It is meant to live inside the
// connection's own struct, with the connection as its Peer: an idle
// socket then costs no allocation of its own for reading.
type Reader struct {
	Src *bufio.Reader
	// MaxMessage bounds a message, fragments joined; a larger one is an
	// Error with CloseTooBig.
	MaxMessage int64
	Peer       Peer // required
	// Admit, if set, is called with the length of each data frame's
	// payload (a fragment of a message, within MaxMessage) before its
	// bytes are allocated and read; it may wait, which stops reading
	// the socket. An error from it ends Next with that error. Whoever
	// admits bytes this way accounts for them: a message returned by
	// Next is the sum of the lengths admitted since the last one, and
	// after an error the bytes of the message being read are dropped.
	Admit func(n int64) error

	msg   []byte // the message being reassembled
	msgOp byte   // its opcode; 0 for none
}

// Next returns the next text or binary message. Control frames are handled
// on the way (pings passed to OnPing, pongs dropped); a close frame ends
// reading with *PeerClosed, and a broken rule with *Error. Other errors
// are the connection's.
//
// An idle socket's goroutine waits in Next, so its frame is kept small
// (the work is in frame): a waiting goroutine fits the smallest stack.
func (r *Reader) Next() (op byte, msg []byte, err error) {
	for {
		h, err := ws.ReadHeader(r.Src)
		if err != nil {
			return 0, nil, err
		}
		if op, msg, err := r.frame(h); op != 0 || err != nil {
			return op, msg, err
		}
	}
}

// frame reads the payload of the frame whose header is h. It returns a
// message once one is complete (op not 0), or the error that ends reading.
//
//go:noinline
func (r *Reader) frame(h ws.Header) (op byte, msg []byte, err error) {
	r.Peer.FrameRead()
	if !h.Masked || h.Rsv != 0 {
		return 0, nil, &Error{CloseProtocol, "client frames must be masked and use no extensions"}
	}
	if h.OpCode.IsControl() {
		return 0, nil, r.control(h)
	}
	switch {
	case h.OpCode == ws.OpContinuation && r.msgOp == 0:
		return 0, nil, &Error{CloseProtocol, "continuation without a message"}
	case h.OpCode != ws.OpContinuation && r.msgOp != 0:
		return 0, nil, &Error{CloseProtocol, "new message inside a fragmented one"}
	case h.OpCode != ws.OpContinuation && h.OpCode != ws.OpText && h.OpCode != ws.OpBinary:
		return 0, nil, &Error{CloseProtocol, "unknown opcode " + strconv.Itoa(int(h.OpCode))}
	}
	if h.Length < 0 || h.Length > r.MaxMessage-int64(len(r.msg)) { // no overflow
		return 0, nil, &Error{CloseTooBig, "message larger than " + strconv.FormatInt(r.MaxMessage, 10) + " bytes"}
	}
	if r.Admit != nil {
		if err := r.Admit(h.Length); err != nil {
			r.msgOp, r.msg = 0, nil
			return 0, nil, err
		}
	}
	if h.OpCode != ws.OpContinuation {
		r.msgOp, r.msg = byte(h.OpCode), make([]byte, 0, h.Length)
	}
	start := len(r.msg)
	r.msg = append(r.msg, make([]byte, h.Length)...)
	if _, err := io.ReadFull(r.Src, r.msg[start:]); err != nil {
		return 0, nil, err
	}
	ws.Cipher(r.msg[start:], h.Mask, 0)
	if !h.Fin {
		return 0, nil, nil
	}
	op, msg = r.msgOp, r.msg
	r.msgOp, r.msg = 0, nil
	if op == OpText && !utf8.Valid(msg) {
		return 0, nil, &Error{CloseInvalidData, "text message is not valid UTF-8"}
	}
	return op, msg, nil
}

// control handles a control frame: a ping goes to OnPing, a close ends
// reading.
func (r *Reader) control(h ws.Header) error {
	if h.Length > 125 || !h.Fin {
		return &Error{CloseProtocol, "bad control frame"}
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r.Src, p); err != nil {
		return err
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		return r.Peer.Ping(p)
	case ws.OpClose:
		code := CloseNormal
		if len(p) >= 2 {
			code = validCode(int(binary.BigEndian.Uint16(p)))
		}
		return &PeerClosed{code}
	}
	return nil
}

// validCode is code when a server may send it (a registered code or one
// of 3000-4999), else CloseNormal.
func validCode(code int) int {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return code
	}
	return CloseNormal
}

// CloseCode is the code and reason to close with after err ended a read:
// the rule broken, or the peer's code echoed. ok is false for errors of
// the connection itself (nothing to send).
func CloseCode(err error) (code int, reason string, ok bool) {
	var pe *Error
	var pc *PeerClosed
	switch {
	case errors.As(err, &pe):
		return pe.Code, pe.Reason, true
	case errors.As(err, &pc):
		return pc.Code, "", true
	}
	return 0, "", false
}

// AppendHeader appends the header of an unmasked server frame of n bytes.
// fin false leaves the message open for continuation frames.
func AppendHeader(buf []byte, op byte, fin bool, n int) []byte {
	first := op
	if fin {
		first |= 0x80
	}
	switch {
	case n < 126:
		return append(buf, first, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(buf, first, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(buf, first, 127), uint64(n))
	}
}

// AppendFrame appends a whole unmasked frame.
func AppendFrame(buf []byte, op byte, p []byte) []byte {
	return append(AppendHeader(buf, op, true, len(p)), p...)
}

// Frame returns a whole unmasked frame.
func Frame(op byte, p []byte) []byte {
	return AppendFrame(make([]byte, 0, len(p)+10), op, p)
}

// AppendClose appends a close frame. A code that may not be sent becomes
// CloseNormal; the reason is cut to MaxCloseReason bytes, on a character
// boundary, so that it stays UTF-8 (a browser fails a connection whose
// close reason is not).
func AppendClose(buf []byte, code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+min(len(reason), MaxCloseReason)), uint16(validCode(code)))
	return AppendFrame(buf, OpClose, append(p, CutReason(reason)...))
}

// CutReason cuts a close reason to MaxCloseReason bytes on a character
// boundary, and drops invalid UTF-8.
func CutReason(reason string) string {
	if !utf8.ValidString(reason) {
		reason = string(bytes.ToValidUTF8([]byte(reason), nil))
	}
	if len(reason) <= MaxCloseReason {
		return reason
	}
	n := MaxCloseReason
	for n > 0 && !utf8.RuneStart(reason[n]) {
		n--
	}
	return reason[:n]
}
