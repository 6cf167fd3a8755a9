package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/internal/workgroup"
)

// Engine routes calls to built-in handlers and to worker replicas.
type Engine struct {
	cfg Config
	log *slog.Logger

	guards  []guard // checks of worker function registrations; set before workers attach
	watches []watch // told of functions coming and going (WatchFunctions); under mu

	mu           sync.RWMutex
	functions    map[string]*function
	workers      map[string]*Session
	triggerTypes map[string]*triggerType
	triggers     map[string]*trigger
	regBytes     int                 // what every session's registrations hold (usage.go)
	accounts     map[string]*account // accounts shared by the sessions of one identity, by accountKey
	draining     bool

	started time.Time

	calls sync.WaitGroup // in-flight calls, counted while draining is false
	// bg is engine-owned background work (trigger re-binding, provider
	// notices). Once shutdown has begun waiting for it, new work is
	// dropped: it concerns a stopped engine.
	bg       workgroup.Group
	hardStop context.Context
	stopNow  context.CancelFunc
	runOnce  sync.Once
	done     chan struct{}
	avail    *availability // engine::functions-available and engine::workers-available
	enqueuer Enqueuer      // the workers' enqueues go to it (SetEnqueuer); guarded by mu
	ids      idSource
	inflight inflight     // the calls the hard stop cancels
	tracer   trace.Tracer // nil: tracing off

	formatLog *FireLog // results that break their response_format, per worker
}

// New returns an Engine with the engine::* built-in functions registered.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	hardStop, stopNow := context.WithCancel(context.Background())
	e := &Engine{
		cfg:          cfg,
		log:          cfg.Logger,
		functions:    make(map[string]*function),
		workers:      make(map[string]*Session),
		triggerTypes: make(map[string]*triggerType),
		triggers:     make(map[string]*trigger),
		accounts:     make(map[string]*account),
		started:      cfg.Now(),
		hardStop:     hardStop,
		stopNow:      stopNow,
		done:         make(chan struct{}),
		formatLog:    NewFireLog(cfg.Logger, 0),
		tracer:       tracing.Tracer(cfg.TracerProvider),
	}
	if err := e.registerBuiltins(); err != nil {
		return nil, err
	}
	if err := e.registerAvailability(); err != nil {
		return nil, err
	}
	return e, nil
}

// newID returns a random (version 4) UUID in its canonical form. Every id
// the engine makes (invocations, workers, provider requests) is one,
// because iii's protocol types them as UUIDs: its Go and Rust SDKs drop a
// frame whose invocation_id does not parse as one.
func (e *Engine) newID() string { return e.ids.next() }

// idSource makes version 4 UUIDs from crypto/rand, read 32 ids at a
// time: one read and no allocation but the string per id, where
// uuid.NewString reads, and allocates, for each.
type idSource struct {
	mu  sync.Mutex
	buf [32 * 16]byte
	pos int
}

func (s *idSource) next() string {
	var u uuid.UUID
	s.mu.Lock()
	if s.pos == 0 {
		_, _ = rand.Read(s.buf[:]) // never fails (crypto/rand's contract)
	}
	copy(u[:], s.buf[s.pos:])
	s.pos = (s.pos + len(u)) % len(s.buf)
	s.mu.Unlock()
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u.String()
}

// Run blocks until ctx ends, then shuts the engine down: new calls are refused
// with unavailable, in-flight calls get Config.ShutdownGrace to finish, then
// the remaining ones are cancelled and every worker session is closed. Run
// returns nil once all of that is done; Done is closed at the same moment.
func (e *Engine) Run(ctx context.Context) error {
	<-ctx.Done()
	e.shutdown()
	return nil
}

// Done is closed when the engine has shut down.
func (e *Engine) Done() <-chan struct{} { return e.done }

