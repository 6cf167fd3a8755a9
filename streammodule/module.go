// Package streammodule is the StreamModule: keyed JSON state
// (stream > group > item) served by the stream::* functions, with a
// sequence number per group, an event per change published once on the
// group's NATS subject, a bounded per-group history for resuming
// subscribers, and the stream, stream:join and stream:leave trigger types.
//
// Concurrency: a Module is safe for concurrent use. It starts one delivery
// goroutine per stream trigger and short-lived goroutines for join and
// leave handlers; Close stops the triggers, waits for every goroutine the
// module started and closes its store. Writes to one group are serialized
// by the store; writes to different groups run in parallel.
package streammodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/streamapi"
	"github.com/trinehq/trine/streammodule/wire"
)

// Defaults for Config.
const (
	DefaultHistorySize = 1000
	// DefaultHistoryGroupBytes and DefaultHistoryTotalBytes bound the
	// in-memory history (stores other than JetStream) in bytes: per group
	// and in all.
	DefaultHistoryGroupBytes = 16 << 20
	DefaultHistoryTotalBytes = 256 << 20
	DefaultTriggerQueue      = 1024
	DefaultJoinTimeout       = 5 * time.Second
	DefaultMaxNameBytes      = streamapi.DefaultMaxNameBytes
	// DefaultMaxItemBytes is 1 MiB, NATS's default max_payload; with that
	// server setting the module accepts a little less (see MaxItemBytes).
	DefaultMaxItemBytes = 1 << 20
)

// Caller runs functions; *engine.Engine is one. Fire runs a call a
// trigger makes, with the rights of the connection that registered it.
type Caller interface {
	Trigger(ctx context.Context, c engine.Call) ([]byte, error)
	Fire(ctx context.Context, t engine.Trigger, c engine.Call) ([]byte, error)
	Condition(ctx context.Context, t engine.Trigger, fn string, c engine.Call) (bool, error)
	HasFunction(id string) bool
}

// History replays a group's events after a sequence; ok is false when it
// cannot without a gap. With nothing newer it returns ok and last = seq.
type History interface {
	Since(ctx context.Context, stream, group string, seq uint64) (frames [][]byte, last uint64, ok bool, err error)
}

// Publisher carries encoded events to subscribers (natsfanout.Publisher).
// One that also has a MaxPayload() int method bounds the events it can
// carry, and so the items the module accepts.
type Publisher interface {
	Publish(ctx context.Context, stream, group string, frame []byte) error
}

// Config configures a Module.
type Config struct {
	// OpenStore opens the store; the module passes the Options that feed
	// it every committed change. Required.
	OpenStore func(store.Options) (store.Store, error)
	// Publisher, if set, receives every event frame, in commit order,
	// from a goroutine of the module's: no store lock is held meanwhile.
	Publisher Publisher
	// PublishQueueBytes bounds the event frames committed and not yet
	// handed to the Publisher; a write that finds the queue full waits
	// for room, so no event is dropped for want of room; it also bounds
	// the refused events kept to publish again. Default
	// DefaultPublishQueueBytes.
	PublishQueueBytes int
	// History, if set, serves Since instead of the module's own memory:
	// a history every engine shares (natsfanout.History).
	History History
	// HistorySize is how many events per group are kept for since
	// recovery. Default DefaultHistorySize.
	HistorySize int
	// HistoryGroupBytes and HistoryTotalBytes bound that history in bytes,
	// per group and in all; past them the oldest events go (subscribers
	// that needed them resync). Defaults DefaultHistoryGroupBytes and
	// DefaultHistoryTotalBytes. A shared History has its own bounds.
	HistoryGroupBytes, HistoryTotalBytes int
	// TriggerQueue bounds the events waiting for one stream trigger;
	// beyond it events for that trigger are dropped and logged.
	// Default DefaultTriggerQueue.
	TriggerQueue int
	// JoinTimeout bounds each stream:join handler. Default DefaultJoinTimeout.
	JoinTimeout time.Duration
	// MaxNameBytes bounds stream, group and item names. Default
	// DefaultMaxNameBytes.
	MaxNameBytes int
	// MaxItemBytes bounds an item's value and an event's data (compact
	// JSON). The module lowers it to what the Publisher can carry in one
	// event: its MaxPayload less room for names and framing. Default
	// DefaultMaxItemBytes.
	MaxItemBytes int
	// Lists bounds the answers of stream::list, list_groups and
	// list_all, and may be shared with other modules. Default:
	// store.NewLists(0, 0), of its own.
	Lists *store.Lists
	// Contracts keeps the streams' contracts (stream::define) and is
	// asked on every write. Default: contracts.NewMemorySet, which does
	// not outlive the module.
	Contracts *contracts.Set
	// Logger receives errors of triggers and publishing. Default: discard.
	Logger *slog.Logger
	// TracerProvider, if set, traces each write's store commit and each
	// event's publish, a child of the commit, whose trace context the
	// Publisher carries in the message (natsfanout: its headers).
	// Default: none.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	defaults.Positive(&c.HistorySize, DefaultHistorySize)
	defaults.Positive(&c.HistoryGroupBytes, DefaultHistoryGroupBytes)
	defaults.Positive(&c.HistoryTotalBytes, DefaultHistoryTotalBytes)
	defaults.Positive(&c.TriggerQueue, DefaultTriggerQueue)
	defaults.Positive(&c.PublishQueueBytes, DefaultPublishQueueBytes)
	defaults.Positive(&c.JoinTimeout, DefaultJoinTimeout)
	defaults.Positive(&c.MaxNameBytes, DefaultMaxNameBytes)
	defaults.Positive(&c.MaxItemBytes, DefaultMaxItemBytes)
	if c.Lists == nil {
		c.Lists = store.NewLists(0, 0)
	}
	if c.Contracts == nil {
		c.Contracts = contracts.NewMemorySet(contracts.Streams)
	}
	defaults.Logger(&c.Logger)
	return c
}

