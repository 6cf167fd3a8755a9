// Package natsroute lets engines call each other's worker functions over
// NATS. Each engine subscribes, in the queue group "trine-engines", to the
// subject of every worker function it serves; a call for a function an
// engine does not serve becomes a NATS request on that subject, so NATS
// picks one of the engines serving it. Deadlines travel with the request,
// a caller's cancellation is broadcast, and error codes come back intact.
//
// A probe is a request on a function's subject with the Trine-Probe
// header: the engine it reaches answers whether it serves the function
// and never runs or forwards anything. NATS answers "no responders" at
// once when no engine serves it. Only engines set headers, so no worker
// payload can make a call a probe.
//
// Concurrency: a Router is safe for concurrent use. Start subscribes and
// starts one goroutine that serves calls from other engines, and each call
// taken runs on a goroutine of its own; Close unsubscribes, stops the
// server goroutine and waits for the calls already taken. NATS callbacks
// never block.
package natsroute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/subject"
)

// Subjects and headers of the protocol.
const (
	subjectPrefix = "trine.fn."
	cancelSubject = "trine.cancel"
	// takeBackSubject carries the id a trusted worker now serves, so that
	// every engine drops the replicas connections under a policy hold.
	takeBackSubject = "trine.takeback"
	queueGroup      = "trine-engines"

	hTimeout     = "Trine-Timeout-Ms"
	hInvocation  = "Trine-Invocation"
	hCaller      = "Trine-Caller"
	hTraceparent = "Trine-Traceparent"
	hBaggage     = "Trine-Baggage"
	hMetadata    = "Trine-Metadata"
	hCode        = "Trine-Code"
	hMessage     = "Trine-Message"
	hRefusal     = "Trine-Refusal" // "request_format": engine.ErrRequestFormat
	hProbe       = "Trine-Probe"
	hServed      = "Trine-Served"

	// probeTimeout bounds ServedElsewhere when an engine serving the
	// subject is slow to answer; no responders is immediate.
	probeTimeout = time.Second
)

// Subject is the NATS subject of a function id.
func Subject(functionID string) string { return subjectPrefix + subject.Token(functionID) }

var (
	_ engine.Remote          = (*Router)(nil)
	_ engine.ElsewhereServer = (*Router)(nil)
)

// Router is an engine.Remote over NATS. Create it with New, give it to
// engine.Config.Remote, then Start it with the engine.
type Router struct {
	nc     *nats.Conn
	log    *slog.Logger
	tracer trace.Tracer // nil: tracing off (WithTracerProvider)

	ops     chan op // Serve/Unserve, applied in order by run
	started chan struct{}
	e       *engine.Engine
	subs    map[string]*nats.Subscription
	cancel  *nats.Subscription
	// takeBack receives the ids trusted workers on other engines took.
	takeBack *nats.Subscription

	mu       sync.Mutex
	inflight map[string]context.CancelFunc // calls taken from other engines
	wg       sync.WaitGroup                // their goroutines
	stop     chan struct{}
	done     chan struct{}
	closing  sync.Once
}

type op struct {
	id     string
	serve  bool
	synced chan struct{} // set: a Sync waiting for the ops before it
}