func (e *Engine) shutdown() {
	e.runOnce.Do(func() {
		e.mu.Lock()
		e.draining = true
		e.mu.Unlock()
		e.log.Info("engine draining", "grace", e.cfg.ShutdownGrace)

		idle := make(chan struct{})
		go func() { e.calls.Wait(); close(idle) }()
		grace := time.NewTimer(e.cfg.ShutdownGrace)
		select {
		case <-idle:
		case <-grace.C:
			e.log.Warn("engine grace period over, cancelling remaining calls")
		}
		grace.Stop()
		e.stopNow()
		e.inflight.stopAll()
		for _, s := range e.sessions() {
			s.Close()
		}
		// Cancelled calls end at once unless a built-in handler ignores its
		// context; such a handler must not hold the process forever.
		grace.Reset(e.cfg.ShutdownGrace)
		select {
		case <-idle:
		case <-grace.C:
			e.log.Error("built-in handlers ignored cancellation; stopping without them")
		}
		grace.Stop()
		e.bg.Wait()
		close(e.done)
		e.log.Info("engine stopped")
	})
}

func (e *Engine) sessions() []*Session {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*Session, 0, len(e.workers))
	for _, s := range e.workers {
		out = append(out, s)
	}
	return out
}

// Trigger runs the function c.FunctionID and returns its result. The call is
// bounded by ctx's deadline, else by c.Timeout, else by Config.DefaultTimeout.
// Failures are *Error values with a stable code.
func (e *Engine) Trigger(ctx context.Context, c Call) (out []byte, err error) {
	start := time.Now()
	if e.tracer != nil {
		var span trace.Span
		ctx, span = e.traceCall(ctx, &c)
		defer func() { endCall(span, c, err) }()
	}
	out, err = e.trigger(ctx, &c)
	if o := e.cfg.Observer; o != nil {
		var code Code
		if err != nil {
			code = AsError(err).Code
		}
		o.CallDone(c.FunctionID, code, time.Since(start))
	}
	return out, err
}

func (e *Engine) trigger(ctx context.Context, c *Call) ([]byte, error) {
	h, f, err := e.route(c)
	if err != nil {
		return nil, err
	}
	defer e.calls.Done()
	ctx, cancel, slot := e.callContext(ctx, c.Timeout)
	defer e.inflight.remove(slot, cancel)
	out, err := h.Handle(ctx, *c)
	if err != nil {
		if _, remote := h.(remoteHandler); remote && errors.Is(err, ErrRequestFormat) {
			return nil, err // the serving engine refused this call's payload
		}
		return nil, callError(ctx, c.FunctionID, err)
	}
	if err := e.checkResult(f, h, c, out); err != nil {
		return nil, err
	}
	return out, nil
}

// TriggerVoid starts the function c.FunctionID and returns at once. It
// reports only errors known before the function runs (invalid or unknown id,
// shutdown); the function's own outcome is never reported, and a worker
// function produces no reply traffic at all.
func (e *Engine) TriggerVoid(c Call) error {
	err := e.triggerVoid(c)
	if o, ok := e.cfg.Observer.(VoidObserver); ok {
		var code Code
		if err != nil {
			code = AsError(err).Code
		}
		o.VoidCall(c.FunctionID, code)
	}
	return err
}

func (e *Engine) triggerVoid(c Call) (err error) {
	held := c.held // released when the call ends, here or on its goroutine
	defer func() {
		if held != nil {
			held.release(c.heldBytes)
		}
	}()
	base := context.Background()
	if e.tracer != nil {
		var span trace.Span
		base, span = e.traceCall(base, &c)
		defer func() { endCall(span, c, err) }()
	}
	h, _, err := e.route(&c)
	if err != nil {
		return err
	}
	ctx, cancel, slot := e.callContext(base, c.Timeout)
	if s, ok := h.(*Session); ok {
		defer e.calls.Done()
		defer e.inflight.remove(slot, cancel)
		return s.invokeVoid(ctx, c)
	}
	held = nil
	go func() {
		defer e.calls.Done()
		defer e.inflight.remove(slot, cancel)
		if c.held != nil {
			defer c.held.release(c.heldBytes)
		}
		if _, err := h.Handle(ctx, c); err != nil {
			e.log.Debug("void call failed", LogFunctionID, c.FunctionID, "error", err)
		}
	}()
	return nil
}

