package trine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	trinev1 "github.com/trinehq/trine/proto/trine/v1"
)

// Handler serves a function: it receives the JSON payload and returns a
// value that is marshalled to JSON (a json.RawMessage is sent as is). An
// *Error return chooses the code the caller sees; any other error arrives as
// handler_error.
type Handler func(ctx context.Context, payload json.RawMessage) (any, error)

type function struct {
	id          string
	description string
	handler     Handler

	metadata, requestFormat, responseFormat []byte
	noValidation                            bool  // WithoutValidation
	wantTyped, typed                        bool  // WithTypedFormats; RegisterFunctionTyped
	err                                     error // from an option
}

func (f *function) frame(requestID string) *trinev1.ConnectRequest {
	r := &trinev1.RegisterFunction{
		RequestId: requestID, Id: f.id, Description: f.description,
		Metadata: f.metadata, RequestFormat: f.requestFormat, ResponseFormat: f.responseFormat,
	}
	if f.noValidation {
		r.Validate = new(false)
	}
	return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_RegisterFunction{RegisterFunction: r}}
}

func unregisterFunctionFrame(id string) frameFunc {
	return func(requestID string) *trinev1.ConnectRequest {
		return &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_UnregisterFunction{UnregisterFunction: &trinev1.UnregisterFunction{
			RequestId: requestID, Id: id,
		}}}
	}
}

// RegisterFunction serves id with h, joining the function's replica set.
// It waits for the engine's acknowledgement (up to WithCallTimeout) and
// returns the engine's refusal, if any; a refused function is forgotten.
// While disconnected the registration is kept and sent on connect. Calling
// it again for the same id replaces the handler.
func (w *Worker) RegisterFunction(ctx context.Context, id string, h Handler, opts ...FunctionOption) error {
	if h == nil {
		return errorf(CodeInvalidArgument, "function %q has no handler", id)
	}
	f := &function{id: id, handler: h}
	if _, err := applyOptions(struct{}{}, opts, func(o FunctionOption, _ *struct{}) { o.applyFunction(f) }); err != nil {
		return err
	}
	if f.wantTyped && !f.typed {
		f.err = errors.Join(f.err, errors.New("WithTypedFormats needs RegisterFunctionTyped, which knows the types"))
	}
	if f.err != nil {
		return errorf(CodeInvalidArgument, "function %q: %v", id, f.err)
	}
	w.mu.Lock()
	w.functions[id] = f
	w.mu.Unlock()
	return w.register(ctx, f.frame, func() { w.forgetFunction(id, f) })
}

// RegisterFunctionTyped registers a function whose payload is decoded into In
// and whose result is Out. A payload that does not decode is refused with
// invalid_argument before fn runs. With WithTypedFormats, the function's
// request and response formats are SchemaFor[In] and SchemaFor[Out], which
// the engine then enforces.
func RegisterFunctionTyped[In, Out any](ctx context.Context, w *Worker, id string, fn func(ctx context.Context, in In) (Out, error), opts ...FunctionOption) error {
	if fn == nil {
		return errorf(CodeInvalidArgument, "function %q has no handler", id)
	}
	// Applied after the caller's options, so that it sees WithTypedFormats
	// and leaves a format given by WithRequestFormat or WithResponseFormat.
	opts = append(slices.Clip(opts), functionOption(func(f *function) {
		f.typed = true
		if !f.wantTyped {
			return
		}
		if f.requestFormat == nil {
			f.setSchema(&f.requestFormat, "request format", SchemaFor[In])
		}
		if f.responseFormat == nil {
			f.setSchema(&f.responseFormat, "response format", SchemaFor[Out])
		}
	}))
	return w.RegisterFunction(ctx, id, func(ctx context.Context, payload json.RawMessage) (any, error) {
		var in In
		if len(payload) > 0 {
			if err := json.Unmarshal(payload, &in); err != nil {
				return nil, errorf(CodeInvalidArgument, "decode input of %s: %v", id, err)
			}
		}
		return fn(ctx, in)
	}, opts...)
}

// UnregisterFunction stops serving id; the engine routes no more calls here.
func (w *Worker) UnregisterFunction(ctx context.Context, id string) error {
	w.mu.Lock()
	_, ok := w.functions[id]
	delete(w.functions, id)
	w.mu.Unlock()
	if !ok {
		return errorf(CodeFunctionNotFound, "function %q is not registered by this worker", id)
	}
	return w.register(ctx, unregisterFunctionFrame(id), nil)
}

func (w *Worker) forgetFunction(id string, f *function) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.functions[id] == f {
		delete(w.functions, id)
	}
}

