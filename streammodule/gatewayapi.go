package streammodule

import (
	"context"
	"encoding/json"

	"github.com/trinehq/trine/engine"
)

// Functions that let a gateway in another process (trine gateway) serve
// browsers: it takes events from NATS and asks the engine for snapshots,
// history and join decisions through these.
const (
	FnGatewaySnapshot = "engine::streams::snapshot"
	FnGatewaySince    = "engine::streams::since"
	FnGatewayJoin     = "engine::streams::join"
	FnGatewayLeave    = "engine::streams::leave"
)

// SnapshotRequest is the input of FnGatewaySnapshot.
type SnapshotRequest struct {
	StreamName string `json:"stream_name"`
	GroupID    string `json:"group_id"`
	ItemID     string `json:"item_id,omitempty"`
	Resync     bool   `json:"resync,omitempty"`
	// PageBytes, when above 0, asks for a built-in group's items one page
	// at a time: about that many bytes of values (at least one item) with
	// ids after After.
	PageBytes int    `json:"page_bytes,omitempty"`
	After     string `json:"after,omitempty"`
}

// SnapshotResult is its result: the whole sync frame, or a page of items,
// and the group sequence it reflects.
type SnapshotResult struct {
	Frame json.RawMessage `json:"frame,omitempty"`
	Seq   uint64          `json:"seq"`
	// A page: the items in id order, and whether more follow.
	Items []PageItem `json:"items"`
	More  bool       `json:"more,omitempty"`
}

// PageItem is one item of a snapshot page.
type PageItem struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
}

// SinceRequest is the input of FnGatewaySince.
type SinceRequest struct {
	StreamName string `json:"stream_name"`
	GroupID    string `json:"group_id"`
	Since      uint64 `json:"since"`
}

// SinceResult is its result, as Module.Since returns it.
type SinceResult struct {
	Frames []json.RawMessage `json:"frames"`
	Last   uint64            `json:"last"`
	OK     bool              `json:"ok"`
}

// JoinResult is the result of FnGatewayJoin; Reason says why a join was
// denied.
type JoinResult struct {
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason,omitempty"`
}

// registerGatewayAPI registers the functions above.
func (m *Module) registerGatewayAPI(e *engine.Engine) error {
	fns := []struct {
		id, desc string
		h        func(context.Context, engine.Call) ([]byte, error)
	}{
		{FnGatewaySnapshot, "A stream group's (or item's) sync frame and sequence, for gateways.", m.apiSnapshot},
		{FnGatewaySince, "A stream group's events after a sequence, for gateways.", m.apiSince},
		{FnGatewayJoin, "Runs the stream:join handlers for a subscription, for gateways.", m.apiJoin},
		{FnGatewayLeave, "Runs the stream:leave handlers for a subscription, for gateways.", m.apiLeave},
	}
	for _, f := range fns {
		if err := e.RegisterFunction(f.id, f.desc, engine.HandlerFunc(f.h)); err != nil {
			return err
		}
	}
	return nil
}

func decodeAPI(c engine.Call, v any) error {
	if err := json.Unmarshal(c.Payload, v); err != nil {
		return engine.Errorf(engine.CodeInvalidArgument, "%s: bad input: %v", c.FunctionID, err)
	}
	return nil
}

func (m *Module) apiSnapshot(ctx context.Context, c engine.Call) ([]byte, error) {
	var in SnapshotRequest
	if err := decodeAPI(c, &in); err != nil {
		return nil, err
	}
	// A page, like an item, must fit in one answer.
	in.PageBytes = min(in.PageBytes, m.maxItem)
	res, err := m.Snapshot(ctx, in)
	if err != nil {
		return nil, err
	}
	return engine.MarshalJSON(res)
}

func (m *Module) apiSince(ctx context.Context, c engine.Call) ([]byte, error) {
	var in SinceRequest
	if err := decodeAPI(c, &in); err != nil {
		return nil, err
	}
	frames, last, ok, err := m.Since(ctx, in.StreamName, in.GroupID, in.Since)
	if err != nil {
		return nil, err
	}
	r := SinceResult{Frames: make([]json.RawMessage, len(frames)), Last: last, OK: ok}
	for i, f := range frames {
		r.Frames[i] = f
	}
	return engine.MarshalJSON(r)
}

func (m *Module) apiJoin(ctx context.Context, c engine.Call) ([]byte, error) {
	var in Subscription
	if err := decodeAPI(c, &in); err != nil {
		return nil, err
	}
	r := JoinResult{Allowed: true}
	if err := m.Join(ctx, in); err != nil {
		r = JoinResult{Reason: err.Error()}
	}
	return engine.MarshalJSON(r)
}

func (m *Module) apiLeave(_ context.Context, c engine.Call) ([]byte, error) {
	var in Subscription
	if err := decodeAPI(c, &in); err != nil {
		return nil, err
	}
	m.Leave(in)
	return []byte("null"), nil
}
