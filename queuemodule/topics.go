package queuemodule

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natsheader"
	"github.com/trinehq/trine/internal/subject"
)

// DeadLetterName is the dead-letter queue of a durable subscriber, for
// iii::queue::redrive: its redriven messages go to that function alone.
func DeadLetterName(topic, functionID string) string {
	return "durable:" + topic + ":" + functionID
}

func (m *Module) checkTopic(fn string, topic *string) error {
	if topic == nil {
		return engine.Errorf(codes.InvalidArgument, "%s: missing field topic", fn)
	}
	if err := engine.ValidateName("topic", *topic, DefaultMaxTopicLen); err != nil {
		return engine.Errorf(codes.InvalidArgument, "%s: %s", fn, engine.AsError(err).Message)
	}
	return nil
}

func (m *Module) durablePublish(ctx context.Context, c engine.Call) ([]byte, error) {
	var in struct {
		Topic *string         `json:"topic"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(c.Payload, &in); err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "%s: bad input: %v", FnDurablePublish, err)
	}
	if err := m.checkTopic(FnDurablePublish, in.Topic); err != nil {
		return nil, err
	}
	data := in.Data
	if data == nil {
		data = json.RawMessage("null")
	}
	msg := &nats.Msg{Subject: subjTopic + subject.Token(*in.Topic), Header: nats.Header{hTopic: []string{natsheader.Encode(*in.Topic)}}, Data: data}
	out, err := m.publish(ctx, msg, uuid.NewString(), "")
	if err != nil {
		return nil, err
	}
	var r enqueueResult
	_ = json.Unmarshal(out, &r)
	return json.Marshal(struct {
		MessageReceiptID string `json:"messageReceiptId"`
		Seq              uint64 `json:"seq"`
	}{r.MessageReceiptID, r.Seq})
}

type provider struct{ m *Module }

// ReadFunction guards durable:subscriber for connections under a listener
// policy: a connection that may not publish to durable topics may not
// read them.
func (provider) ReadFunction(engine.Trigger) string { return FnDurablePublish }

type durableConfig struct {
	Topic       *string      `json:"topic"`
	QueueConfig *QueueConfig `json:"queue_config"`
}

// RegisterTrigger starts consuming a durable topic for the trigger's
// function. Every engine with a trigger for the function shares one
// durable consumer, so its replicas compete; the consumer outlives the
// trigger, keeping the function's messages while no worker serves it.
func (p provider) RegisterTrigger(ctx context.Context, t engine.Trigger) error {
	var cfg durableConfig
	raw := bytes.TrimSpace(t.Config)
	if len(raw) == 0 || raw[0] != '{' {
		return engine.Errorf(codes.InvalidArgument, "durable:subscriber trigger %q: config must be a JSON object with topic", t.ID)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return engine.Errorf(codes.InvalidArgument, "durable:subscriber trigger %q: bad config: %v", t.ID, err)
	}
	m := p.m
	if err := m.checkTopic("durable:subscriber trigger "+t.ID, cfg.Topic); err != nil {
		return err
	}
	q := QueueConfig{}
	if cfg.QueueConfig != nil {
		q = *cfg.QueueConfig
		if q.Type == TypeFIFO || q.MessageGroupField != "" {
			return engine.Errorf(codes.InvalidArgument, "durable:subscriber trigger %q: queue_config: durable topics are standard queues", t.ID)
		}
	}
	q, err := q.normalize("subscriber")
	if err != nil {
		return engine.Errorf(codes.InvalidArgument, "durable:subscriber trigger %q: queue_config: %v", t.ID, err)
	}
	if q.Concurrency > m.cfg.MaxConcurrency {
		return engine.Errorf(codes.InvalidArgument, "durable:subscriber trigger %q: queue_config: concurrency is %d; this engine allows at most %d (--queue-max-concurrency)", t.ID, q.Concurrency, m.cfg.MaxConcurrency)
	}
	topic := *cfg.Topic
	ttok, ftok := subject.Token(topic), subject.Token(t.FunctionID)
	back := subjRedrive + ttok + "." + ftok
	filter := []string{subjTopic + ttok, back}
	name, err := m.topicConsumerName(ctx, topic, t.FunctionID, filter)
	if err != nil {
		return engine.Errorf(codes.Unavailable, "durable:subscriber trigger %q: %v", t.ID, err)
	}
	cons, err := m.js.CreateOrUpdateConsumer(ctx, StreamTopics, jetstream.ConsumerConfig{
		Durable:        name,
		FilterSubjects: filter,
		AckPolicy:      jetstream.AckExplicitPolicy, AckWait: m.cfg.AckWait, MaxDeliver: -1,
		MaxAckPending: q.Concurrency, DeliverPolicy: jetstream.DeliverNewPolicy,
		InactiveThreshold: m.cfg.TopicMaxAge,
	})
	if err != nil {
		return engine.Errorf(codes.Unavailable, "durable:subscriber trigger %q: %v", t.ID, err)
	}
	dlq := DeadLetterName(topic, t.FunctionID)
	fctx, stop := context.WithCancel(m.ctx)
	err = m.topics.Put(t.ID, struct{}{}, stop, func() {
		m.fetchLoop(fctx, cons, t.FunctionID, q.Concurrency, func(msg jetstream.Msg) { m.runTopicJob(t, topic, dlq, back, q, msg) })
	})
	if err != nil {
		stop()
	}
	return err
}

// topicConsumerName is the durable consumer of topic for fn:
// T_<topic token>_<function token>, unless a consumer of that name
// filters other subjects. '_' is a letter of tokens, so topic "orders_eu"
// for x::y and topic "orders" for eu_x::y give one name; the one
// subscription that did not take it first gets T~<hash of both names>,
// and every engine finds the same answer.
func (m *Module) topicConsumerName(ctx context.Context, topic, fn string, filter []string) (string, error) {
	name := consumerName("T", subject.Token(topic), subject.Token(fn))
	c, err := m.js.Consumer(ctx, StreamTopics, name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return name, nil
	case err != nil:
		return "", err
	case slices.Equal(c.CachedInfo().Config.FilterSubjects, filter):
		return name, nil
	}
	sum := sha256.Sum256([]byte(topic + "\x00" + fn)) // neither holds NUL
	return "T~" + hex.EncodeToString(sum[:16]), nil
}

// UnregisterTrigger stops this engine consuming for the trigger; the
// durable consumer keeps the function's messages (for TopicMaxAge).
func (p provider) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	p.m.topics.Remove(t.ID)
	return nil
}

// runTopicJob delivers one message of a durable topic to the trigger's
// function, with the retries of its queue_config.
func (m *Module) runTopicJob(t engine.Trigger, topic, dlq, back string, q QueueConfig, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return // not a JetStream message: nothing to acknowledge
	}
	attempt := int(meta.NumDelivered)
	if msg.Subject() != back {
		got, err := headerName(msg.Headers(), hTopic, "topic", DefaultMaxTopicLen)
		if err != nil {
			m.deadLetter(msg, dlq, back, attempt-1, err)
			return
		}
		if got != topic {
			if msg.Subject() != subjTopic+subject.Token(got) {
				m.deadLetter(msg, dlq, back, attempt-1, fmt.Errorf("header %s names topic %q, not one of subject %s", hTopic, got, msg.Subject()))
				return
			}
			_ = msg.Ack() // another topic whose long name hashed alike
			return
		}
	}
	if attempt > q.MaxRetries {
		m.deadLetter(msg, dlq, back, attempt-1, errors.New("attempts exhausted before this delivery"))
		return
	}
	c := engine.Call{FunctionID: t.FunctionID, Payload: msg.Data(), Metadata: t.Metadata, Timeout: m.cfg.CallTimeout}
	if err := m.attempt(msg, t, c); err != nil {
		if m.ctx.Err() != nil {
			return
		}
		m.fails.Warn(t, "durable subscriber failed", "topic", topic, "function_id", t.FunctionID, "attempt", attempt, "error", err)
		if attempt >= q.MaxRetries {
			m.deadLetter(msg, dlq, back, attempt, err)
			return
		}
		_ = msg.NakWithDelay(q.backoff(attempt))
		return
	}
	if err := msg.DoubleAck(m.ctx); err != nil {
		m.log.Warn("durable subscriber ack failed: it may run again", "topic", topic, "function_id", t.FunctionID, "error", err)
	}
}
