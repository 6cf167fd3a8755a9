package engine

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"
)

// iii's availability trigger types. Triggers of engine::functions-available
// are called (void) when the set of functions changes, with
// {event:"functions_changed", functions}; changes within
// functionsSettle are reported once. Triggers of engine::workers-available
// are called for each worker that connects, disconnects or describes
// itself, with {event:"worker_connected"|"worker_disconnected"|
// "worker_metadata_updated", worker_id}.
const (
	TriggerFunctionsAvailable = "engine::functions-available"
	TriggerWorkersAvailable   = "engine::workers-available"

	functionsSettle = 100 * time.Millisecond
)

// availability is the provider of both trigger types: it only keeps the
// triggers, which the engine calls on changes.
type availability struct {
	e  *Engine
	mu sync.Mutex
	ts map[string]map[string]Trigger // type -> id -> trigger
	// pending is set while a functions_changed notice waits to go out.
	pending atomic.Bool
}

func (a *availability) RegisterTrigger(_ context.Context, t Trigger) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ts[t.Type] == nil {
		a.ts[t.Type] = map[string]Trigger{}
	}
	a.ts[t.Type][t.ID] = t
	return nil
}

// ReadFunction guards engine::workers-available for connections under a
// policy: its notices name every worker, which engine::workers::list
// shows. (engine::functions-available notices are filtered per owner.)
func (a *availability) ReadFunction(t Trigger) string {
	if t.Type == TriggerWorkersAvailable {
		return FnWorkersList
	}
	return ""
}

func (a *availability) UnregisterTrigger(_ context.Context, t Trigger) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.ts[t.Type], t.ID)
	return nil
}

func (a *availability) triggers(typ string) []Trigger {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Trigger, 0, len(a.ts[typ]))
	for _, t := range a.ts[typ] {
		out = append(out, t)
	}
	return out
}

func (e *Engine) registerAvailability() error {
	e.avail = &availability{e: e, ts: map[string]map[string]Trigger{}}
	if err := e.RegisterTriggerType(TriggerFunctionsAvailable, "Fires when the set of functions changes: {event:\"functions_changed\", functions}", e.avail); err != nil {
		return err
	}
	return e.RegisterTriggerType(TriggerWorkersAvailable, "Fires when a worker connects, disconnects or describes itself: {event, worker_id}", e.avail)
}

// fire calls the triggers of typ, each with its owner's rights and with
// the payload as its owner's view shows it, in the background.
func (a *availability) fire(typ string, payload func(v view) []byte) {
	ts := a.triggers(typ)
	if len(ts) == 0 {
		return
	}
	a.e.bg.Go(func() {
		for _, t := range ts {
			v := view{e: a.e}
			if t.by != nil {
				v.g, v.caller = t.by.grant, t.by.id
			}
			if err := a.e.FireVoid(t, Call{FunctionID: t.FunctionID, Payload: payload(v), Metadata: t.Metadata}); err != nil {
				a.e.log.Debug("availability trigger not delivered", LogTriggerID, t.ID, "error", err)
			}
		}
	})
}

// functionsChanged notes a change of the function set. It may be called
// with e.mu held: the notice goes out later, from the background.
func (e *Engine) functionsChanged() {
	a := e.avail
	if a == nil || len(a.triggers(TriggerFunctionsAvailable)) == 0 || !a.pending.CompareAndSwap(false, true) {
		return
	}
	e.bg.Go(func() {
		select {
		case <-time.After(functionsSettle):
		case <-e.hardStop.Done():
			return
		}
		a.pending.Store(false)
		a.fire(TriggerFunctionsAvailable, func(v view) []byte {
			fs := v.functions(e.Functions())
			for i := range fs { // they would make every notice as big as the formats of all functions
				fs[i].RequestFormat, fs[i].ResponseFormat = nil, nil
			}
			b, _ := json.Marshal(map[string]any{"event": "functions_changed", "functions": fs})
			return b
		})
	})
}

// workerChanged notes a worker event (worker_connected, …).
func (e *Engine) workerChanged(event, workerID string) {
	if e.avail == nil {
		return
	}
	e.avail.fire(TriggerWorkersAvailable, func(view) []byte {
		b, _ := json.Marshal(map[string]string{"event": event, "worker_id": workerID})
		return b
	})
}
