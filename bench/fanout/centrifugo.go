package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/bench/internal/loadgen"
)

// Centrifugo (github.com/centrifugal/centrifugo), built from its public
// source by `make centrifugo` (see bench/README.md) and run as its own
// process, with anonymous clients allowed to subscribe to any channel and
// its HTTP API open on loopback. Subscribers speak its JSON protocol over
// WebSocket (connect, then subscribe to channel "bench"); the publisher
// calls its HTTP API's publish with the same data as Trine's ({"ts": …,
// "pad": …}, plus "seq", the bench's own counter, since Centrifugo numbers
// publications only in a channel with history).

const centrifugoChannel = "bench"

// centrifugoConfig is the server's configuration: everything else is
// Centrifugo's default. The HTTP API answers on the client port. A socket
// write may take 10 s, trine's default (--stream-write-timeout), rather
// than Centrifugo's 1 s, which on a loaded machine closes subscribers the
// bench starves of CPU.
func centrifugoConfig(port int) ([]byte, error) {
	return json.MarshalIndent(map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "warn"},
		"client":      map[string]any{"insecure": true, "allowed_origins": []string{"*"}},
		"http_api":    map[string]any{"insecure": true},
		"websocket":   map[string]any{"write_timeout": "10s"},
	}, "", "  ")
}

// centrifugoCommand is the server's command on a free loopback port, with
// its configuration written into dataDir.
func centrifugoCommand(bin, dataDir string) (loadgen.Command, string, error) {
	if bin == "" {
		return loadgen.Command{}, "", errors.New("centrifugo: no binary; build it with `make centrifugo` or pass -centrifugo-bin")
	}
	port, err := freePort()
	if err != nil {
		return loadgen.Command{}, "", err
	}
	cfg, err := centrifugoConfig(port)
	if err != nil {
		return loadgen.Command{}, "", err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return loadgen.Command{}, "", err
	}
	path := filepath.Join(dataDir, "config.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		return loadgen.Command{}, "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return loadgen.Command{
		Name: kindCentrifugo, Path: bin, Args: []string{"--config", path},
		StdinPipe: true, SignalExitOK: true,
		Ready: func() error {
			resp, err := http.Post("http://"+addr+"/api/info", "application/json", strings.NewReader("{}"))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("api/info: %s", resp.Status)
			}
			return nil
		},
	}, addr, nil
}

// freePort is a loopback port free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// centrifugoProto is the client side of Centrifugo's JSON protocol: one
// command per line, replies matched by id, publications pushed as
// {"push":{"channel":…,"pub":{"data":…}}}, and an empty object as the
// server's ping, answered with an empty object; one message may carry
// several of these, a line each.
var centrifugoProto = &loadgen.Protocol{
	Hello: []byte(`{"id":1,"connect":{}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + centrifugoChannel + `"}}`),
	Ready: func(msg []byte) (bool, error) {
		done := false
		for line := range bytes.Lines(msg) {
			line = bytes.TrimSpace(line)
			if bytes.Contains(line, []byte(`"error"`)) {
				return false, fmt.Errorf("centrifugo refused: %.200s", line)
			}
			if bytes.HasPrefix(line, []byte(`{"id":2,`)) {
				done = true
			}
		}
		return done, nil
	},
	Each: func(msg []byte, fn func(seq uint64, ts int64)) bool {
		for line := range bytes.Lines(msg) {
			line = bytes.TrimSpace(line)
			if !bytes.HasPrefix(line, []byte(`{"push":`)) {
				continue
			}
			seq, ts, ok := dataSeqTS(line)
			if !ok {
				return false
			}
			fn(seq, ts)
		}
		return true
	},
	Reply: func(msg []byte) []byte {
		for line := range bytes.Lines(msg) {
			if string(bytes.TrimSpace(line)) == "{}" {
				return []byte("{}")
			}
		}
		return nil
	},
}

var (
	dataTSKey  = []byte(`"ts":`)
	dataSeqKey = []byte(`"seq":`)
)

// dataSeqTS finds the publication's "ts" and "seq".
func dataSeqTS(b []byte) (seq uint64, ts int64, ok bool) {
	i := bytes.Index(b, dataTSKey)
	j := bytes.Index(b, dataSeqKey)
	if i < 0 || j < 0 {
		return 0, 0, false
	}
	t, n := loadgen.ParseUint(b[i+len(dataTSKey):])
	s, m := loadgen.ParseUint(b[j+len(dataSeqKey):])
	return s, int64(t), n > 0 && m > 0
}

// centrifugoPublisher calls the HTTP API's publish; each call waits for
// its answer, so a window of calls runs at once over kept-alive
// connections. An idle connection is closed after a second, before the
// server may close it under a request (a POST is not retried).
type centrifugoPublisher struct {
	url    string
	client *http.Client
	seq    atomic.Uint64
	suffix string
	pool   sync.Pool
}

func newCentrifugoPublisher(addr string, pad, window int) *centrifugoPublisher {
	return &centrifugoPublisher{
		url: "http://" + addr + "/api/publish",
		client: &http.Client{Timeout: time.Minute, Transport: &http.Transport{
			MaxIdleConnsPerHost: window + 1, IdleConnTimeout: time.Second, DisableCompression: true}},
		suffix: `,"pad":"` + strings.Repeat("x", pad) + `"}}`,
		pool:   sync.Pool{New: func() any { return new([]byte) }},
	}
}

// Publish publishes {"ts": <unix nanos now>, "seq": n, "pad": …}.
func (p *centrifugoPublisher) Publish() error {
	bp := p.pool.Get().(*[]byte)
	defer p.pool.Put(bp)
	b := append((*bp)[:0], `{"channel":"`+centrifugoChannel+`","data":{"ts":`...)
	b = strconv.AppendInt(b, time.Now().UnixNano(), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.seq.Add(1), 10)
	b = append(b, p.suffix...)
	*bp = b
	resp, err := p.client.Post(p.url, "application/json", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("centrifugo publish: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("centrifugo publish: %w", err)
	}
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: %s %.200s", resp.Status, body)
	}
	return nil
}

// Goroutines is window: each call waits for its answer.
func (p *centrifugoPublisher) Goroutines(window int) int { return window }

// Close closes the idle connections.
func (p *centrifugoPublisher) Close() { p.client.CloseIdleConnections() }

// defaultCentrifugoBin is $CENTRIFUGO_BIN, else .bin/centrifugo under the
// working directory when it exists (make centrifugo puts it there).
func defaultCentrifugoBin() string {
	if b := os.Getenv("CENTRIFUGO_BIN"); b != "" {
		return b
	}
	if b, err := filepath.Abs(filepath.Join(".bin", "centrifugo")); err == nil {
		if _, err := os.Stat(b); err == nil {
			return b
		}
	}
	return ""
}
