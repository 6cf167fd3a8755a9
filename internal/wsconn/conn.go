package wsconn

import (
	"bufio"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// CloseGrace is how long a socket that sent a close frame waits for the
// peer's answer before it is cut.
const CloseGrace = time.Second

// Conn is a server socket whose writes may come from several goroutines:
// messages in through Next, pre-framed bytes out through Write, so that a
// writer can send many frames in one system call. Pings are answered with
// a pong; nothing is written after the close frame. (The stream gateway,
// whose writers run in a pool, uses Reader and the framing functions
// directly.)
type Conn struct {
	NC           net.Conn
	Reader       Reader
	WriteTimeout time.Duration

	lastRead  atomic.Int64 // unix nanoseconds of the last frame read
	wmu       sync.Mutex   // serialises writes
	closeSent bool         // guarded by wmu
}

// NewConn reads src (from Upgrade) through a bufSize buffer, with messages
// up to maxMessage bytes, and bounds each write by writeTimeout.
func NewConn(nc net.Conn, src io.Reader, bufSize int, maxMessage int64, writeTimeout time.Duration) *Conn {
	c := &Conn{NC: nc, WriteTimeout: writeTimeout}
	c.Reader = Reader{Src: bufio.NewReaderSize(src, bufSize), MaxMessage: maxMessage, Peer: c}
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// Ping answers a ping with a pong (Peer).
func (c *Conn) Ping(p []byte) error { return c.Write(Frame(OpPong, p)) }

// FrameRead notes that a frame arrived (Peer).
func (c *Conn) FrameRead() { c.lastRead.Store(time.Now().UnixNano()) }

// Next returns the next data message (Reader.Next).
func (c *Conn) Next() (op byte, msg []byte, err error) { return c.Reader.Next() }

// LastRead is when the last frame arrived (or the socket opened).
func (c *Conn) LastRead() time.Time { return time.Unix(0, c.lastRead.Load()) }

// Write sends pre-framed bytes, bounded by the write timeout.
func (c *Conn) Write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	return c.writeLocked(b)
}

func (c *Conn) writeLocked(b []byte) error {
	if err := c.NC.SetWriteDeadline(time.Now().Add(c.WriteTimeout)); err != nil {
		return err
	}
	_, err := c.NC.Write(b)
	return err
}

// Close sends a close frame once and reports whether this call sent it.
func (c *Conn) Close(code int, reason string) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return false
	}
	c.closeSent = true
	_ = c.writeLocked(AppendClose(nil, code, reason))
	return true
}

// CloseAfter ends reading after err: it sends the close frame that err
// calls for, if any, and reads what the peer still sends for up to
// CloseGrace, so that closing the socket does not reset the connection
// before the peer has read the close frame. It reports whether err called
// for a close frame.
func (c *Conn) CloseAfter(err error) bool {
	code, reason, ok := CloseCode(err)
	if !ok {
		return false
	}
	c.Close(code, reason)
	c.Drain()
	return true
}

// Drain reads and drops what the peer sends for up to CloseGrace.
func (c *Conn) Drain() {
	_ = c.NC.SetReadDeadline(time.Now().Add(CloseGrace))
	_, _ = io.Copy(io.Discard, c.NC)
}
