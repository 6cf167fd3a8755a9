package statemodule

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/tracing"
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
	q     []event
	bytes int
	wake  chan struct{}
	done  chan struct{}
}

func (t *trigger) stop() { close(t.done) }

// event is one change's event queued for a trigger, with the span
// context of the write that made it (invalid when untraced).
type event struct {
	b     []byte
	write trace.SpanContext
}

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
func (m *Module) fire(scope, key string, ev []byte, write trace.SpanContext) {
	for _, tr := range m.trig.All() {
		if (tr.cfg.Scope != "" && tr.cfg.Scope != scope) || (tr.cfg.Key != "" && tr.cfg.Key != key) {
			continue
		}
		tr.mu.Lock()
		full := len(tr.q) >= m.cfg.TriggerQueue || tr.bytes+len(ev) > m.cfg.TriggerQueueBytes
		if !full {
			tr.q = append(tr.q, event{ev, write})
			tr.bytes += len(ev)
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
			tr.q[0] = event{}
			tr.q = tr.q[1:]
			tr.bytes -= len(ev.b)
			tr.mu.Unlock()
			select {
			case <-tr.done:
				return
			default:
			}
			ctx, span := m.startTrigger(tr, ev)
			code := m.fireOne(ctx, tr, ev.b)
			if span != nil {
				tracing.End(span, code)
			}
		}
	}
}

// fireOne runs tr's condition and function for one event, and returns the
// code of the failure ("" for none, or for a condition that skips it).
func (m *Module) fireOne(ctx context.Context, tr *trigger, ev []byte) string {
	if ok, err := m.e.Condition(ctx, tr.t, tr.cfg.ConditionFunctionID, engine.Call{Payload: ev}); !ok {
		if err != nil {
			m.fails.Warn(tr.t, "state trigger condition failed", "function_id", tr.cfg.ConditionFunctionID, "error", err)
		}
		return ""
	}
	if _, err := m.e.Fire(ctx, tr.t, engine.Call{FunctionID: tr.t.FunctionID, Payload: ev, Metadata: tr.t.Metadata}); err != nil {
		m.fails.Warn(tr.t, "state trigger failed", "function_id", tr.t.FunctionID, "error", err)
		return string(engine.AsError(err).Code)
	}
	return ""
}

// startTrigger starts the consumer span of tr's handling of one event
// (messaging conventions: "trigger state", operation type process): the
// child of the write that made it, on whichever engine that was, and
// linked to it, as the conventions ask of a span that processes one
// message. The condition's and the function's routing spans are its
// children. ctx is context.Background and span nil when tracing is off or
// the write was not traced.
func (m *Module) startTrigger(tr *trigger, ev event) (context.Context, trace.Span) {
	ctx := context.Background()
	if m.tracer == nil || !ev.write.IsValid() {
		return ctx, nil
	}
	return m.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, ev.write), "trigger state",
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(trace.Link{SpanContext: ev.write}),
		trace.WithAttributes(tracing.SystemTrine, tracing.MessagingOperation.String("process"), tracing.MessagingOperationNm.String("trigger"),
			tracing.MessagingDestination.String(TriggerState), tracing.TrineTriggerID.String(tr.t.ID), tracing.TrineFunctionID.String(tr.t.FunctionID)))
}
