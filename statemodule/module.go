// Package statemodule is iii's state module: server-side JSON values
// addressed by (scope, key), served by the state::* functions, with a
// sequence number per scope and the state trigger type. It keeps its values
// in a store.Store, the StreamModule's storage port, opened on a location of
// its own: state is never pushed to browsers and never visible to stream::*.
//
// Concurrency: a Module is safe for concurrent use. It starts one delivery
// goroutine per registered state trigger, fed by a queue bounded in count
// and bytes; unregistering a trigger stops its goroutine, and Close stops
// them all and waits for them.
package statemodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/triggerapi"
)

// Defaults for Config.
const (
	// DefaultMaxValueBytes bounds a value (compact JSON). A change's event
	// carries the old and the new value, so the module lowers it to half
	// of what Config.MaxEventBytes allows.
	DefaultMaxValueBytes = 512 << 10
	DefaultMaxNameBytes  = 1024
	DefaultTriggerQueue  = 1024
	// DefaultTriggerQueueBytes bounds the events waiting for one trigger
	// in bytes.
	DefaultTriggerQueueBytes = 16 << 20
)

// storeStream is the store.Key.Stream of every value: scopes are groups,
// keys are items.
const storeStream = "state"

// Config configures a Module.
type Config struct {
	// OpenStore opens the store; the module passes the Options that feed
	// it every committed change. Required.
	OpenStore func(store.Options) (store.Store, error)
	// Publish, if set, carries each change's event, with the traceparent
	// of the write that made it ("" when untraced), to every engine of a
	// fleet, this one included, whose Deliver must then be called with
	// them: triggers registered on any engine fire for a write made
	// through any other. Without it events go to this engine's triggers
	// directly.
	Publish func(event []byte, traceparent string) error
	// MaxEventBytes is the largest event Publish carries (NATS's
	// max_payload); 0 means no limit beyond MaxValueBytes.
	MaxEventBytes int
	// MaxValueBytes bounds a value in bytes of compact JSON; larger ones
	// are refused with VALUE_TOO_LARGE. Default DefaultMaxValueBytes.
	MaxValueBytes int
	// MaxNameBytes bounds scopes and keys. Default DefaultMaxNameBytes.
	MaxNameBytes int
	// TriggerQueue and TriggerQueueBytes bound the events waiting for one
	// state trigger, in count and bytes; beyond them that trigger's events
	// are dropped and logged. Defaults DefaultTriggerQueue and
	// DefaultTriggerQueueBytes.
	TriggerQueue, TriggerQueueBytes int
	// Lists bounds the answers of state::list and state::list_groups, and
	// may be shared with other modules. Default:
	// store.NewLists(0, 0), of its own.
	Lists *store.Lists
	// Contracts keeps the scopes' contracts (state::define) and is asked
	// on every write. Default: contracts.NewMemorySet, which does not
	// outlive the module.
	Contracts *contracts.Set
	// Logger receives trigger and publishing errors. Default: discard.
	Logger *slog.Logger
	// TracerProvider, if set, traces each trigger's handling of an event
	// as the child of the write that made it, on whichever engine the
	// write was made (the event carries its traceparent). Default: off.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	defaults.Positive(&c.MaxValueBytes, DefaultMaxValueBytes)
	defaults.Positive(&c.MaxNameBytes, DefaultMaxNameBytes)
	defaults.Positive(&c.TriggerQueue, DefaultTriggerQueue)
	defaults.Positive(&c.TriggerQueueBytes, DefaultTriggerQueueBytes)
	if c.Lists == nil {
		c.Lists = store.NewLists(0, 0)
	}
	if c.Contracts == nil {
		c.Contracts = contracts.NewMemorySet(contracts.State)
	}
	defaults.Logger(&c.Logger)
	return c
}

// Module is the state module. Create it with New, then Register it on an
// engine before any call reaches it.
type Module struct {
	cfg      Config
	maxValue int
	log      *slog.Logger
	fails    *engine.FireLog // failed fires and dropped events, per trigger owner
	store    store.Store
	e        *engine.Engine
	tracer   trace.Tracer // nil: tracing off

	trig *engine.TriggerSet[*trigger]

	// beforeCommit, set by tests, runs between state::set's check and its
	// commit.
	beforeCommit func(store.Key)
}