// route validates c, assigns its invocation id and picks its handler,
// with the formats its result must meet. A payload is checked against its
// function's request format here, on the engine that serves the
// function: a call for another engine is checked there, once. On success
// the caller owns one count on e.calls.
func (e *Engine) route(c *Call) (Handler, *formats, error) {
	if err := ValidateID("function id", c.FunctionID); err != nil {
		return nil, nil, err
	}
	if err := vetTraceContext(c); err != nil {
		return nil, nil, err
	}
	if len(c.Payload) > 0 {
		compact, err := ScanJSONText(c.Payload)
		if err != nil {
			return nil, nil, Errorf(codes.InvalidArgument, "payload for %q: %v", c.FunctionID, err)
		}
		c.compact = compact
	}
	if len(c.Metadata) > 0 {
		if err := ValidJSONText(c.Metadata); err != nil {
			return nil, nil, Errorf(codes.InvalidArgument, "metadata for %q: %v", c.FunctionID, err)
		}
	}
	c.InvocationID = e.newID()
	h, f, err := e.pick(c)
	if err != nil {
		return nil, nil, err
	}
	if err := f.checkPayload(c); err != nil {
		e.calls.Done()
		return nil, nil, err
	}
	return h, f, nil
}

// pick is route's look-up, under the engine's lock.
func (e *Engine) pick(c *Call) (Handler, *formats, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.draining {
		return nil, nil, Errorf(codes.Unavailable, "engine is shutting down")
	}
	fn := e.functions[c.FunctionID]
	if fn == nil {
		if r := e.cfg.Remote; r != nil && !c.LocalOnly {
			e.calls.Add(1)
			return remoteHandler{r}, nil, nil
		}
		return nil, nil, Errorf(codes.FunctionNotFound, "function %q is not registered", c.FunctionID)
	}
	h := fn.pick()
	e.calls.Add(1)
	return h, fn.formats, nil
}

// remoteHandler runs a call through the fleet.
type remoteHandler struct{ r Remote }

func (h remoteHandler) Handle(ctx context.Context, c Call) ([]byte, error) { return h.r.Call(ctx, c) }

// callContext bounds a call: ctx's own deadline wins unless timeout is set;
// with neither, the default applies. The engine's hard stop cancels it too:
// the caller ends the call with e.inflight.remove(slot, cancel).
func (e *Engine) callContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc, int) {
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok && timeout <= 0 {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		if timeout <= 0 {
			timeout = e.cfg.DefaultTimeout
		}
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	return ctx, cancel, e.inflight.add(cancel)
}

// inflight holds the cancel funcs of the calls in flight, for the hard
// stop, in slots that are reused: a call costs no allocation here, where
// a context.AfterFunc on the hard stop allocated three times per call.
type inflight struct {
	mu      sync.Mutex
	stopped bool
	slots   []context.CancelFunc
	free    []int
}

// add keeps cancel for stopAll and returns its slot; after stopAll it
// cancels at once.
func (f *inflight) add(cancel context.CancelFunc) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		cancel()
		return -1
	}
	if n := len(f.free); n > 0 {
		i := f.free[n-1]
		f.free = f.free[:n-1]
		f.slots[i] = cancel
		return i
	}
	f.slots = append(f.slots, cancel)
	return len(f.slots) - 1
}

// remove ends the call in slot: it frees the slot and cancels the call's
// context.
func (f *inflight) remove(slot int, cancel context.CancelFunc) {
	if slot >= 0 {
		f.mu.Lock()
		f.slots[slot] = nil
		f.free = append(f.free, slot)
		f.mu.Unlock()
	}
	cancel()
}

// stopAll cancels every call in flight and every call added later.
func (f *inflight) stopAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	for _, cancel := range f.slots {
		if cancel != nil {
			cancel()
		}
	}
}

// callError gives every failure a code: context endings become
// deadline_exceeded or cancelled, a handler's *Error is kept, and any other
// handler error becomes handler_error.
func callError(ctx context.Context, functionID string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if ctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return ctxError(ctx, functionID)
	}
	return &Error{Code: codes.HandlerError, Message: err.Error()}
}
