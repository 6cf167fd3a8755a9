package engine

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/trinehq/trine/codes"
)

// WorkerInfo describes a worker, from the first frame of its session.
type WorkerInfo struct {
	Name      string
	Namespace string
	Runtime   string
	Version   string
	// Addr is the worker's network address, if the transport knows it.
	Addr string
	// Transport names the protocol the worker speaks: "grpc" or "iii",
	// set by the transport.
	Transport string
	// Identity is the name its verified client certificate gives it
	// (mTLS), set by the transport; the worker cannot change it.
	Identity string
	// Description, OS and PID are what the worker says of itself, for
	// listings only.
	Description string
	OS          string
	PID         int
	// PreviousID and ReattachToken, both from an earlier session, reclaim
	// that session's worker id; a live session holding it is closed first.
	PreviousID    string
	ReattachToken string
}

// Describer is implemented by a Peer that wants to know when its worker
// describes itself again (Session.Describe), e.g. to learn its namespace.
type Describer interface {
	Described(info WorkerInfo)
}

// Invocation is what a Peer sends to its worker.
type Invocation struct {
	Call
	// Deadline is when the engine gives up on the call.
	Deadline time.Time
	// Void means no result is expected.
	Void bool
}

// Peer is the transport side of a worker session: how the engine reaches the
// worker. Methods are called concurrently and must not block past ctx.
type Peer interface {
	// Invoke sends an invocation to the worker.
	Invoke(ctx context.Context, inv Invocation) error
	// Cancel tells the worker to abandon an invocation; it is best effort.
	Cancel(invocationID string)
	// ConfigureTrigger tells a trigger-type provider about a trigger it must
	// start (remove false) or stop serving. The worker answers through
	// Session.Ack with the same requestID.
	ConfigureTrigger(ctx context.Context, requestID string, t Trigger, remove bool) error
}

type result struct {
	value []byte
	err   error
}

// Session is one connected worker. It is a Handler: calling it invokes the
// function on the worker.
type Session struct {
	e           *Engine
	peer        Peer
	id          string
	token       string
	info        atomic.Pointer[WorkerInfo]
	connectedAt time.Time
	grant       *Grant   // nil: a trusted listener's session
	acct        *account // what it holds and how often its triggers fire, shared by its identity (usage.go)
	inflight    atomic.Int64
	done        chan struct{}

	callMu    sync.Mutex
	calls     int // the session's own calls in flight (admit)
	callBytes int // their payload bytes

	mu      sync.Mutex
	pending map[string]chan result // invocations and trigger configs awaiting an answer
	closed  bool

	// Guarded by Engine.mu.
	functions    map[string]struct{}
	triggers     map[string]struct{}
	triggerTypes map[string]struct{}
	regSize      map[string]int // bytes each registration holds, by usageKey
}

// Attach starts a worker session. If info names a live session by id and
// reattach token, that session is closed first and its id is reused.
func (e *Engine) Attach(info WorkerInfo, p Peer) (*Session, error) {
	return e.AttachGranted(info, p, nil)
}