// Module is the StreamModule. Create it with New, then Register it on an
// engine before any call reaches it.
type Module struct {
	cfg     Config
	maxItem int // the effective MaxItemBytes
	log     *slog.Logger
	fails   *engine.FireLog // failed fires and dropped messages, per trigger owner
	store   store.Store
	hist    *history
	resyncs resyncCounts
	pub     *publishQueue // nil without a Publisher
	tracer  trace.Tracer  // nil: tracing off
	trig    *triggers
	e       Caller

	customMu sync.RWMutex
	customs  map[string]struct{}        // streams a worker has served
	served   map[string]map[string]bool // custom ops workers serve now, by stream

	presence presenceReader

	// beforeCommit, set by tests, runs between stream::set's check and
	// its commit.
	beforeCommit func(store.Key)
}

// New opens the store and returns the module.
func New(cfg Config) (*Module, error) {
	if cfg.OpenStore == nil {
		return nil, errors.New("streammodule: no store")
	}
	cfg = cfg.withDefaults()
	m := &Module{cfg: cfg, log: cfg.Logger, fails: engine.NewFireLog(cfg.Logger, 0), hist: newHistoryBytes(cfg.HistorySize, cfg.HistoryGroupBytes, cfg.HistoryTotalBytes), customs: make(map[string]struct{}), served: make(map[string]map[string]bool)}
	m.maxItem = cfg.MaxItemBytes
	m.tracer = tracing.Tracer(cfg.TracerProvider)
	if p, ok := cfg.Publisher.(interface{ MaxPayload() int }); ok && p.MaxPayload() > 0 {
		m.maxItem = min(m.maxItem, p.MaxPayload()-m.eventHeadroom())
	}
	if m.maxItem <= 0 {
		return nil, fmt.Errorf("streammodule: no room for items: MaxItemBytes %d, publisher's MaxPayload less %d bytes of event framing", cfg.MaxItemBytes, m.eventHeadroom())
	}
	m.trig = newTriggers(m)
	if cfg.Publisher != nil {
		m.pub = newPublishQueue(cfg.Publisher, cfg.PublishQueueBytes, m.log, m.tracer)
	}
	st, err := cfg.OpenStore(store.Options{OnCommit: m.commit})
	if err != nil {
		return nil, err
	}
	m.store = st
	return m, nil
}

// MaxItemBytes is the largest item value or event data the module
// accepts, in bytes of compact JSON.
func (m *Module) MaxItemBytes() int { return m.maxItem }

// eventHeadroom is what an event frame (and a JetStream store message)
// holds besides its value: three names, JSON-escaped at worst 6 bytes a
// byte, and fixed fields and headers.
func (m *Module) eventHeadroom() int { return 3*6*m.cfg.MaxNameBytes + 2048 }

// Stats is a snapshot of the module's counters.
type Stats struct {
	// Published counts the events handed to the Publisher (NATS), and
	// PublishErrors those it refused (logged, and published again until
	// it takes them or a later event of their group).
	Published, PublishErrors int64
	// HistoryEvents and HistoryBytes are what the in-memory history
	// holds for since (0 with a shared Config.History).
	HistoryEvents, HistoryBytes int
}

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	var st Stats
	if m.pub != nil {
		st.Published, st.PublishErrors = m.pub.published.Load(), m.pub.failed.Load()
	}
	st.HistoryEvents, st.HistoryBytes = m.hist.held()
	return st
}

// Store returns the module's store.
func (m *Module) Store() store.Store { return m.store }

// Close stops the stream triggers, waits for their calls, closes the
// store and publishes the events it committed.
func (m *Module) Close() error {
	m.trig.close()
	err := m.store.Close()
	if m.pub != nil {
		m.pub.close()
	}
	return err
}

// commit runs for every committed change, in sequence order per group,
// under the store's group lock: it encodes the event once, keeps it for
// recovery, queues it for publishing and for the stream triggers.
func (m *Module) commit(c store.Change) {
	frame := wire.Change(c)
	if m.cfg.History == nil { // otherwise Since never reads it
		m.hist.add(c.Stream, c.Group, c.Seq, frame)
	}
	if m.pub != nil {
		m.pub.enqueue(pubEvent{c.Stream, c.Group, c.Seq, frame, m.changeTrace(c)})
	}
	m.trig.fire(c, frame)
}
