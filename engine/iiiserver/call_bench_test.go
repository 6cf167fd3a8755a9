package iiiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
)

// BenchmarkCall is a worker's call of another worker's function over
// iii's protocol, as bench/iii measures it: a caller worker sends
// invokefunction, the engine invokes an echo worker, and the
// invocationresult comes back the same way, over real loopback sockets.
// Both workers are raw WebSocket clients in this process, so cpu-µs/call
// (the process's CPU time per call, from getrusage) counts them with the
// engine; with -cpu 1 it is what a change to the call path saves.
//
//	go test -run '^$' -bench BenchmarkCall -cpu 1 -benchtime 20000x ./engine/iiiserver/
func BenchmarkCall(b *testing.B) {
	for _, inFlight := range []int{1, 64} {
		b.Run(fmt.Sprintf("in_flight=%d", inFlight), func(b *testing.B) { benchCall(b, inFlight) })
	}
}

func benchCall(b *testing.B, inFlight int) {
	e, err := engine.New(engine.Config{DefaultTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = e.Run(ctx) }()
	srv := iiiserver.New(e, iiiserver.Config{NamespaceGrace: time.Millisecond})
	hs := httptest.NewServer(srv)
	defer func() {
		srv.Close()
		hs.Close()
		stop()
		<-ran
	}()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	callee := benchDial(b, url)
	defer callee.CloseNow()
	reg, _ := json.Marshal(map[string]any{"type": "registerfunction", "id": "bench::echo", "description": "echo"})
	if err := callee.Write(ctx, websocket.MessageText, reg); err != nil {
		b.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() { defer close(echoed); benchEcho(callee) }()
	for deadline := time.Now().Add(10 * time.Second); !e.HasFunction("bench::echo"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("bench::echo not registered")
		}
	}

	payload := json.RawMessage(strconv.Quote(strings.Repeat("x", 62)))
	c := newBenchCaller(benchDial(b, url), payload)
	defer func() {
		c.close()
		_ = callee.Close(websocket.StatusNormalClosure, "")
		<-echoed
	}()
	for range 100 { // warm up
		if err := c.call(ctx); err != nil {
			b.Fatal(err)
		}
	}

	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	cpu0 := processCPU()
	b.ResetTimer()
	for range inFlight {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := c.call(ctx); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/call")
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchDial(b *testing.B, url string) *websocket.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	ws.SetReadLimit(-1)
	return ws
}

// benchMessage holds the fields the bench's workers read.
type benchMessage struct {
	Type         string          `json:"type"`
	InvocationID string          `json:"invocation_id"`
	FunctionID   string          `json:"function_id"`
	Data         json.RawMessage `json:"data"`
	Result       json.RawMessage `json:"result"`
	Error        json.RawMessage `json:"error"`
}

// benchEcho answers every invokefunction with its data until ws ends.
func benchEcho(ws *websocket.Conn) {
	ctx := context.Background()
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			return
		}
		var m benchMessage
		if json.Unmarshal(p, &m) != nil || m.Type != "invokefunction" || m.InvocationID == "" {
			continue
		}
		r, _ := json.Marshal(map[string]any{"type": "invocationresult", "invocation_id": m.InvocationID, "function_id": m.FunctionID, "result": m.Data})
		if ws.Write(ctx, websocket.MessageText, r) != nil {
			return
		}
	}
}

// benchCaller calls bench::echo over one socket, any number of calls at
// once; a reader hands each invocationresult to its call.
type benchCaller struct {
	ws      *websocket.Conn
	payload json.RawMessage
	ids     atomic.Uint64
	mu      sync.Mutex
	waiting map[string]chan benchMessage
	done    chan struct{}
}

func newBenchCaller(ws *websocket.Conn, payload json.RawMessage) *benchCaller {
	c := &benchCaller{ws: ws, payload: payload, waiting: make(map[string]chan benchMessage), done: make(chan struct{})}
	go c.read()
	return c
}

func (c *benchCaller) call(ctx context.Context) error {
	id := strconv.FormatUint(c.ids.Add(1), 10)
	ch := make(chan benchMessage, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	m, _ := json.Marshal(map[string]any{"type": "invokefunction", "invocation_id": id, "function_id": "bench::echo", "data": c.payload})
	if err := c.ws.Write(ctx, websocket.MessageText, m); err != nil {
		return err
	}
	select {
	case r := <-ch:
		if !bytes.Equal(r.Result, c.payload) {
			return fmt.Errorf("result %s error %s, want %s", r.Result, r.Error, c.payload)
		}
		return nil
	case <-c.done:
		return fmt.Errorf("connection ended")
	}
}

func (c *benchCaller) read() {
	defer close(c.done)
	for {
		_, p, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		var m benchMessage
		if json.Unmarshal(p, &m) != nil || m.Type != "invocationresult" {
			continue
		}
		c.mu.Lock()
		ch := c.waiting[m.InvocationID]
		delete(c.waiting, m.InvocationID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

func (c *benchCaller) close() {
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.done
}