// New returns a Router on nc.
func New(nc *nats.Conn, log *slog.Logger) *Router {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Router{nc: nc, log: log, ops: make(chan op, 1024), started: make(chan struct{}),
		subs: make(map[string]*nats.Subscription), inflight: make(map[string]context.CancelFunc),
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Start serves calls from other engines on e until Close.
func (r *Router) Start(e *engine.Engine) error {
	r.e = e
	sub, err := r.nc.Subscribe(cancelSubject, r.onCancel)
	if err != nil {
		return err
	}
	r.cancel = sub
	if r.takeBack, err = r.nc.Subscribe(takeBackSubject, func(m *nats.Msg) { r.e.TakeBackFromPolicies(string(m.Data)) }); err != nil {
		return err
	}
	close(r.started)
	go r.run()
	return nil
}

// Close unsubscribes, so that other engines' calls go to the engines
// still serving, and waits for the calls already taken. Later calls do
// nothing.
func (r *Router) Close() {
	r.closing.Do(func() {
		close(r.stop)
		<-r.done
		r.wg.Wait()
	})
}

// Serve implements engine.Remote. The queue is large; should it fill, the
// engine waits, which keeps Serve and Unserve in order. Once the Router is
// closed they do nothing.
func (r *Router) Serve(id string) { r.push(op{id: id, serve: true}) }

// Sync implements engine.Syncer: it returns once the Serve and Unserve
// calls made before it are in effect on the NATS server, so that a
// registration acknowledged to a worker is reachable from every engine.
func (r *Router) Sync(ctx context.Context) error {
	ch := make(chan struct{})
	select {
	case r.ops <- op{synced: ch}:
	case <-r.stop:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ch:
		return nil
	case <-r.stop:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TakeBack implements engine.TakeBacker: it tells every engine that a
// trusted worker serves id here. The id travels as the message body,
// which no transport alters.
func (r *Router) TakeBack(id string) {
	if err := r.nc.Publish(takeBackSubject, []byte(id)); err != nil {
		r.log.Warn("cannot tell the other engines of a trusted registration", "function_id", id, "error", err)
	}
}

// Unserve implements engine.Remote.
func (r *Router) Unserve(id string) { r.push(op{id: id}) }

func (r *Router) push(o op) {
	select {
	case r.ops <- o:
	case <-r.stop:
	}
}

func (r *Router) run() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			r.drain()
			return
		case o := <-r.ops:
			if o.synced != nil {
				if err := r.nc.FlushTimeout(5 * time.Second); err != nil {
					r.log.Warn("cannot confirm this engine's functions with the NATS server", "error", err)
				}
				close(o.synced)
				continue
			}
			if s := r.subs[o.id]; s != nil && !o.serve {
				// Calls already routed here still get an answer
				// (function_not_found), not silence until their deadline.
				_ = s.Drain()
				delete(r.subs, o.id)
			}
			if o.serve && r.subs[o.id] == nil {
				id := o.id
				s, err := r.nc.QueueSubscribe(Subject(id), queueGroup, func(m *nats.Msg) { r.onCall(id, m) })
				if err != nil {
					r.log.Error("cannot serve a function to other engines", "function_id", id, "error", err)
					continue
				}
				r.subs[id] = s
			}
		}
	}
}

// drain removes this engine's interest in every function, making sure the
// server has taken it away before returning (so later calls go to other
// engines), and answers the calls that were already on their way here.
func (r *Router) drain() {
	for _, s := range r.subs {
		_ = s.Drain()
	}
	_ = r.nc.Flush() // the server has processed the UNSUBs
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range r.subs {
		for s.IsValid() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	_ = r.cancel.Unsubscribe()
	_ = r.takeBack.Unsubscribe()
}

// Call implements engine.Remote: it sends c to an engine that serves it.
func (r *Router) Call(ctx context.Context, c engine.Call) (out []byte, err error) {
	subj := Subject(c.FunctionID)
	ctx, span := r.startCall(ctx, &c, subj)
	defer func() { endCall(span, err) }()
	m := nats.NewMsg(subj)
	m.Data = c.Payload
	if d, ok := ctx.Deadline(); ok {
		m.Header.Set(hTimeout, strconv.FormatInt(max(time.Until(d).Milliseconds(), 1), 10))
	}
	m.Header.Set(hInvocation, c.InvocationID)
	if c.CallerID != "" {
		m.Header.Set(hCaller, c.CallerID)
	}
	if c.Baggage != "" {
		m.Header.Set(hBaggage, c.Baggage)
	}
	if c.Traceparent != "" {
		m.Header.Set(hTraceparent, c.Traceparent)
	}
	if len(c.Metadata) > 0 {
		m.Header.Set(hMetadata, oneLine(string(c.Metadata)))
	}
	resp, err := r.nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, engine.Errorf(codes.FunctionNotFound, "function %q is not registered on any engine", c.FunctionID)
	case errors.Is(err, nats.ErrMaxPayload):
		return nil, engine.Errorf(codes.MessageTooLarge, "payload for %q is over the NATS message limit", c.FunctionID)
	case ctx.Err() != nil:
		_ = r.nc.Publish(cancelSubject, []byte(c.InvocationID))
		return nil, ctx.Err()
	case err != nil:
		return nil, engine.Errorf(codes.Unavailable, "cannot reach the engine serving %q: %v", c.FunctionID, err)
	}
	if code := resp.Header.Get(hCode); code != "" {
		e := &engine.Error{Code: engine.Code(code), Message: resp.Header.Get(hMessage)}
		if resp.Header.Get(hRefusal) == "request_format" {
			return nil, engine.RequestFormatError(e)
		}
		return nil, e
	}
	return resp.Data, nil
}

// ServedElsewhere implements engine.ElsewhereServer: it probes the
// subject of id and reports whether an engine that answers serves it.
// The engine asks before a session under a policy registers an id it has
// no replica of, so that such a session never joins a replica set across
// the fleet.
func (r *Router) ServedElsewhere(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	m := nats.NewMsg(Subject(id))
	m.Header.Set(hProbe, "1")
	resp, err := r.nc.RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("probe %s: %w", id, err)
	}
	return resp.Header.Get(hServed) == "1", nil
}

