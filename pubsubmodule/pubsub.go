// Package pubsubmodule is iii's pubsub: the publish function and the
// subscribe trigger type, carried over NATS so that a message published
// through any engine reaches every subscribed function of the fleet once,
// with the replicas of one function competing for it (a NATS queue group
// per function). It is fire-and-forget, as in iii: nothing is stored, and a
// message nobody is subscribed to is gone. Durable topics are the queue
// module's iii::durable::publish.
//
// Concurrency: a Module is safe for concurrent use. Each subscription's
// NATS callback hands messages to a bounded semaphore and runs each
// delivery on a goroutine of its own; unregistering a trigger unsubscribes
// it, and Close unsubscribes all and waits for the deliveries in progress.
package pubsubmodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/internal/natsheader"
	"github.com/trinehq/trine/internal/subject"
)

// Names.
const (
	FnPublish        = "publish"
	TriggerSubscribe = "subscribe"
	// SubjectPrefix starts a topic's subject: trine.pubsub.<token>.
	SubjectPrefix = "trine.pubsub."
	hTopic        = "Trine-Topic"
)

// Defaults for Config.
const (
	DefaultMaxTopicBytes = 1024
	DefaultConcurrency   = 32
	DefaultPendingMsgs   = 4096
	DefaultPendingBytes  = 64 << 20
	DefaultCallTimeout   = 30 * time.Second
)

// Config configures a Module.
type Config struct {
	// Conn carries messages. Required.
	Conn *nats.Conn
	// MaxTopicBytes bounds a topic. Default DefaultMaxTopicBytes.
	MaxTopicBytes int
	// Concurrency bounds the calls one subscribe trigger runs at once on
	// this engine. Default DefaultConcurrency.
	Concurrency int
	// PendingMsgs and PendingBytes bound the messages waiting for one
	// trigger on this engine; past them NATS drops (and the engine logs a
	// slow consumer). Defaults DefaultPendingMsgs and DefaultPendingBytes.
	PendingMsgs, PendingBytes int
	// CallTimeout bounds each call. Default DefaultCallTimeout.
	CallTimeout time.Duration
	Logger      *slog.Logger
}

// Module is the pubsub module.
type Module struct {
	cfg   Config
	log   *slog.Logger
	fails *engine.FireLog // failed fires and dropped messages, per trigger owner
	e     *engine.Engine

	subs *engine.TriggerSet[*subscription]

	// dropped counts messages dropped by deliver, and the NATS drops
	// of subscriptions already gone.
	dropped atomic.Int64
}

// Stats is a snapshot of the module's counters.
type Stats struct {
	// Dropped counts the messages subscribe triggers on this engine did
	// not get: dropped by NATS past the pending limits (a slow
	// function), or carrying a topic header that does not decode.
	Dropped int64
}

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	n := m.dropped.Load()
	for _, s := range m.subs.All() {
		if s.sub != nil {
			d, _ := s.sub.Dropped()
			n += int64(d)
		}
	}
	return Stats{Dropped: n}
}

type subscription struct {
	t     engine.Trigger
	topic string
	sub   *nats.Subscription
	sem   chan struct{}
}

// New returns the module. It starts nothing.
func New(cfg Config) (*Module, error) {
	if cfg.Conn == nil {
		return nil, errors.New("pubsubmodule: no NATS connection")
	}
	defaults.Positive(&cfg.MaxTopicBytes, DefaultMaxTopicBytes)
	defaults.Positive(&cfg.Concurrency, DefaultConcurrency)
	defaults.Positive(&cfg.PendingMsgs, DefaultPendingMsgs)
	defaults.Positive(&cfg.PendingBytes, DefaultPendingBytes)
	defaults.Positive(&cfg.CallTimeout, DefaultCallTimeout)
	defaults.Logger(&cfg.Logger)
	return &Module{cfg: cfg, log: cfg.Logger, fails: engine.NewFireLog(cfg.Logger, 0), subs: engine.NewTriggerSet[*subscription]("the pubsub module")}, nil
}

// Subject is the NATS subject of topic.
func Subject(topic string) string { return SubjectPrefix + subject.Token(topic) }

// Register registers publish and the subscribe trigger type on e.
func (m *Module) Register(e *engine.Engine) error {
	m.e = e
	if err := e.RegisterFunction(FnPublish, "Publish data to a topic's subscribers (topic, data); fire-and-forget.", engine.HandlerFunc(m.publish)); err != nil {
		return err
	}
	return e.RegisterTriggerType(TriggerSubscribe, "Runs a function with the data of every message published to a topic (config: topic); replicas of a function compete.", provider{m})
}

// Close ends every subscription and waits for the calls running. It may
// be called more than once.
func (m *Module) Close() error {
	m.subs.Close()
	return nil
}

