package iiiserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// WebSocket close codes the server sends.
const (
	closeNormal      = 1000
	closeGoingAway   = 1001
	closeProtocol    = 1002
	closeInvalidData = 1007
	closePolicy      = 1008
	closeTooBig      = 1009
	closeTryLater    = 1013
)

// closeGrace is how long a socket that sent a close frame waits for the
// peer's before it is cut.
const closeGrace = time.Second

// errPeerClosed ends a read loop when the peer closed the connection.
var errPeerClosed = errors.New("peer closed the connection")

// socket is the server side of one WebSocket, framed by gobwas/ws: messages
// in through next, pre-framed bytes out through write, so that a writer can
// send many frames in one system call.
type socket struct {
	nc           net.Conn
	rd           *wsutil.Reader
	writeTimeout time.Duration
	lastRead     atomic.Int64 // unix nanoseconds of the last frame read

	wmu       sync.Mutex // serialises writes
	closeSent bool       // guarded by wmu
}

func newSocket(nc net.Conn, br *bufio.Reader, maxMessage int64, writeTimeout time.Duration) *socket {
	s := &socket{nc: nc, writeTimeout: writeTimeout}
	s.rd = &wsutil.Reader{Source: br, State: ws.StateServerSide, CheckUTF8: true, MaxMessageSize: maxMessage,
		OnIntermediate: func(h ws.Header, r io.Reader) error { return s.control(h, r) }}
	s.lastRead.Store(time.Now().UnixNano())
	return s
}

// readMessage returns the next data message. Pings are answered and pongs noted
// on the way; a close from the peer is answered and ends it with
// errPeerClosed. Any other error leaves the socket to be closed with
// closeCode(err).
func (s *socket) readMessage() (ws.OpCode, []byte, error) {
	for {
		h, err := s.rd.NextFrame()
		if err != nil {
			return 0, nil, err
		}
		s.lastRead.Store(time.Now().UnixNano())
		if h.OpCode.IsControl() {
			if err := s.control(h, s.rd); err != nil {
				return 0, nil, err
			}
			continue
		}
		if h.OpCode == ws.OpContinuation {
			return 0, nil, ws.ErrProtocolContinuationUnexpected
		}
		b, err := io.ReadAll(s.rd)
		if err != nil {
			return 0, nil, err
		}
		return h.OpCode, b, nil
	}
}

// control handles a control frame whose payload r holds.
func (s *socket) control(h ws.Header, r io.Reader) error {
	p, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPing:
		return s.write(frame(ws.OpPong, p))
	case ws.OpClose:
		code := closeNormal
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		s.close(code, "")
		return errPeerClosed
	}
	return nil
}

// write sends pre-framed bytes, bounded by the write timeout. Nothing is
// written after the close frame.
func (s *socket) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closeSent {
		return net.ErrClosed
	}
	return s.writeLocked(b)
}

func (s *socket) writeLocked(b []byte) error {
	if err := s.nc.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil {
		return err
	}
	_, err := s.nc.Write(b)
	return err
}

// close sends a close frame once (echoing the peer's code when it closed
// first) and reports whether this call sent it.
func (s *socket) close(code int, reason string) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closeSent {
		return false
	}
	s.closeSent = true
	if code == 1005 || code < 1000 || code >= 5000 {
		code = closeNormal
	}
	if len(reason) > 120 {
		reason = reason[:120]
	}
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	_ = s.writeLocked(frame(ws.OpClose, append(p, reason...)))
	return true
}

// drain reads and drops what the peer still sends after a close frame, for
// up to closeGrace, so that closing the socket does not reset the
// connection before the peer has read the close frame.
func (s *socket) drain() {
	_ = s.nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, s.nc)
}

// closeCode is the close code for a read error.
func closeCode(err error) (int, string) {
	var pe ws.ProtocolError
	switch {
	case errors.Is(err, wsutil.ErrMessageTooLarge), errors.Is(err, wsutil.ErrFrameTooLarge):
		return closeTooBig, "message too large"
	case errors.Is(err, wsutil.ErrInvalidUTF8):
		return closeInvalidData, "text message is not valid UTF-8"
	case errors.As(err, &pe):
		return closeProtocol, pe.Error()
	}
	return 0, ""
}

// frame returns one unfragmented, unmasked server frame.
func frame(op ws.OpCode, p []byte) []byte {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	b := make([]byte, 0, ws.HeaderSize(h)+len(p))
	b = appendHeader(b, h)
	return append(b, p...)
}

// appendHeader appends a server frame header (no mask).
func appendHeader(b []byte, h ws.Header) []byte {
	first := byte(h.OpCode)
	if h.Fin {
		first |= 0x80
	}
	switch n := h.Length; {
	case n < 126:
		return append(b, first, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, first, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, first, 127), uint64(n))
	}
}
