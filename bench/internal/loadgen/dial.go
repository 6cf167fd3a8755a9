// Package loadgen is the load generator shared by bench/fanout and
// bench/fleet: WebSocket subscribers of one stream group spread over
// several loopback source addresses, a publisher driven through a window of
// messages in flight with end-to-end latency histograms, the server
// processes under test and their CPU time, memory and write system calls
// read from /proc, and helpers for the tools' tables and progress lines.
//
// Linux only: the figures come from /proc and the children get Pdeathsig.
package loadgen

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

const (
	sourceIPs = 8 // client sockets come from 127.0.0.1 … 127.0.0.8
	// DialTimeout bounds the dial of a subscriber's or a publisher's
	// WebSocket.
	DialTimeout = 30 * time.Second
)

// Dialer spreads client sockets over several loopback source addresses,
// one http.Transport each, so that 10,000 sockets to one port do not
// exhaust the ephemeral ports of a single source address.
type Dialer struct {
	clients []*http.Client
}

// NewDialer returns a Dialer over 127.0.0.1 … 127.0.0.8.
func NewDialer() *Dialer {
	d := &Dialer{}
	for i := range sourceIPs {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}, Timeout: DialTimeout}
		d.clients = append(d.clients, &http.Client{Transport: &http.Transport{DialContext: nd.DialContext}})
	}
	return d
}

// Dial opens WebSocket i (which picks the source address) to url, without
// compression and with a 1 MiB read limit.
func (d *Dialer) Dial(ctx context.Context, i int, url string) (*websocket.Conn, error) {
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      d.clients[i%len(d.clients)],
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}