func (m *Module) checkTopic(fn string, topic *string) error {
	if topic == nil {
		return engine.Errorf(codes.InvalidArgument, "%s: missing field topic", fn)
	}
	if err := engine.ValidateName("topic", *topic, m.cfg.MaxTopicBytes); err != nil {
		return engine.Errorf(codes.InvalidArgument, "%s: %s", fn, engine.AsError(err).Message)
	}
	return nil
}

func (m *Module) publish(_ context.Context, c engine.Call) ([]byte, error) {
	var in struct {
		Topic *string         `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(c.Payload, &in); err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "%s: bad input: %v", FnPublish, err)
	}
	if err := m.checkTopic(FnPublish, in.Topic); err != nil {
		return nil, err
	}
	data := in.Data
	if data == nil {
		data = json.RawMessage("null")
	}
	msg := &nats.Msg{Subject: Subject(*in.Topic), Data: data, Header: nats.Header{hTopic: []string{natsheader.Encode(*in.Topic)}}}
	if max := m.cfg.Conn.MaxPayload(); int64(len(data)+len(msg.Header.Get(hTopic))+256) > max {
		return nil, engine.Errorf(codes.MessageTooLarge, "%s: data is %d bytes, NATS carries at most %d with the topic; nothing was published", FnPublish, len(data), max)
	}
	if err := m.cfg.Conn.PublishMsg(msg); err != nil {
		return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnPublish, err)
	}
	return []byte("null"), nil
}

type provider struct{ m *Module }

// ReadFunction guards the subscribe trigger for connections under a
// listener policy: a connection that may not publish may not listen.
func (provider) ReadFunction(engine.Trigger) string { return FnPublish }

func (p provider) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	var cfg struct {
		Topic *string `json:"topic"`
	}
	raw := bytes.TrimSpace(t.Config)
	if len(raw) == 0 || raw[0] != '{' {
		return engine.Errorf(codes.InvalidArgument, "subscribe trigger %q: config must be a JSON object with topic", t.ID)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return engine.Errorf(codes.InvalidArgument, "subscribe trigger %q: bad config: %v", t.ID, err)
	}
	m := p.m
	if err := m.checkTopic("subscribe trigger "+t.ID, cfg.Topic); err != nil {
		return err
	}
	if err := m.subs.Check(); err != nil {
		return err
	}
	m.subs.Remove(t.ID)
	s := &subscription{t: t, topic: *cfg.Topic, sem: make(chan struct{}, m.cfg.Concurrency)}
	// Every engine with a trigger for this function joins one queue
	// group: each message reaches the function once, on one of them.
	sub, err := m.cfg.Conn.QueueSubscribe(Subject(s.topic), subject.Token(t.FunctionID), func(msg *nats.Msg) { m.deliver(s, msg) })
	if err != nil {
		return engine.Errorf(codes.Unavailable, "subscribe trigger %q: %v", t.ID, err)
	}
	if err := sub.SetPendingLimits(m.cfg.PendingMsgs, m.cfg.PendingBytes); err != nil {
		_ = sub.Unsubscribe()
		return engine.Errorf(codes.Internal, "subscribe trigger %q: %v", t.ID, err)
	}
	// Once the trigger is acknowledged, the server knows the
	// subscription: a message published after that reaches it.
	if err := m.cfg.Conn.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return engine.Errorf(codes.Unavailable, "subscribe trigger %q: %v", t.ID, err)
	}
	s.sub = sub
	if err := m.subs.Put(t.ID, s, func() {
		d, _ := sub.Dropped()
		m.dropped.Add(int64(d))
		_ = sub.Unsubscribe()
	}, nil); err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	return nil
}

func (p provider) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	p.m.subs.Remove(t.ID)
	return nil
}

// deliver runs on the subscription's NATS goroutine: it waits for one of
// the trigger's call slots, so a slow function holds back only its own
// messages, which NATS bounds by the pending limits.
func (m *Module) deliver(s *subscription, msg *nats.Msg) {
	topic, err := natsheader.Decode(msg.Header.Get(hTopic))
	if err != nil || topic == "" {
		m.dropped.Add(1)
		m.fails.Warn(s.t, "pubsub message dropped: its topic header does not decode", "topic", s.topic, "subject", msg.Subject, "error", err)
		return
	}
	if topic != s.topic {
		if msg.Subject != Subject(topic) {
			m.fails.Warn(s.t, "pubsub message dropped: its topic header names another subject's topic", "topic", s.topic, "subject", msg.Subject)
		}
		return // another topic whose long name hashed alike
	}
	s.sem <- struct{}{}
	started := m.subs.Go(func() {
		defer func() { <-s.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.CallTimeout)
		defer cancel()
		if _, err := m.e.Fire(ctx, s.t, engine.Call{FunctionID: s.t.FunctionID, Payload: msg.Data, Metadata: s.t.Metadata}); err != nil {
			m.fails.Warn(s.t, "subscribe trigger failed", "function_id", s.t.FunctionID, "topic", s.topic, "error", err)
		}
	})
	if !started {
		<-s.sem
	}
}
