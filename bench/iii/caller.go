package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/coder/websocket"
)

// caller drives calls of bench::echo over one WebSocket: any number of
// goroutines may call at once, each sending an invokefunction with its own
// invocation id; a reader goroutine hands each invocationresult to the
// call waiting for its id.
type caller struct {
	ws      *websocket.Conn
	payload json.RawMessage
	ids     atomic.Uint64

	mu      sync.Mutex
	waiting map[string]chan<- reply

	done chan struct{} // closed when read returns
	err  error         // why read returned; set before done is closed
}

// reply is an invocationresult's outcome.
type reply struct {
	result, err json.RawMessage
}

// newCaller starts a caller on ws, which it owns from now on.
func newCaller(ws *websocket.Conn, payload json.RawMessage) *caller {
	c := &caller{ws: ws, payload: payload, waiting: make(map[string]chan<- reply), done: make(chan struct{})}
	go c.read()
	return c
}

// call invokes bench::echo once and checks that its result is the payload.
func (c *caller) call(ctx context.Context) error {
	id := strconv.FormatUint(c.ids.Add(1), 10)
	ch := make(chan reply, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	err := writeJSON(ctx, c.ws, invokeFunction{Type: typeInvokeFunction, InvocationID: id, FunctionID: fnEcho, Data: c.payload})
	if err != nil {
		c.forget(id)
		return fmt.Errorf("send invokefunction: %w", err)
	}
	select {
	case r := <-ch:
		if len(r.err) > 0 && string(r.err) != "null" {
			return fmt.Errorf("%s failed: %s", fnEcho, r.err)
		}
		if !bytes.Equal(r.result, c.payload) {
			return fmt.Errorf("%s returned %d bytes, want the %d sent", fnEcho, len(r.result), len(c.payload))
		}
		return nil
	case <-c.done:
		c.forget(id)
		return fmt.Errorf("wait for invocationresult: %w", c.err)
	case <-ctx.Done():
		c.forget(id)
		return ctx.Err()
	}
}

func (c *caller) forget(id string) {
	c.mu.Lock()
	delete(c.waiting, id)
	c.mu.Unlock()
}

// read dispatches invocationresults to their calls until the connection
// ends; it ignores every other message.
func (c *caller) read() {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background()) // close ends it
		if err != nil {
			c.err = err
			return
		}
		var m inbound
		if err := json.Unmarshal(b, &m); err != nil {
			c.err = fmt.Errorf("decode %q: %w", b, err)
			_ = c.ws.CloseNow()
			return
		}
		if m.Type != typeInvocationResult {
			continue
		}
		c.mu.Lock()
		ch, ok := c.waiting[m.InvocationID]
		delete(c.waiting, m.InvocationID)
		c.mu.Unlock()
		if ok {
			ch <- reply{result: m.Result, err: m.Error}
		}
	}
}

// close closes the connection and waits for the reader.
func (c *caller) close() {
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.done
}
