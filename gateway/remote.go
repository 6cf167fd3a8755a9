package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// leaveTimeout bounds asking the engine to run the leave handlers.
const leaveTimeout = 5 * time.Second

// RemoteBackend is the Backend of a gateway in its own process: it asks an
// engine, through c, for snapshots, history and join decisions (the
// engine::streams::* functions of the StreamModule).
func RemoteBackend(c Caller) Backend { return remote{c} }

type remote struct{ c Caller }

func (r remote) call(ctx context.Context, fn string, in, out any) error {
	p, err := json.Marshal(in)
	if err != nil {
		return err
	}
	res, err := r.c.Trigger(ctx, engine.Call{FunctionID: fn, Payload: p})
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(res, out)
}

func (r remote) Snapshot(ctx context.Context, q streamapi.SnapshotRequest) (streamapi.SnapshotResult, error) {
	var res streamapi.SnapshotResult
	if err := r.call(ctx, streamapi.FnSnapshot, q, &res); err != nil {
		return res, err
	}
	if len(res.Frame) == 0 && res.Items == nil {
		return res, errors.New("engine returned no snapshot")
	}
	return res, nil
}

func (r remote) Since(ctx context.Context, stream, group string, seq uint64) ([][]byte, uint64, bool, error) {
	var res streamapi.SinceResult
	if err := r.call(ctx, streamapi.FnSince, streamapi.SinceRequest{StreamName: stream, GroupID: group, Since: seq}, &res); err != nil {
		return nil, 0, false, err
	}
	frames := make([][]byte, len(res.Frames))
	for i, f := range res.Frames {
		frames[i] = f
	}
	return frames, res.Last, res.OK, nil
}

func (r remote) Join(ctx context.Context, s streamapi.Subscription) error {
	var res streamapi.JoinResult
	if err := r.call(ctx, streamapi.FnJoin, s, &res); err != nil {
		return err // fail closed: no answer, no subscription
	}
	if !res.Allowed {
		return errors.New(res.Reason)
	}
	return nil
}

// Leave asks the engine to run the leave handlers; the engine runs them in
// the background and their outcome is ignored.
func (r remote) Leave(s streamapi.Subscription) {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	_ = r.call(ctx, streamapi.FnLeave, s, nil)
}
