package engine

import (
	"encoding/json"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/trinehq/trine/codes"
)

// ReservedPrefix starts the ids of the engine's own functions; workers may
// not register ids under it.
const ReservedPrefix = "engine::"

// function is one registry entry: a built-in handler, or a replica set of
// worker sessions. Fields other than next are guarded by Engine.mu.
type function struct {
	id          string
	description string
	// metadata is each replica's own, as it registered it: exposure by
	// an expose_functions metadata filter needs every replica's to match,
	// and a replica's metadata leaves with it.
	metadata map[*Session]json.RawMessage
	request  json.RawMessage // request_format, as registered
	response json.RawMessage // response_format
	formats  *formats        // what the engine checks; nil: nothing
	builtin  Handler
	replicas []*Session
	next     atomic.Uint32 // rotates the starting replica to break ties
}

// pick returns the built-in handler, or the replica with the fewest calls in
// flight (ties go round-robin). Callers hold Engine.mu (read).
func (f *function) pick() Handler {
	if f.builtin != nil {
		return f.builtin
	}
	n := len(f.replicas)
	if n == 1 {
		return f.replicas[0]
	}
	start := int(f.next.Add(1)) % n
	best := f.replicas[start]
	bestLoad := best.inflight.Load()
	for i := 1; i < n && bestLoad > 0; i++ {
		r := f.replicas[(start+i)%n]
		if l := r.inflight.Load(); l < bestLoad {
			best, bestLoad = r, l
		}
	}
	return best
}

type guard struct {
	prefix string
	check  func(id string) error
}

// GuardFunctions makes check decide whether a worker may register a
// function whose id starts with prefix: an error refuses the registration
// with that error, and nothing is registered. A module uses it for the
// names it gives meaning to (stream::<op>(<stream>)). check runs without
// the engine's locks held. Call it before workers attach.
func (e *Engine) GuardFunctions(prefix string, check func(id string) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.guards = append(e.guards, guard{prefix, check})
}

// watch is a WatchFunctions callback.
type watch struct {
	prefix string
	f      func(id string, served bool)
}

// WatchFunctions calls f with every registered function whose id starts
// with prefix (served true), and from then on each time such a function
// appears in the registry (its first replica, or a built-in) or leaves it
// (its last replica). A module uses it to learn the names it gives
// meaning to as they come, instead of asking the registry on every call.
// f runs under the engine's lock: it must be quick and must not call the
// engine.
func (e *Engine) WatchFunctions(prefix string, f func(id string, served bool)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.watches = append(e.watches, watch{prefix, f})
	for id := range e.functions {
		if strings.HasPrefix(id, prefix) {
			f(id, true)
		}
	}
}

// served tells the watches that id came (true) or went. Callers hold e.mu.
func (e *Engine) served(id string, served bool) {
	for _, w := range e.watches {
		if strings.HasPrefix(id, w.prefix) {
			w.f(id, served)
		}
	}
}