// New opens the store and returns the module.
func New(cfg Config) (*Module, error) {
	if cfg.OpenStore == nil {
		return nil, errors.New("statemodule: no store")
	}
	cfg = cfg.withDefaults()
	m := &Module{cfg: cfg, log: cfg.Logger, fails: engine.NewFireLog(cfg.Logger, 0), maxValue: cfg.MaxValueBytes, trig: engine.NewTriggerSet[*trigger]("the state module"),
		tracer: tracing.Tracer(cfg.TracerProvider)}
	if cfg.MaxEventBytes > 0 {
		m.maxValue = min(m.maxValue, (cfg.MaxEventBytes-eventHeadroom(cfg.MaxNameBytes))/2)
	}
	if m.maxValue <= 0 {
		return nil, fmt.Errorf("statemodule: no room for values: MaxValueBytes %d, events of at most %d bytes", cfg.MaxValueBytes, cfg.MaxEventBytes)
	}
	st, err := cfg.OpenStore(store.Options{OnCommit: m.commit})
	if err != nil {
		return nil, err
	}
	m.store = st
	return m, nil
}

// eventHeadroom is what an event holds besides its two values: a scope and
// a key, JSON-escaped at worst 6 bytes a byte, and fixed fields.
func eventHeadroom(maxName int) int { return 2*6*maxName + 512 }

// MaxValueBytes is the largest value the module accepts, in bytes of
// compact JSON.
func (m *Module) MaxValueBytes() int { return m.maxValue }

// Close stops the triggers, waits for their calls and closes the store.
func (m *Module) Close() error {
	m.trig.Close()
	return m.store.Close()
}

// The event types.
const (
	EventCreated = "state:created"
	EventUpdated = "state:updated"
	EventDeleted = "state:deleted"
)

// commit runs for every committed change, in sequence order per scope.
func (m *Module) commit(c store.Change) {
	ev := triggerapi.StateEvent{Type: "state", Scope: c.Group, Key: c.Item, OldValue: orNull(c.Old), NewValue: json.RawMessage("null"), Seq: c.Seq}
	switch {
	case c.Kind == store.KindDelete:
		ev.EventType, ev.OldValue = EventDeleted, orNull(c.Value)
	case c.Old == nil:
		ev.EventType, ev.NewValue = EventCreated, c.Value
	default:
		ev.EventType, ev.NewValue = EventUpdated, c.Value
	}
	b, err := engine.MarshalJSON(ev)
	if err != nil {
		m.log.Error("state event not encoded", "scope", c.Group, "key", c.Item, "error", err)
		return
	}
	var write trace.SpanContext
	if m.tracer != nil && c.Ctx != nil {
		write = trace.SpanContextFromContext(c.Ctx)
	}
	if m.cfg.Publish == nil {
		m.fire(ev.Scope, ev.Key, b, write)
		return
	}
	if err := m.cfg.Publish(b, tracing.Traceparent(write)); err != nil {
		m.log.Error("state event not published: triggers miss it", "scope", c.Group, "key", c.Item, "seq", c.Seq, "error", err)
	}
}

// Deliver hands an event that Publish carried, with its traceparent, to
// this engine's triggers. Events that do not decode are dropped.
func (m *Module) Deliver(event []byte, traceparent string) {
	var h struct {
		Scope *string `json:"scope"`
		Key   *string `json:"key"`
	}
	if json.Unmarshal(event, &h) != nil || h.Scope == nil || h.Key == nil {
		m.log.Warn("state event dropped: it does not decode", "bytes", len(event))
		return
	}
	var write trace.SpanContext
	if m.tracer != nil {
		write = tracing.Parse(traceparent)
	}
	m.fire(*h.Scope, *h.Key, event, write)
}

// checkSize refuses a value over the limit before anything is stored.
func (m *Module) checkSize(fn string, v json.RawMessage) error {
	if len(v) > m.maxValue {
		return engine.Errorf(codes.ValueTooLarge, "%s: value is %d bytes, the limit is %d (--state-max-value-bytes); nothing was written", fn, len(v), m.maxValue)
	}
	return nil
}

func orNull(v json.RawMessage) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	return v
}
