package streammodule

import (
	"context"
	"encoding/json"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// registerGatewayAPI registers the functions a gateway in another process
// (trine gateway) calls to serve browsers (streamapi).
func (m *Module) registerGatewayAPI(e *engine.Engine) error {
	return e.RegisterFunctions([]engine.Function{
		{ID: streamapi.FnSnapshot, Description: "A stream group's (or item's) sync frame and sequence, for gateways.", Handle: m.apiSnapshot},
		{ID: streamapi.FnSince, Description: "A stream group's events after a sequence, for gateways.", Handle: m.apiSince},
		{ID: streamapi.FnJoin, Description: "Runs the stream:join handlers for a subscription, for gateways.", Handle: m.apiJoin},
		{ID: streamapi.FnLeave, Description: "Runs the stream:leave handlers for a subscription, for gateways.", Handle: m.apiLeave},
	})
}

func decodeAPI(c engine.Call, v any) error {
	if err := json.Unmarshal(c.Payload, v); err != nil {
		return engine.Errorf(codes.InvalidArgument, "%s: bad input: %v", c.FunctionID, err)
	}
	return nil
}

func (m *Module) apiSnapshot(ctx context.Context, c engine.Call) ([]byte, error) {
	var in streamapi.SnapshotRequest
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
	var in streamapi.SinceRequest
	if err := decodeAPI(c, &in); err != nil {
		return nil, err
	}
	frames, last, ok, err := m.Since(ctx, in.StreamName, in.GroupID, in.Since)
	if err != nil {
		return nil, err
	}
	r := streamapi.SinceResult{Frames: make([]json.RawMessage, len(frames)), Last: last, OK: ok}
	for i, f := range frames {
		r.Frames[i] = f
	}
	return engine.MarshalJSON(r)
}

func (m *Module) apiJoin(ctx context.Context, c engine.Call) ([]byte, error) {
	var in streamapi.Subscription
	if err := decodeAPI(c, &in); err != nil {
		return nil, err
	}
	r := streamapi.JoinResult{Allowed: true}
	if err := m.Join(ctx, in); err != nil {
		r = streamapi.JoinResult{Reason: err.Error()}
	}
	return engine.MarshalJSON(r)
}

func (m *Module) apiLeave(_ context.Context, c engine.Call) ([]byte, error) {
	var in streamapi.Subscription
	if err := decodeAPI(c, &in); err != nil {
		return nil, err
	}
	m.Leave(in)
	return []byte("null"), nil
}
