package queuemodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/internal/jsboot"
)

// New checks the queues and returns a module that needs no JetStream
// yet: once registered, its functions answer unavailable until Open
// succeeds, and the durable:subscriber triggers registered meanwhile start
// consuming then. It starts nothing.
func New(cfg Config) (*Module, error) {
	if cfg.Conn == nil {
		return nil, errors.New("queuemodule: no NATS connection")
	}
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	defaults.Positive(&cfg.AckWait, DefaultAckWait)
	defaults.Positive(&cfg.MaxBytes, DefaultStreamsBytes)
	defaults.Positive(&cfg.TopicMaxAge, DefaultTopicMaxAge)
	defaults.Positive(&cfg.MaxConcurrency, DefaultMaxConcurrency)
	defaults.Positive(&cfg.InFlightBytes, DefaultInFlightBytes)
	defaults.Positive(&cfg.InFlightBytesTotal, DefaultInFlightBytesTotal)
	defaults.Positive(&cfg.MaxListBytes, DefaultMaxListBytes)
	defaults.Logger(&cfg.Logger)
	qs, err := Normalize(cfg.Queues)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.Background())
	counts := make(map[string]*queueCounts, len(qs))
	for name := range qs {
		counts[name] = &queueCounts{}
	}
	return &Module{counts: counts, cfg: cfg, log: cfg.Logger, fails: engine.NewFireLog(cfg.Logger, 0), js: js, queues: qs, topics: engine.NewTriggerSet[struct{}]("the queue module"),
		inflight: newBudget(cfg.InFlightBytes, cfg.InFlightBytesTotal), consumed: make(map[string]bool), pending: make(map[string]engine.Trigger), ctx: mctx, cancel: cancel}, nil
}

// Open creates the streams, waiting for a JetStream cluster that is still
// forming until ctx ends, starts consuming the named queues if the module
// is registered, and starts the durable:subscriber triggers registered
// while it waited. It may be called again after an error.
func (m *Module) Open(ctx context.Context) error {
	for _, sc := range []jetstream.StreamConfig{
		{Name: StreamQueues, Subjects: []string{subjQueue + ">"}, Retention: jetstream.WorkQueuePolicy},
		{Name: StreamDLQ, Subjects: []string{subjDLQ + ">"}, Retention: jetstream.WorkQueuePolicy},
		{Name: StreamTopics, Subjects: []string{subjTopic + ">", subjRedrive + ">"}, Retention: jetstream.InterestPolicy, MaxAge: m.cfg.TopicMaxAge},
	} {
		sc.Storage, sc.Replicas, sc.MaxBytes, sc.Discard = jetstream.FileStorage, m.cfg.Replicas, m.cfg.MaxBytes, jetstream.DiscardNew
		sc.Duplicates = 2 * time.Minute
		if _, err := jsboot.CreateOrUpdateStream(ctx, m.js, sc); err != nil {
			return fmt.Errorf("queues: %w", err)
		}
	}
	m.mu.Lock()
	m.open = true
	ids := slices.Sorted(maps.Keys(m.pending))
	m.mu.Unlock()
	for _, id := range ids {
		m.mu.Lock()
		t, ok := m.pending[id]
		delete(m.pending, id)
		m.mu.Unlock()
		if !ok {
			continue // unregistered meanwhile
		}
		if err := (provider{m}).RegisterTrigger(ctx, t); err != nil {
			m.log.Warn("durable:subscriber trigger accepted while the queues waited for JetStream does not start", "trigger_id", id, "function_id", t.FunctionID, "error", err)
		}
	}
	return m.consumeNamed(ctx)
}

// consumeNamed starts consuming the named queues not yet consumed, once
// the module is both open and registered.
func (m *Module) consumeNamed(ctx context.Context) error {
	m.mu.Lock()
	ready := m.open && m.e != nil && !m.stopped
	m.mu.Unlock()
	if !ready {
		return nil
	}
	for name, q := range m.queues {
		m.mu.Lock()
		done := m.consumed[name]
		m.mu.Unlock()
		if done {
			continue
		}
		if err := m.consumeQueue(ctx, name, q); err != nil {
			return err
		}
		m.mu.Lock()
		m.consumed[name] = true
		m.mu.Unlock()
	}
	return nil
}

func (m *Module) isOpen() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open
}

// errWaiting is the answer of the queue functions before Open.
func errWaiting(what string) error {
	return engine.Errorf(codes.Unavailable, "%s: the queues wait for JetStream, which the engine's NATS does not offer yet (GET /readyz shows when they are up); nothing was done", what)
}

// whenOpen is h, answering unavailable until the module is open.
func (m *Module) whenOpen(id string, h func(context.Context, engine.Call) ([]byte, error)) engine.HandlerFunc {
	return func(ctx context.Context, c engine.Call) ([]byte, error) {
		if !m.isOpen() {
			return nil, errWaiting(id)
		}
		return h(ctx, c)
	}
}

// openProvider keeps the durable:subscriber triggers registered before
// the module is open, for Open to start.
type openProvider struct{ provider }

func (p openProvider) RegisterTrigger(ctx context.Context, t engine.Trigger) error {
	m := p.m
	m.mu.Lock()
	if !m.open {
		defer m.mu.Unlock()
		if m.stopped {
			return engine.Errorf(codes.Unavailable, "the queue module is stopped")
		}
		m.pending[t.ID] = t
		return nil
	}
	m.mu.Unlock()
	return p.provider.RegisterTrigger(ctx, t)
}

func (p openProvider) UnregisterTrigger(ctx context.Context, t engine.Trigger) error {
	p.m.mu.Lock()
	delete(p.m.pending, t.ID)
	p.m.mu.Unlock()
	return p.provider.UnregisterTrigger(ctx, t)
}
