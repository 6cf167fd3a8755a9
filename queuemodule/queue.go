// Package queuemodule is iii's queues on JetStream: named queues that
// run enqueued calls with retries, fifo lanes and a dead-letter queue, and
// durable topics (iii::durable::publish, durable:subscriber) whose every
// subscribed function gets each message. Jobs live in JetStream streams
// with explicit acks, so a job survives the kill of the engine or the
// worker running it: it is redelivered once its ack wait passes. Delivery
// is at least once.
//
// Concurrency: a Module is safe for concurrent use. Open starts one
// consumer goroutine per named queue and per durable subscription, and each
// job runs on a goroutine of its own, bounded per subscription and in
// bytes; Stop stops taking jobs, and Close stops the consumers and waits
// for every goroutine the module started.
package queuemodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natsheader"
	"github.com/trinehq/trine/internal/subject"
)

// Function and trigger type names, iii's.
const (
	FnEnqueue        = "engine::queue::enqueue"
	FnRedrive        = "iii::queue::redrive"
	FnDurablePublish = "iii::durable::publish"
	TriggerDurable   = "durable:subscriber"
)

// JetStream streams and subjects.
const (
	StreamQueues = "TRINE_QUEUES" // work queue: trine.queue.<queue>.<lane>
	StreamDLQ    = "TRINE_DLQ"    // work queue: trine.dlq.<queue>
	StreamTopics = "TRINE_TOPICS" // interest: trine.topic.<topic>, trine.redrive.<topic>.<function>

	subjQueue   = "trine.queue."
	subjDLQ     = "trine.dlq."
	subjTopic   = "trine.topic."
	subjRedrive = "trine.redrive."
)

// Message headers.
const (
	hFunction = "Trine-Function"
	hMetadata = "Trine-Metadata"
	// hPolicy marks a job enqueued by a connection under a listener
	// policy: it runs with engine.NoRights, since the connection's own
	// rights do not travel with it.
	hPolicy   = "Trine-Policy"
	hQueue    = "Trine-Queue"
	hTopic    = "Trine-Topic"
	hError    = "Trine-Error"
	hAttempts = "Trine-Attempts"
	hRedrive  = "Trine-Redrive-Subject" // where a dead letter goes back to
)

// errStoreFailed is JetStream's code for a stream at its limits.
const errStoreFailed jetstream.ErrorCode = 10077

// Defaults for Config.
const (
	DefaultAckWait      = 30 * time.Second
	DefaultMaxTopicLen  = 1024
	DefaultTopicMaxAge  = 7 * 24 * time.Hour
	DefaultStreamsBytes = 1 << 30
	// DefaultMaxConcurrency bounds a durable subscriber's
	// queue_config.concurrency.
	DefaultMaxConcurrency = 64
	// DefaultInFlightBytes bounds the bytes of the durable-topic
	// messages one function holds on an engine.
	DefaultInFlightBytes = 64 << 20
	// DefaultInFlightBytesTotal bounds them for all functions of an
	// engine together.
	DefaultInFlightBytesTotal = 256 << 20
	// DefaultMaxListBytes bounds a dead-letter page.
	DefaultMaxListBytes = 1 << 20
)