func (e *Engine) checkGuards(id string) error {
	e.mu.RLock()
	gs := e.guards
	e.mu.RUnlock()
	for _, g := range gs {
		if strings.HasPrefix(id, g.prefix) {
			if err := g.check(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// Function is a built-in function for RegisterFunctions: its id,
// description and handler.
type Function struct {
	ID          string
	Description string
	Handle      HandlerFunc
}

// RegisterFunctions registers built-in functions in order, each as
// RegisterFunction does, and stops at the first that is refused.
func (e *Engine) RegisterFunctions(fns []Function) error {
	for _, f := range fns {
		if err := e.RegisterFunction(f.ID, f.Description, f.Handle); err != nil {
			return err
		}
	}
	return nil
}

// RegisterFunction registers a built-in function. Built-in ids are unique:
// registering one twice, or over a worker function, is a conflict.
func (e *Engine) RegisterFunction(id, description string, h Handler) error {
	if err := ValidateID("function id", id); err != nil {
		return err
	}
	if h == nil {
		return Errorf(codes.InvalidArgument, "function %q has no handler", id)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.functions[id]; ok {
		return Errorf(codes.Conflict, "function %q is already registered", id)
	}
	e.functions[id] = &function{id: id, description: description, builtin: h}
	e.served(id, true)
	return nil
}

// addReplica adds s to the replica set of id. Callers hold e.mu.
//
// A replica set has one principal: a session under a listener policy
// never joins a set that a session of another policy or identity serves
// (conflict). A trusted session's registration takes the id back from
// sessions under a policy, which stop serving it: a policy can never
// place a function where a trusted worker serves one.
func (e *Engine) addReplica(s *Session, id string, spec FunctionSpec, f *formats) error {
	if strings.HasPrefix(id, ReservedPrefix) {
		return Errorf(codes.Forbidden, "function ids starting with %q are reserved for the engine", ReservedPrefix)
	}
	fn := e.functions[id]
	switch {
	case fn == nil:
		fn = &function{id: id}
		e.functions[id] = fn
		e.served(id, true)
		if r := e.cfg.Remote; r != nil {
			r.Serve(id)
			if tb, ok := r.(TakeBacker); ok && s.grant == nil {
				tb.TakeBack(id)
			}
		}
		e.functionsChanged()
	case fn.builtin != nil:
		return Errorf(codes.Conflict, "function %q is built into the engine", id)
	case len(fn.replicas) > 0 && !samePrincipal(fn.replicas[0].grant, s.grant):
		if s.grant != nil {
			return Errorf(codes.Conflict, "function %q is served by workers of another listener policy or identity; a connection under a policy never joins their replica set (a function_registration_prefix keeps its ids apart)", id)
		}
		for _, r := range slices.Clone(fn.replicas) {
			e.log.Warn("a trusted worker took back a function id served under a listener policy", LogFunctionID, id,
				LogWorkerID, r.id, LogWorkerName, r.name())
			e.unlinkReplica(fn, r)
		}
	}
	if spec.Description != "" {
		fn.description = spec.Description
	}
	if fn.metadata == nil {
		fn.metadata = make(map[*Session]json.RawMessage)
	}
	fn.metadata[s] = spec.Metadata
	if len(spec.RequestFormat) > 0 || len(spec.ResponseFormat) > 0 {
		fn.request, fn.response, fn.formats = spec.RequestFormat, spec.ResponseFormat, f
	}
	if !slices.Contains(fn.replicas, s) {
		fn.replicas = append(fn.replicas, s)
	}
	s.functions[id] = struct{}{}
	return nil
}

// removeReplica takes s out of the replica set of id; the function disappears
// with its last replica. Callers hold e.mu.
func (e *Engine) removeReplica(s *Session, id string) bool {
	fn := e.functions[id]
	if fn == nil || fn.builtin != nil {
		return false
	}
	if !slices.Contains(fn.replicas, s) {
		return false
	}
	e.unlinkReplica(fn, s)
	if len(fn.replicas) == 0 {
		delete(e.functions, id)
		e.served(id, false)
		if r := e.cfg.Remote; r != nil {
			r.Unserve(id)
		}
		e.functionsChanged()
	}
	return true
}

// unlinkReplica takes s out of fn's replica set and its books (metadata,
// the session's functions, what its registration held), leaving the
// function in place even when no replica is left. Callers hold e.mu.
func (e *Engine) unlinkReplica(fn *function, s *Session) {
	fn.replicas = slices.DeleteFunc(fn.replicas, func(x *Session) bool { return x == s })
	delete(fn.metadata, s)
	delete(s.functions, fn.id)
	e.charge(s, usageKey("function", fn.id), 0)
}

// HasFunction reports whether id is registered.
func (e *Engine) HasFunction(id string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.functions[id]
	return ok
}

// functionMetadata is the registered metadata of every replica of
// function id: nil for a built-in, an unknown id, or one served only by
// other engines.
func (e *Engine) functionMetadata(id string) []json.RawMessage {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if fn := e.functions[id]; fn != nil {
		return fn.replicaMetadata()
	}
	return nil
}

// replicaMetadata lists the replicas' metadata in replica order. Callers
// hold e.mu.
func (fn *function) replicaMetadata() []json.RawMessage {
	if len(fn.replicas) == 0 {
		return nil
	}
	out := make([]json.RawMessage, len(fn.replicas))
	for i, r := range fn.replicas {
		out[i] = fn.metadata[r]
	}
	return out
}

// TakeBackFromPolicies drops the replicas of function id on this engine
// when all of them were registered by connections under a listener policy:
// a trusted worker on another engine now serves it (TakeBacker), and a
// policy never shares a replica set with a trusted worker, fleet-wide.
func (e *Engine) TakeBackFromPolicies(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn := e.functions[id]
	if fn == nil || fn.builtin != nil || len(fn.replicas) == 0 ||
		slices.ContainsFunc(fn.replicas, func(s *Session) bool { return s.grant == nil }) {
		return
	}
	for _, r := range slices.Clone(fn.replicas) {
		e.log.Warn("a trusted worker on another engine took back a function id served here under a listener policy", LogFunctionID, id,
			LogWorkerID, r.id, LogWorkerName, r.name())
		e.removeReplica(r, id)
	}
}
