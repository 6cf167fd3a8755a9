package gateway_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
)

// frameReader reads unmasked server frames from a raw connection, after
// skipping the HTTP handshake response.
type frameReader struct {
	r         *bufio.Reader
	handshake bool
}

func newFrameReader(nc net.Conn) *frameReader { return &frameReader{r: bufio.NewReader(nc)} }

func (f *frameReader) next() (byte, []byte, error) {
	if !f.handshake {
		for {
			line, err := f.r.ReadString('\n')
			if err != nil {
				return 0, nil, err
			}
			if strings.HasPrefix(line, "HTTP/1.1 ") && !strings.HasPrefix(line, "HTTP/1.1 101") {
				return 0, nil, errors.New("handshake refused: " + line)
			}
			if line == "\r\n" {
				break
			}
		}
		f.handshake = true
	}
	var h [2]byte
	if _, err := io.ReadFull(f.r, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(f.r, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(f.r, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(f.r, p)
	return h[0] & 0x0f, p, err
}