// Config configures a Module.
type Config struct {
	// Conn carries the jobs; its server must offer JetStream. Required.
	Conn *nats.Conn
	// Queues are the named queues. Every engine of a fleet should have
	// the same ones.
	Queues map[string]QueueConfig
	// Replicas is the streams' replication factor. Default 1.
	Replicas int
	// AckWait is how long a job may go unacknowledged before JetStream
	// gives it to another engine: the engine running it renews it every
	// third of it, so only a dead engine lets it lapse. Default 30 s.
	AckWait time.Duration
	// CallTimeout bounds each attempt; zero means the engine's default.
	CallTimeout time.Duration
	// MaxBytes bounds each of the three streams. Default 1 GiB.
	MaxBytes int64
	// TopicMaxAge is how long a durable topic's message waits for a
	// subscriber that is away. Default 7 days.
	TopicMaxAge time.Duration
	// MaxConcurrency is the most a durable:subscriber trigger's
	// queue_config.concurrency may ask for: the calls of one
	// subscription running at once on an engine. Default
	// DefaultMaxConcurrency.
	MaxConcurrency int
	// InFlightBytes bounds, per function, the bytes of the durable-topic
	// messages an engine has fetched for it and not yet acknowledged
	// (their calls running, or their retries waiting): past it, the
	// function's subscriptions fetch nothing more until some finish. A
	// message larger than it still runs, alone. Default
	// DefaultInFlightBytes.
	InFlightBytes int64
	// InFlightBytesTotal bounds the same bytes across all the functions
	// of the engine, whatever their number. It is shared first come, but
	// a function past its fair share (InFlightBytesTotal divided by the
	// functions with durable subscriptions) takes only what the others
	// are not owed up to theirs, so stalled functions never starve the
	// rest. Default DefaultInFlightBytesTotal.
	InFlightBytesTotal int64
	// MaxListBytes bounds a page of iii::queue::dead_letters, roughly: it
	// ends early, with more, past it (--max-list-bytes). Default
	// DefaultMaxListBytes.
	MaxListBytes int
	Logger       *slog.Logger
}

// Module is the queue module.
type Module struct {
	cfg    Config
	log    *slog.Logger
	fails  *engine.FireLog // failed fires and dropped messages, per trigger owner
	js     jetstream.JetStream
	e      *engine.Engine
	queues map[string]QueueConfig

	inflight *budget // durable-topic bytes per function and in total

	counts map[string]*queueCounts // by named queue, fixed at New

	listMu   sync.Mutex    // iii::queue::list's figures, read once per listFor
	listed   []QueueStatus // nil: none yet
	listedAt time.Time

	mu       sync.Mutex
	consumes []jetstream.ConsumeContext   // named queues
	open     bool                         // the streams exist (Open)
	consumed map[string]bool              // named queues being consumed
	pending  map[string]engine.Trigger    // durable:subscriber triggers registered before Open
	topics   *engine.TriggerSet[struct{}] // durable:subscriber fetch loops, by trigger id
	stopped  bool
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc
}

// Queues returns the named queues with their defaults filled in.
func (m *Module) Queues() map[string]QueueConfig { return m.queues }

// Register registers the queue functions and the durable:subscriber
// trigger type on e, and starts consuming the named queues once the
// module is open. Until then the functions answer unavailable and
// durable:subscriber triggers wait for Open (see New).
func (m *Module) Register(e *engine.Engine) error {
	m.mu.Lock()
	m.e = e
	m.mu.Unlock()
	fns := []engine.Function{
		{ID: FnEnqueue, Description: "Enqueue a call on a named queue (queue, function_id, payload); iii's enqueue action.", Handle: m.enqueue},
		{ID: FnRedrive, Description: "Move a named queue's dead letters back to it (queue).", Handle: m.redrive},
		{ID: FnList, Description: "List the named queues with their depth, jobs in flight, redeliveries and dead letters.", Handle: m.list},
		{ID: FnDeadLetters, Description: "Peek at a named queue's dead letters, oldest first, without removing them (queue, limit? at most 100, after? a seq); answers {messages, more}.", Handle: m.deadLetters},
		{ID: FnDurablePublish, Description: "Publish data to a durable topic: every durable:subscriber function gets it, with retries (topic, data).", Handle: m.durablePublish},
	}
	for i, f := range fns {
		fns[i].Handle = m.whenOpen(f.ID, f.Handle)
	}
	if err := e.RegisterFunctions(fns); err != nil {
		return err
	}
	e.SetEnqueuer(m)
	if err := e.RegisterTriggerType(TriggerDurable, "Runs a function for every message of a durable topic, with retries; replicas compete (config: topic, queue_config?).", openProvider{provider{m}}); err != nil {
		return err
	}
	return m.consumeNamed(m.ctx)
}

