package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/coder/websocket"
)

// The messages of iii's worker protocol that the bench sends and reads,
// shaped as engine/iiiserver and the iii SDKs shape them.
const (
	typeRegisterFunction = "registerfunction"
	typeInvokeFunction   = "invokefunction"
	typeInvocationResult = "invocationresult"
	typeWorkerRegistered = "workerregistered"

	// fnEcho is the function the callee worker serves.
	fnEcho = "bench::echo"
)

// dialTimeout bounds a dial and the setup messages that follow it.
const dialTimeout = 10 * time.Second

type invokeFunction struct {
	Type         string          `json:"type"`
	InvocationID string          `json:"invocation_id,omitempty"`
	FunctionID   string          `json:"function_id"`
	Data         json.RawMessage `json:"data"`
	Action       *action         `json:"action,omitempty"`
}

type action struct {
	Type string `json:"type"`
}

type invocationResult struct {
	Type         string          `json:"type"`
	InvocationID string          `json:"invocation_id"`
	FunctionID   string          `json:"function_id"`
	Result       json.RawMessage `json:"result,omitempty"`
}

type registerFunction struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	Description string `json:"description"`
}

// inbound holds the fields the bench reads from any message.
type inbound struct {
	Type         string          `json:"type"`
	WorkerID     string          `json:"worker_id"`
	InvocationID string          `json:"invocation_id"`
	FunctionID   string          `json:"function_id"`
	Data         json.RawMessage `json:"data"`
	Result       json.RawMessage `json:"result"`
	Error        json.RawMessage `json:"error"`
}

// dial opens a WebSocket to url.
func dial(ctx context.Context, url string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	ws.SetReadLimit(-1)
	return ws, nil
}

func writeJSON(ctx context.Context, ws *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

// echo answers every invokefunction that carries an invocation_id with an
// invocationresult whose result is its data, until the connection ends;
// it ignores every other message. It is both the iii callee worker and the
// baseline server, so the two scenarios differ only by the engine.
func echo(ws *websocket.Conn) error {
	ctx := context.Background() // the connection's end stops it
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return err
		}
		var m inbound
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("decode %q: %w", b, err)
		}
		if m.Type != typeInvokeFunction || m.InvocationID == "" {
			continue
		}
		r := invocationResult{Type: typeInvocationResult, InvocationID: m.InvocationID, FunctionID: m.FunctionID, Result: m.Data}
		if err := writeJSON(ctx, ws, r); err != nil {
			return fmt.Errorf("write invocationresult: %w", err)
		}
	}
}

// normalEnd reports whether err is how echo or a reader ends when the
// connection is closed on purpose.
func normalEnd(err error) bool {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return true
	}
	return false
}