// answerProbe tells a prober whether this engine serves id, at once and
// without running anything. A subscription still draining after the last
// local replica left answers no.
func (r *Router) answerProbe(id string, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	resp := nats.NewMsg(m.Reply)
	if r.e.HasFunction(id) {
		resp.Header.Set(hServed, "1")
	}
	if err := m.RespondMsg(resp); err != nil {
		r.log.Warn("cannot answer a probe from another engine", "function_id", id, "error", err)
	}
}

// onCall runs a call from another engine on this engine's own workers.
func (r *Router) onCall(id string, m *nats.Msg) {
	if m.Header.Get(hProbe) != "" {
		r.answerProbe(id, m)
		return
	}
	inv := m.Header.Get(hInvocation)
	timeout := time.Duration(0)
	if ms, err := strconv.ParseInt(m.Header.Get(hTimeout), 10, 64); err == nil && ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	select {
	case <-r.stop:
		r.mu.Unlock()
		cancel()
		r.reply(m, nil, engine.Errorf(codes.Unavailable, "engine is shutting down"))
		return
	default:
	}
	if inv != "" {
		r.inflight[inv] = cancel
	}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.inflight, inv)
			r.mu.Unlock()
			cancel()
		}()
		c := engine.Call{FunctionID: id, Payload: m.Data, Timeout: timeout, LocalOnly: true,
			CallerID: m.Header.Get(hCaller), Traceparent: m.Header.Get(hTraceparent), Baggage: m.Header.Get(hBaggage)}
		if md := m.Header.Get(hMetadata); md != "" {
			c.Metadata = []byte(md)
		}
		out, err := r.e.Trigger(ctx, c)
		r.reply(m, out, err)
	}()
}

func (r *Router) reply(m *nats.Msg, out []byte, err error) {
	resp := nats.NewMsg(m.Reply)
	if err != nil {
		e := engine.AsError(err)
		resp.Header.Set(hCode, string(e.Code))
		resp.Header.Set(hMessage, oneLine(e.Message))
		if errors.Is(err, engine.ErrRequestFormat) {
			resp.Header.Set(hRefusal, "request_format")
		}
	} else {
		resp.Data = out
	}
	if err := m.RespondMsg(resp); err != nil {
		r.log.Warn("cannot answer a call from another engine", "error", err)
	}
}

// oneLine makes s fit a header value: line breaks become spaces (in JSON
// they can only be whitespace).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// onCancel cancels a call taken from another engine whose caller gave up.
func (r *Router) onCancel(m *nats.Msg) {
	r.mu.Lock()
	cancel := r.inflight[string(m.Data)]
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