// Drain stops taking jobs; the running ones go on. An engine drains its
// queues before it drains its calls.
func (m *Module) Drain(context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	for _, cc := range m.consumes {
		cc.Stop()
	}
	m.topics.Stop()
}

// Close stops consuming and waits for the jobs running; their acks are
// sent, or JetStream redelivers them after the ack wait. It may be called
// more than once.
func (m *Module) Close() error {
	m.Drain(context.Background())
	m.mu.Lock()
	m.stopped = true
	for _, cc := range m.consumes {
		cc.Stop()
	}
	m.mu.Unlock()
	m.cancel()
	m.topics.Close()
	m.wg.Wait()
	return nil
}

// lane is the subject token of a job: "s" for a standard queue, "p<i>"
// for the fifo lane of its group (its groupKey).
func lane(q QueueConfig, group string) string {
	if q.Type != TypeFIFO {
		return "s"
	}
	h := fnv.New32a()
	h.Write([]byte(group))
	return "p" + strconv.Itoa(int(h.Sum32()%uint32(q.Concurrency)))
}

// isLane reports whether tok is a lane token ("s", "p<i>"), so that a
// consumer named Q_<queue>_<tok> is the queue's own and not one of a
// queue whose name continues past '_' (queue "a" and queue "a_b").
func isLane(tok string) bool {
	if tok == "s" {
		return true
	}
	if len(tok) < 2 || tok[0] != 'p' {
		return false
	}
	_, err := strconv.ParseUint(tok[1:], 10, 8)
	return err == nil
}

func consumerName(parts ...string) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('_')
		}
		b.WriteString(p)
	}
	return b.String()
}

// consumeQueue creates the queue's consumers (one for a standard queue,
// one per lane for fifo, each with one job in flight), removes those of an
// earlier configuration, and starts consuming.
func (m *Module) consumeQueue(ctx context.Context, name string, q QueueConfig) error {
	want := map[string]jetstream.ConsumerConfig{}
	if q.Type == TypeFIFO {
		for i := range q.Concurrency {
			l := "p" + strconv.Itoa(i)
			want[consumerName("Q", name, l)] = jetstream.ConsumerConfig{FilterSubject: subjQueue + name + "." + l, MaxAckPending: 1}
		}
	} else {
		want[consumerName("Q", name, "s")] = jetstream.ConsumerConfig{FilterSubject: subjQueue + name + ".s", MaxAckPending: q.Concurrency}
	}
	st, err := m.js.Stream(ctx, StreamQueues)
	if err != nil {
		return err
	}
	names := st.ConsumerNames(ctx)
	prefix := consumerName("Q", name) + "_"
	for n := range names.Name() {
		if _, ok := want[n]; !ok && strings.HasPrefix(n, prefix) && isLane(n[len(prefix):]) {
			// A consumer of an earlier type or lane count: its filter
			// would overlap, which a work queue refuses.
			if err := st.DeleteConsumer(ctx, n); err != nil {
				return fmt.Errorf("queue %s: remove consumer %s: %w", name, n, err)
			}
		}
	}
	for n, cc := range want {
		cc.Durable, cc.AckPolicy, cc.AckWait, cc.MaxDeliver = n, jetstream.AckExplicitPolicy, m.cfg.AckWait, -1
		cons, err := st.CreateOrUpdateConsumer(ctx, cc)
		if err != nil {
			return fmt.Errorf("queue %s: consumer %s: %w", name, n, err)
		}
		cctx, err := cons.Consume(func(msg jetstream.Msg) { m.start(func() { m.runQueueJob(name, q, msg) }) },
			jetstream.PullMaxMessages(max(1, cc.MaxAckPending)))
		if err != nil {
			return fmt.Errorf("queue %s: consume: %w", name, err)
		}
		m.mu.Lock()
		m.consumes = append(m.consumes, cctx)
		m.mu.Unlock()
	}
	return nil
}

// start runs f on its own goroutine unless the module is closing (false).
// The consumers' MaxAckPending bounds how many run.
func (m *Module) start(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return false // not acked: JetStream redelivers it after the ack wait
	}
	m.wg.Go(f)
	return true
}

