package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// client sends GET /hello/<id> to one server and checks each answer.
type client struct {
	hc   *http.Client
	base string // http://host:port
	ids  atomic.Int64
}

// newTransport returns a keep-alive transport that keeps up to conns idle
// connections per host, so that conns requests in flight reuse their
// connections instead of dialling anew.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // loopback, never through a proxy
		MaxIdleConns:        0,   // no limit across hosts
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
}

// get requests /hello/<id> with a fresh id and checks the status, the
// Content-Type and the body, so that a broken path cannot look fast.
func (c *client) get(ctx context.Context) error {
	id := int(c.ids.Add(1))
	url := c.base + helloPath + strconv.Itoa(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d (%s), want 200", url, res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("GET %s: Content-Type %q, want application/json", url, ct)
	}
	if want := wantBody(id); !bytes.Equal(body, want) {
		return fmt.Errorf("GET %s: body %s, want %s", url, body, want)
	}
	return nil
}