// register sends a registration on the live session (waiting for one if
// needed, up to the call timeout) and waits for its Ack. If the connection
// drops before the Ack, it tries again on the next session. On a definitive
// refusal it calls forget.
func (w *Worker) register(ctx context.Context, build frameFunc, forget func()) error {
	if w.initErr != nil {
		return w.initErr
	}
	ctx, cancel := w.callContext(ctx)
	defer cancel()
	stop := context.AfterFunc(w.ctx, cancel) // Close ends it too
	defer stop()
	for {
		s, err := w.liveSession(ctx)
		if err != nil {
			return fmt.Errorf("%w (the registration is kept and will be sent when the worker connects)", err)
		}
		err = s.request(ctx, build)
		if err == nil {
			return nil
		}
		if refused(err) {
			if forget != nil {
				forget()
			}
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		select { // the session broke: wait for the next one
		case <-s.ctx.Done():
		case <-ctx.Done():
			return err
		}
	}
}

// InvocationInfo describes the invocation a handler is serving.
type InvocationInfo struct {
	ID          string
	FunctionID  string
	Metadata    json.RawMessage
	Traceparent string
	// Baggage is the W3C baggage header the call carries.
	Baggage  string
	Deadline time.Time
}

type invocationKey struct{}

// Invocation returns the InvocationInfo of the call a handler's ctx serves.
func Invocation(ctx context.Context) (InvocationInfo, bool) {
	info, ok := ctx.Value(invocationKey{}).(InvocationInfo)
	return info, ok
}

// serve runs an invocation on its own goroutine and sends back its result.
func (w *Worker) serve(s *session, inv *trinev1.Invoke) {
	id := inv.GetInvocationId()
	info := InvocationInfo{ID: id, FunctionID: inv.GetFunctionId(), Metadata: inv.GetMetadata(), Traceparent: inv.GetTraceparent(), Baggage: inv.GetBaggage()}
	var ctx context.Context
	var cancel context.CancelFunc
	if ms := inv.GetTimeoutMs(); ms > 0 {
		info.Deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
		ctx, cancel = context.WithDeadline(s.ctx, info.Deadline)
	} else {
		ctx, cancel = context.WithCancel(s.ctx)
	}
	ctx = context.WithValue(ctx, invocationKey{}, info)

	w.mu.Lock()
	fn, draining := w.functions[inv.GetFunctionId()], w.draining
	if !draining {
		w.handlers.Add(1)
	}
	w.mu.Unlock()
	if draining {
		cancel()
		s.answer(inv, nil, errorf(CodeUnavailable, "worker is shutting down"))
		return
	}
	s.mu.Lock()
	s.running[id] = cancel
	s.mu.Unlock()
	go func() {
		defer w.handlers.Done()
		defer func() {
			s.mu.Lock()
			delete(s.running, id)
			s.mu.Unlock()
			cancel()
		}()
		if fn == nil {
			s.answer(inv, nil, errorf(CodeFunctionNotFound, "this worker does not serve %q", inv.GetFunctionId()))
			return
		}
		if w.sem != nil {
			select {
			case w.sem <- struct{}{}:
				defer func() { <-w.sem }()
			case <-ctx.Done():
				s.answer(inv, nil, errorf(CodeOverloaded, "worker concurrency limit reached until the call's deadline"))
				return
			}
		}
		ctx, span := w.startServe(ctx, info)
		out, err := call(ctx, fn.handler, inv.GetPayload())
		endSpan(span, err)
		s.answer(inv, out, err)
	}()
}

// call runs h, turning a panic into handler_error and the value into JSON.
func call(ctx context.Context, h Handler, payload []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &Error{Code: CodeHandlerError, Message: fmt.Sprintf("handler panicked: %v", r), Stacktrace: string(debug.Stack())}
		}
	}()
	v, err := h(ctx, payload)
	if err != nil {
		return nil, err
	}
	if raw, ok := v.(json.RawMessage); ok {
		if len(raw) == 0 {
			return []byte("null"), nil
		}
		if !json.Valid(raw) {
			return nil, errorf(CodeHandlerError, "handler returned a json.RawMessage that is not valid JSON")
		}
		return raw, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, errorf(CodeHandlerError, "encode result: %v", err)
	}
	return b, nil
}

// answer sends an invocation's result, unless the call was void.
func (s *session) answer(inv *trinev1.Invoke, out []byte, err error) {
	if inv.GetVoid() {
		return
	}
	res := &trinev1.InvokeResult{InvocationId: inv.GetInvocationId(), Result: out, Error: toProto(err)}
	f := &trinev1.ConnectRequest{Frame: &trinev1.ConnectRequest_InvokeResult{InvokeResult: res}}
	if serr := s.send(s.ctx, f); serr != nil && asError(serr).Code == CodeMessageTooLarge {
		res.Result, res.Error = nil, toProto(serr)
		_ = s.send(s.ctx, f)
	}
}