// attempt runs the job's call once, as trigger t when a trigger made it
// (with its owner's rights), renewing its ack wait meanwhile.
func (m *Module) attempt(msg jetstream.Msg, t engine.Trigger, c engine.Call) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(m.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	_, err := m.e.Fire(m.ctx, t, c)
	close(stop)
	wg.Wait()
	return err
}

// jobCall is the call a named queue's job makes, from its encoded
// headers; an error when they do not decode to a valid function id.
func jobCall(msg jetstream.Msg, timeout time.Duration) (engine.Call, error) {
	fn, err := headerName(msg.Headers(), hFunction, "function id", engine.MaxIDLength)
	if err != nil {
		return engine.Call{}, err
	}
	c := engine.Call{FunctionID: fn, Payload: msg.Data(), Timeout: timeout}
	if msg.Headers().Get(hPolicy) != "" {
		c.Grant = engine.NoRights()
	}
	if md := msg.Headers().Get(hMetadata); md != "" {
		v, err := natsheader.Decode(md)
		switch {
		case err == nil:
			c.Metadata = []byte(v)
		case json.Valid([]byte(md)):
			c.Metadata = []byte(md) // stored plain by an older engine
		default:
			return engine.Call{}, fmt.Errorf("header %s: %w", hMetadata, err)
		}
	}
	return c, nil
}

// runQueueJob runs one job of a named queue. A standard queue's failed job
// goes back with a delay and other jobs go on; a fifo job is retried in
// place, holding its lane, so its group stays in order.
func (m *Module) runQueueJob(name string, q QueueConfig, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		m.log.Error("queue job without metadata", "queue", name, "error", err)
		return
	}
	attempt := int(meta.NumDelivered)
	c, err := jobCall(msg, m.cfg.CallTimeout)
	if err != nil {
		m.deadLetter(msg, name, msg.Subject(), attempt-1, err)
		return
	}
	for {
		if attempt > q.MaxRetries {
			m.deadLetter(msg, name, msg.Subject(), attempt-1, errors.New("attempts exhausted before this delivery"))
			return
		}
		err := m.attempt(msg, engine.Trigger{}, c)
		if err == nil {
			if err := msg.DoubleAck(m.ctx); err != nil {
				m.log.Warn("queue job ack failed: it may run again", "queue", name, "function_id", c.FunctionID, "error", err)
			}
			return
		}
		if m.ctx.Err() != nil {
			return // closing: redelivered after the ack wait
		}
		m.fails.WarnFor("queue "+name, "queue job failed", "queue", name, "function_id", c.FunctionID, "attempt", attempt, "max_retries", q.MaxRetries, "error", err)
		if attempt >= q.MaxRetries {
			m.deadLetter(msg, name, msg.Subject(), attempt, err)
			return
		}
		m.counts[name].retries.Add(1)
		wait := q.backoff(attempt)
		if q.Type != TypeFIFO {
			if err := msg.NakWithDelay(wait); err != nil {
				m.log.Warn("queue job nak failed: redelivered after the ack wait", "queue", name, "error", err)
			}
			return
		}
		if !m.holdFor(msg, wait) {
			return
		}
		attempt++
	}
}

// holdFor waits d while keeping msg's ack wait renewed; false when the
// module closes first.
func (m *Module) holdFor(msg jetstream.Msg, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	t := time.NewTicker(m.cfg.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-t.C:
			_ = msg.InProgress()
		}
	}
}

