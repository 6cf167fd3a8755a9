package statemodule

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// TriggerState is the state trigger type.
const TriggerState = "state"

// triggerConfig is a state trigger's config; empty filters match all.
type triggerConfig struct {
	Scope               string `json:"scope"`
	Key                 string `json:"key"`
	ConditionFunctionID string `json:"condition_function_id"`
}

// trigger delivers events to one function in the order they came, through
// a queue bounded in count and bytes, served by its own goroutine.
type trigger struct {
	t   engine.Trigger
	cfg triggerConfig

	mu    sync.Mutex
	q     [][]byte
	bytes int
	wake  chan struct{}
	done  chan struct{}
}

func (t *trigger) stop() { close(t.done) }

type provider struct{ m *Module }

// ReadFunction guards the state trigger for connections under a listener
// policy: it gets every change of the values state::get reads.
func (provider) ReadFunction(engine.Trigger) string { return FnGet }

func (p provider) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	var cfg triggerConfig
	raw := bytes.TrimSpace(t.Config)
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if raw[0] != '{' {
			return engine.Errorf(codes.InvalidArgument, "state trigger %q: config must be a JSON object", t.ID)
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return engine.Errorf(codes.InvalidArgument, "state trigger %q: bad config: %v", t.ID, err)
		}
	}
	if err := engine.ValidateCondition(cfg.ConditionFunctionID); err != nil {
		return err
	}
	tr := &trigger{t: t, cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{})}
	return p.m.trig.Put(t.ID, tr, tr.stop, func() { p.m.deliver(tr) })
}

func (p provider) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	p.m.trig.Remove(t.ID)
	return nil
}

// fire queues event for the triggers that match scope and key. It never
// blocks: a trigger whose queue is full loses the event, which is logged.
func (m *Module) fire(scope, key string, event []byte) {
	for _, tr := range m.trig.All() {
		if (tr.cfg.Scope != "" && tr.cfg.Scope != scope) || (tr.cfg.Key != "" && tr.cfg.Key != key) {
			continue
		}
		tr.mu.Lock()
		full := len(tr.q) >= m.cfg.TriggerQueue || tr.bytes+len(event) > m.cfg.TriggerQueueBytes
		if !full {
			tr.q = append(tr.q, event)
			tr.bytes += len(event)
		}
		tr.mu.Unlock()
		if full {
			m.fails.Warn(tr.t, "state trigger queue full: event dropped", "function_id", tr.t.FunctionID, "scope", scope, "key", key)
			continue
		}
		select {
		case tr.wake <- struct{}{}:
		default:
		}
	}
}

// deliver calls tr's function with each queued event, one at a time.
func (m *Module) deliver(tr *trigger) {
	for {
		select {
		case <-tr.done:
			return
		case <-tr.wake:
		}
		for {
			tr.mu.Lock()
			if len(tr.q) == 0 {
				tr.mu.Unlock()
				break
			}
			ev := tr.q[0]
			tr.q[0] = nil
			tr.q = tr.q[1:]
			tr.bytes -= len(ev)
			tr.mu.Unlock()
			select {
			case <-tr.done:
				return
			default:
			}
			if ok, err := m.e.Condition(context.Background(), tr.t, tr.cfg.ConditionFunctionID, engine.Call{Payload: ev}); !ok {
				if err != nil {
					m.fails.Warn(tr.t, "state trigger condition failed", "function_id", tr.cfg.ConditionFunctionID, "error", err)
				}
				continue
			}
			if _, err := m.e.Fire(context.Background(), tr.t, engine.Call{FunctionID: tr.t.FunctionID, Payload: ev, Metadata: tr.t.Metadata}); err != nil {
				m.fails.Warn(tr.t, "state trigger failed", "function_id", tr.t.FunctionID, "error", err)
			}
		}
	}
}