// AttachGranted is Attach for a connection that Authenticate admitted:
// g decides what the session may call and register (nil: anything).
func (e *Engine) AttachGranted(info WorkerInfo, p Peer, g *Grant) (*Session, error) {
	if info.Name == "" {
		info.Name = "anonymous"
	}
	if info.Namespace == "" {
		info.Namespace = "default"
	}
	for kind, v := range map[string]string{"worker name": info.Name, "namespace": info.Namespace} {
		if err := ValidateID(kind, v); err != nil {
			return nil, err
		}
	}
	s := &Session{
		e:            e,
		peer:         p,
		id:           e.newID(),
		token:        uuid.NewString(), // a secret: 122 random bits
		connectedAt:  e.cfg.Now(),
		grant:        g,
		done:         make(chan struct{}),
		pending:      make(map[string]chan result),
		functions:    make(map[string]struct{}),
		triggers:     make(map[string]struct{}),
		triggerTypes: make(map[string]struct{}),
		regSize:      make(map[string]int),
	}
	s.info.Store(&info)
	if old := e.reattachable(info.PreviousID, info.ReattachToken); old != nil {
		old.Close()
		s.id = old.id
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining {
		return nil, Errorf(codes.Unavailable, "engine is shutting down")
	}
	if _, taken := e.workers[s.id]; taken { // a concurrent reattach won
		s.id = e.newID()
	}
	e.workers[s.id] = s
	s.acct = e.openAccount(g)
	e.log.Info("worker connected", LogWorkerID, s.id, LogWorkerName, info.Name, "runtime", info.Runtime, "addr", info.Addr)
	e.workerChanged("worker_connected", s.id)
	return s, nil
}

func (e *Engine) reattachable(id, token string) *Session {
	if id == "" || token == "" {
		return nil
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	old := e.workers[id]
	if old == nil || subtle.ConstantTimeCompare([]byte(old.token), []byte(token)) != 1 {
		return nil
	}
	return old
}

// Evict closes the live session previousID if token is its reattach token
// and it is not s, for transports whose reattach request arrives after the
// session started. It reports whether a session was closed; everything that
// session registered is gone when Evict returns.
func (s *Session) Evict(previousID, token string) bool {
	old := s.e.reattachable(previousID, token)
	if old == nil || old == s {
		return false
	}
	old.Close()
	return true
}

// Info is the worker's current description.
func (s *Session) Info() WorkerInfo { return *s.info.Load() }

func (s *Session) name() string { return s.info.Load().Name }

// Describe updates what the worker says of itself: its non-empty fields
// replace the current ones (Addr, PreviousID and ReattachToken are
// ignored). A Peer that is a Describer is told the result.
func (s *Session) Describe(d WorkerInfo) error {
	for kind, v := range map[string]string{"worker name": d.Name, "namespace": d.Namespace} {
		if v == "" {
			continue
		}
		if err := ValidateID(kind, v); err != nil {
			return err
		}
	}
	s.e.mu.Lock()
	info := *s.info.Load()
	info.Name = cmp.Or(d.Name, info.Name)
	info.Namespace = cmp.Or(d.Namespace, info.Namespace)
	info.Runtime = cmp.Or(d.Runtime, info.Runtime)
	info.Version = cmp.Or(d.Version, info.Version)
	info.Description = cmp.Or(d.Description, info.Description)
	info.OS = cmp.Or(d.OS, info.OS)
	info.PID = cmp.Or(d.PID, info.PID)
	s.info.Store(&info)
	s.e.mu.Unlock()
	s.e.workerChanged("worker_metadata_updated", s.id)
	if n, ok := s.peer.(Describer); ok {
		n.Described(info)
	}
	return nil
}

// ID is the worker id.
func (s *Session) ID() string { return s.id }

// ReattachToken is the secret that lets a reconnecting worker reclaim ID.
func (s *Session) ReattachToken() string { return s.token }

// Done is closed when the session has been closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Close ends the session: its functions, triggers and trigger types are
// removed, and its in-flight invocations fail at once with
// worker_disconnected. Done is closed once all of that is done, so a
// transport that ends the worker's connection on Done never lets the worker
// see its registrations still in place. Close is idempotent.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()

	// Out of the registry first, so that a caller told of the
	// disconnection can no longer be routed here.
	s.e.detach(s)
	gone := Errorf(codes.WorkerDisconnected, "worker %s (%s) disconnected", s.id, s.name())
	for _, ch := range pending {
		ch <- result{err: gone}
	}
	close(s.done)
}

// detach removes everything s registered.
func (e *Engine) detach(s *Session) {
	e.mu.Lock()
	if e.workers[s.id] == s {
		delete(e.workers, s.id)
	}
	for id := range s.functions {
		e.removeReplica(s, id)
	}
	var unbind []*trigger
	for id := range s.triggers {
		if t := e.triggers[id]; t != nil && t.owner == s {
			delete(e.triggers, id)
			if t.provider != nil {
				unbind = append(unbind, t)
			}
		}
	}
	for id := range s.triggerTypes {
		e.dropTriggerType(s, id)
	}
	for key := range s.regSize {
		e.charge(s, key, 0)
	}
	e.closeAccount(s)
	e.mu.Unlock()
	e.notifyUnbound(unbind, true)
	e.log.Info("worker disconnected", LogWorkerID, s.id, LogWorkerName, s.name())
	e.workerChanged("worker_disconnected", s.id)
}

// Grant is what the session may do; nil for a trusted listener's.
func (s *Session) Grant() *Grant { return s.grant }

// RegisterFunction adds the worker to the replica set of id. A granted
// session's registration passes its AuthResult and registration hook
// first, and id takes its function_registration_prefix.
func (s *Session) RegisterFunction(id, description string) error {
	return s.RegisterFunctionSpec(id, FunctionSpec{Description: description})
}

// FunctionSpec is what a registration says of a function besides its id.
// JSON fields that are null or not valid JSON are dropped.
type FunctionSpec struct {
	Description string
	// Metadata is a JSON object; expose_functions metadata filters match it.
	Metadata json.RawMessage
	// RequestFormat and ResponseFormat are iii's request_format and
	// response_format: JSON Schemas (draft 2020-12), compiled at
	// registration (one that does not compile is refused) and shown by
	// engine::functions::info. The engine checks every payload against
	// RequestFormat before routing it and every result against
	// ResponseFormat before returning it.
	RequestFormat, ResponseFormat json.RawMessage
	// NoValidation keeps the formats for engine::functions::info only:
	// nothing is checked, and they are stored without being compiled
	// (they must still be JSON, within the schema size limit).
	NoValidation bool
}

func (f *FunctionSpec) clean() {
	if len(f.Metadata) > 0 && (string(f.Metadata) == "null" || !json.Valid(f.Metadata)) {
		f.Metadata = nil
	}
	for _, v := range []*json.RawMessage{&f.RequestFormat, &f.ResponseFormat} {
		if string(*v) == "null" {
			*v = nil
		}
	}
}

// RegisterFunctionSpec is RegisterFunction with the rest of the spec.
func (s *Session) RegisterFunctionSpec(id string, spec FunctionSpec) error {
	if err := ValidateID("function id", id); err != nil {
		return err
	}
	spec.clean()
	description := spec.Description
	if g := s.grant; g != nil {
		if err := g.canRegisterFunction(id); err != nil {
			return err
		}
		var err error
		if id, description, err = s.e.onFunctionRegistration(context.Background(), g, id, description); err != nil {
			return err
		}
		id = g.Prefix() + id
		if err := ValidateID("function id", id); err != nil {
			return err
		}
	}
	if err := s.e.checkGuards(id); err != nil {
		return AsError(err)
	}
	if err := s.e.notServedElsewhere(s, id); err != nil {
		return err
	}
	f, err := s.e.compileFormats(id, spec)
	if err != nil {
		return err
	}
	if err := s.addFunction(id, description, spec, f); err != nil {
		return err
	}
	// Acknowledged means reachable: a call from another engine made once
	// the worker has its answer finds the function.
	if r, ok := s.e.cfg.Remote.(Syncer); ok {
		ctx, cancel := context.WithTimeout(s.e.hardStop, 5*time.Second)
		defer cancel()
		if err := r.Sync(ctx); err != nil {
			s.e.log.Warn("function registered, but other engines may not reach it yet", LogFunctionID, id, "error", err)
		}
	}
	return nil
}

// addFunction adds s to the replica set of id within the caps.
func (s *Session) addFunction(id, description string, spec FunctionSpec, f *formats) error {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if s.isClosed() {
		return Errorf(codes.WorkerDisconnected, "session closed")
	}
	spec.Description = description
	e := s.e
	if _, owned := s.functions[id]; !owned {
		if n := s.acct.functions; n >= e.cfg.MaxFunctionsPerWorker {
			return Errorf(codes.Overloaded, "function %q not registered: this connection (with the others of its identity) serves %d functions, the most one may (--max-functions-per-worker)", id, n)
		}
		if _, exists := e.functions[id]; !exists && len(e.functions) >= e.cfg.MaxFunctions {
			return Errorf(codes.Overloaded, "function %q not registered: the engine holds %d functions, the most it may (--max-functions)", id, len(e.functions))
		}
	}
	key, size := usageKey("function", id), len(id)+len(spec.Description)+len(spec.Metadata)+len(spec.RequestFormat)+len(spec.ResponseFormat)
	if err := e.fits(s, key, size); err != nil {
		return Errorf(codes.Overloaded, "function %q not registered: %s", id, err.Message)
	}
	if err := e.addReplica(s, id, spec, f); err != nil {
		return err
	}
	e.charge(s, key, size)
	return nil
}

// UnregisterFunction takes the worker out of the replica set of id (with
// the session's prefix).
func (s *Session) UnregisterFunction(id string) error {
	id = s.grant.Prefix() + id
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	if !s.e.removeReplica(s, id) {
		return Errorf(codes.FunctionNotFound, "this worker has not registered function %q", id)
	}
	return nil
}

// Call is the worker's own trigger: it runs c with the worker as caller.
// A granted session may call only what its Grant allows (forbidden
// otherwise, nothing runs), and through its listener's middleware when
// there is one.
func (s *Session) Call(ctx context.Context, c Call) ([]byte, error) {
	c, err := s.authorize(c)
	if err != nil {
		return nil, err
	}
	n := len(c.Payload)
	if err := s.admit(c.FunctionID, n); err != nil {
		return nil, err
	}
	defer s.release(n)
	return s.e.Trigger(ctx, c)
}

// CallVoid is the worker's own void trigger. It counts among the
// session's calls in flight until its function returns.
func (s *Session) CallVoid(c Call) error {
	c, err := s.authorize(c)
	if err != nil {
		return err
	}
	n := len(c.Payload)
	if err := s.admit(c.FunctionID, n); err != nil {
		if o, ok := s.e.cfg.Observer.(VoidObserver); ok {
			o.VoidCall(c.FunctionID, codes.Overloaded)
		}
		return err
	}
	c.held, c.heldBytes = s, n
	return s.e.TriggerVoid(c)
}

// admit counts a call of n payload bytes among the session's calls in
// flight, or refuses it with overloaded past MaxCallsPerWorker or
// MaxCallBytesPerWorker. The caller releases it when it ends. Refusing
// (rather than not reading the connection) keeps the worker's answers to
// its own invocations flowing while its calls wait.
func (s *Session) admit(fn string, n int) error {
	s.callMu.Lock()
	defer s.callMu.Unlock()
	cfg := &s.e.cfg
	switch {
	case s.calls >= cfg.MaxCallsPerWorker:
		return Errorf(codes.Overloaded, "call of %q refused: this connection has %d calls in flight, the most one may (--max-calls-per-worker)", fn, s.calls)
	case s.calls > 0 && s.callBytes+n > cfg.MaxCallBytesPerWorker:
		return Errorf(codes.Overloaded, "call of %q refused: this connection's %d calls in flight carry %d bytes, and %d more would pass %d (--max-call-bytes-per-worker)", fn, s.calls, s.callBytes, n, cfg.MaxCallBytesPerWorker)
	}
	s.calls++
	s.callBytes += n
	return nil
}

// release ends a call admit counted.
func (s *Session) release(n int) {
	s.callMu.Lock()
	s.calls--
	s.callBytes -= n
	s.callMu.Unlock()
}

// authorize checks a call of the session's and routes it through the
// middleware: the call becomes one of the middleware function, with the
// target, the payload and the connection's context.
func (s *Session) authorize(c Call) (Call, error) {
	c.CallerID = s.id
	return s.e.Authorize(s.grant, c)
}

// CanCall reports whether a caller under g may call fn (nil g: anyone).
// A module that runs calls on a caller's behalf later (a queue) asks it
// of Call.Grant at once.
func (e *Engine) CanCall(g *Grant, fn string) error {
	return g.CanCall(fn, e.functionMetadata(fn))
}

// Authorize decides a call made under g (CanCall, with the target's
// metadata) and, with a middleware, turns it into the middleware's call.
// A nil Grant passes c as is.
func (e *Engine) Authorize(g *Grant, c Call) (Call, error) {
	if g == nil {
		return c, nil
	}
	if err := g.CanCall(c.FunctionID, e.functionMetadata(c.FunctionID)); err != nil {
		return c, err
	}
	return e.throughMiddleware(g, c, nil)
}

// Handle invokes c on the worker and waits for its answer, ctx, or the end of
// the session, whichever comes first. When ctx ends first the worker is told
// to cancel.
func (s *Session) Handle(ctx context.Context, c Call) ([]byte, error) {
	ch, err := s.await(c.InvocationID)
	if err != nil {
		return nil, err
	}
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	deadline, _ := ctx.Deadline()
	c.FunctionID = strings.TrimPrefix(c.FunctionID, s.grant.Prefix()) // the worker knows its own ids
	if err := s.peer.Invoke(ctx, Invocation{Call: c, Deadline: deadline}); err != nil {
		s.forget(c.InvocationID)
		return nil, AsError(err)
	}
	select {
	case r := <-ch:
		return r.value, r.err
	case <-ctx.Done():
		if s.forget(c.InvocationID) {
			s.peer.Cancel(c.InvocationID)
		}
		return nil, ctxError(ctx, c.FunctionID)
	}
}

func (s *Session) invokeVoid(ctx context.Context, c Call) error {
	deadline, _ := ctx.Deadline()
	c.FunctionID = strings.TrimPrefix(c.FunctionID, s.grant.Prefix())
	return s.peer.Invoke(ctx, Invocation{Call: c, Deadline: deadline, Void: true})
}

// Result delivers the worker's answer to an invocation. An answer to an
// unknown, finished or cancelled invocation is dropped; Result reports
// whether it was delivered.
func (s *Session) Result(invocationID string, value []byte, err *Error) bool {
	if err == nil && len(value) > 0 {
		if verr := ValidJSONText(value); verr != nil {
			value, err = nil, Errorf(codes.HandlerError, "worker %s (%s) returned a result that is %v", s.id, s.name(), verr)
		}
	}
	return s.deliver(invocationID, value, err)
}

// Ack delivers a provider's answer to a ConfigureTrigger request.
func (s *Session) Ack(requestID string, err *Error) bool {
	return s.deliver(requestID, nil, err)
}

func (s *Session) deliver(id string, value []byte, err *Error) bool {
	s.mu.Lock()
	ch, ok := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if !ok {
		return false
	}
	r := result{value: value}
	if err != nil {
		r.err = err
	}
	ch <- r
	return true
}

// await registers id as expecting an answer.
func (s *Session) await(id string) (chan result, error) {
	ch := make(chan result, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, Errorf(codes.WorkerDisconnected, "worker %s (%s) disconnected", s.id, s.name())
	}
	s.pending[id] = ch
	return ch, nil
}

// forget drops a pending id; it reports whether the id was still pending.
func (s *Session) forget(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[id]
	delete(s.pending, id)
	return ok
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// WorkerStatus is one row of engine::workers::list.
type WorkerStatus struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Namespace   string `json:"namespace"`
	Runtime     string `json:"runtime"`
	Version     string `json:"version"`
	Addr        string `json:"addr,omitempty"`
	Transport   string `json:"transport,omitempty"`
	Identity    string `json:"identity,omitempty"`
	Description string `json:"description"`
	OS          string `json:"os"`
	PID         int    `json:"pid,omitempty"`
	// Status is always "connected": only live sessions are listed.
	Status        string `json:"status"`
	IPAddress     string `json:"ip_address,omitempty"`
	FunctionCount int    `json:"function_count"`
	// ActiveInvocations equals InFlight (iii's name for it).
	ActiveInvocations int64     `json:"active_invocations"`
	Functions         []string  `json:"functions"`
	TriggerTypes      []string  `json:"trigger_types"`
	Triggers          []string  `json:"triggers"`
	ConnectedAt       time.Time `json:"connected_at"`
	ConnectedAtMS     int64     `json:"connected_at_ms"`
	InFlight          int64     `json:"in_flight"`
}

// Worker returns what the connected worker id says of itself, and false
// when no worker of this engine has that id.
func (e *Engine) Worker(id string) (WorkerInfo, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if s := e.workers[id]; s != nil {
		return s.Info(), true
	}
	return WorkerInfo{}, false
}

// Workers lists the connected workers, sorted by name then id.
func (e *Engine) Workers() []WorkerStatus {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]WorkerStatus, 0, len(e.workers))
	for _, s := range e.workers {
		info := s.Info()
		out = append(out, WorkerStatus{
			ID: s.id, Name: info.Name, Namespace: info.Namespace, Runtime: info.Runtime,
			Version: info.Version, Addr: info.Addr, Transport: info.Transport, Identity: info.Identity, IPAddress: hostOf(info.Addr),
			Description: info.Description, OS: info.OS, PID: info.PID, Status: "connected",
			FunctionCount: len(s.functions), ActiveInvocations: s.inflight.Load(),
			Functions:    slices.Sorted(maps.Keys(s.functions)),
			TriggerTypes: slices.Sorted(maps.Keys(s.triggerTypes)),
			Triggers:     slices.Sorted(maps.Keys(s.triggers)),
			ConnectedAt:  s.connectedAt.UTC(), ConnectedAtMS: s.connectedAt.UnixMilli(),
			InFlight: s.inflight.Load(),
		})
	}
	slices.SortFunc(out, func(a, b WorkerStatus) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
	return out
}

// hostOf is the host part of a host:port address, or addr itself.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