// deadLetter moves msg to the DLQ of queue, then acks it: a job is in one
// of the two at every moment but the instant between, when it may be in
// both.
func (m *Module) deadLetter(msg jetstream.Msg, queue, back string, attempts int, cause error) {
	h := nats.Header{}
	for k, v := range msg.Headers() {
		if k != "Nats-Msg-Id" && k != jetstream.ExpectedLastSubjSeqHeader {
			h[k] = v
		}
	}
	h.Set(hQueue, natsheader.Encode(queue))
	h.Set(hError, natsheader.Encode(cut(cause.Error(), 1024)))
	h.Set(hAttempts, strconv.Itoa(attempts))
	h.Set(hRedrive, back)
	if _, err := m.js.PublishMsg(m.ctx, &nats.Msg{Subject: subjDLQ + subject.Token(queue), Header: h, Data: msg.Data()}); err != nil {
		m.log.Error("dead letter not stored: the job stays in its queue", "queue", queue, "error", err)
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if c := m.counts[queue]; c != nil {
		c.deadLettered.Add(1)
	}
	if err := msg.DoubleAck(m.ctx); err != nil {
		m.log.Warn("dead-lettered job ack failed: it may also stay in its queue", "queue", queue, "error", err)
	}
	m.fails.ErrorFor("dead letters "+queue, "queue job moved to the dead-letter queue", "queue", queue, "function_id", msg.Headers().Get(hFunction), "attempts", attempts, "error", cause)
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// EnqueueInput is FnEnqueue's input.
type EnqueueInput struct {
	Queue      string          `json:"queue"`
	FunctionID string          `json:"function_id"`
	Payload    json.RawMessage `json:"payload"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
}

// Enqueue takes a worker's enqueue action for the engine (engine.Enqueuer):
// c goes to queue through FnEnqueue, as c.CallerID under c.Grant.
func (m *Module) Enqueue(ctx context.Context, queue string, c engine.Call) ([]byte, error) {
	p, err := json.Marshal(EnqueueInput{Queue: queue, FunctionID: c.FunctionID, Payload: c.Payload, Metadata: c.Metadata})
	if err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "enqueue %q: %v", c.FunctionID, err)
	}
	m.mu.Lock()
	e := m.e
	m.mu.Unlock()
	return e.Trigger(ctx, engine.Call{FunctionID: FnEnqueue, Payload: p, CallerID: c.CallerID, Grant: c.Grant, Traceparent: c.Traceparent})
}

// enqueueResult is iii's EnqueueResult.
type enqueueResult struct {
	MessageReceiptID string `json:"messageReceiptId"`
	Queue            string `json:"queue"`
	Seq              uint64 `json:"seq"`
}

func (m *Module) enqueue(ctx context.Context, c engine.Call) ([]byte, error) {
	var in EnqueueInput
	if err := json.Unmarshal(c.Payload, &in); err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "%s: bad input: %v", FnEnqueue, err)
	}
	if err := engine.ValidateName("queue", in.Queue, DefaultMaxTopicLen); err != nil {
		return nil, err
	}
	q, ok := m.queues[in.Queue]
	if !ok {
		return nil, engine.Errorf(codes.EnqueueError, "queue %q is not configured (YAML queues:)", in.Queue)
	}
	if err := engine.ValidateID("function_id", in.FunctionID); err != nil {
		return nil, err
	}
	if err := m.e.CanCall(c.Grant, in.FunctionID); err != nil {
		return nil, err
	}
	payload := in.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	group := ""
	if q.Type == TypeFIFO {
		var fields map[string]json.RawMessage
		if json.Unmarshal(payload, &fields) != nil {
			return nil, engine.Errorf(codes.EnqueueError, "queue %q is fifo: the payload must be an object with %q", in.Queue, q.MessageGroupField)
		}
		g, ok := fields[q.MessageGroupField]
		if !ok || bytes.Equal(bytes.TrimSpace(g), []byte("null")) {
			return nil, engine.Errorf(codes.EnqueueError, "queue %q is fifo: the payload has no %q (or it is null)", in.Queue, q.MessageGroupField)
		}
		group = groupKey(g)
	}
	h := nats.Header{hFunction: []string{natsheader.Encode(in.FunctionID)}}
	if c.Grant != nil {
		h.Set(hPolicy, "1")
	}
	if len(in.Metadata) > 0 && !bytes.Equal(in.Metadata, []byte("null")) {
		h.Set(hMetadata, natsheader.Encode(string(in.Metadata)))
	}
	id := uuid.NewString()
	return m.publish(ctx, &nats.Msg{Subject: subjQueue + in.Queue + "." + lane(q, group), Header: h, Data: payload}, id, in.Queue)
}

// publish stores msg in JetStream and answers with its receipt.
func (m *Module) publish(ctx context.Context, msg *nats.Msg, id, queue string) ([]byte, error) {
	if max := m.cfg.Conn.MaxPayload(); int64(len(msg.Data)+headerBytes(msg.Header)+256) > max {
		return nil, engine.Errorf(codes.MessageTooLarge, "job is %d bytes; NATS carries at most %d; nothing was enqueued", len(msg.Data), max)
	}
	ack, err := m.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errStoreFailed {
			return nil, engine.Errorf(codes.Overloaded, "the queues are full (%d bytes): nothing was enqueued", m.cfg.MaxBytes)
		}
		return nil, engine.Errorf(codes.Unavailable, "enqueue: %v; nothing was enqueued", err)
	}
	return json.Marshal(enqueueResult{MessageReceiptID: id, Queue: queue, Seq: ack.Sequence})
}

func headerBytes(h nats.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// redrive moves every dead letter of a queue back to where it failed.
func (m *Module) redrive(ctx context.Context, c engine.Call) ([]byte, error) {
	var in struct {
		Queue *string `json:"queue"`
	}
	if err := json.Unmarshal(c.Payload, &in); err != nil || in.Queue == nil || *in.Queue == "" {
		return nil, engine.Errorf(codes.InvalidArgument, "%s: want {queue}", FnRedrive)
	}
	name := *in.Queue
	if err := engine.ValidateName("queue", name, 2*DefaultMaxTopicLen); err != nil {
		return nil, err
	}
	// A redrive runs jobs again: only for a caller that may call every
	// function among them. A refusal moves nothing.
	if err := m.mayRedrive(ctx, c.Grant, name); err != nil {
		return nil, err
	}
	cons, err := m.js.CreateOrUpdateConsumer(ctx, StreamDLQ, jetstream.ConsumerConfig{
		Durable: consumerName("DLQ", subject.Token(name)), FilterSubject: subjDLQ + subject.Token(name),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: m.cfg.AckWait, InactiveThreshold: time.Hour,
	})
	if err != nil {
		return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnRedrive, err)
	}
	redriven := 0
	for {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, engine.Errorf(codes.Unavailable, "%s: %v", FnRedrive, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			raw := msg.Headers().Get(hQueue)
			if q, err := natsheader.Decode(raw); (err != nil || q != name) && raw != name {
				continue // a long name that hashed alike (or from an older engine): not ours, left
			}
			h := nats.Header{}
			for k, v := range msg.Headers() {
				switch k {
				case hQueue, hError, hAttempts, hRedrive, "Nats-Msg-Id":
				default:
					h[k] = v
				}
			}
			back := msg.Headers().Get(hRedrive)
			if !strings.HasPrefix(back, subjQueue) && !strings.HasPrefix(back, subjRedrive) {
				continue // not a subject of ours: left in the dead-letter queue
			}
			if _, err := m.js.PublishMsg(ctx, &nats.Msg{Subject: back, Header: h, Data: msg.Data()}); err != nil {
				_ = msg.Nak()
				return nil, engine.Errorf(codes.Unavailable, "%s: %d redriven, then: %v", FnRedrive, redriven, err)
			}
			if err := msg.DoubleAck(ctx); err != nil {
				return nil, engine.Errorf(codes.Unavailable, "%s: %d redriven; the last may also stay in the dead-letter queue: %v", FnRedrive, redriven+1, err)
			}
			redriven++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, engine.Errorf(codes.Unavailable, "%s: %d redriven, then: %v", FnRedrive, redriven, err)
		}
		if n == 0 {
			break
		}
	}
	return json.Marshal(struct {
		Queue    string `json:"queue"`
		Redriven int    `json:"redriven"`
	}{name, redriven})
}
