package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/trinehq/trine/codes"
)

// Module is a plug-in of the engine: it registers its functions and
// trigger types on an engine and releases what it holds on Close. Each
// module package offers New(Config) (*Module, error), which validates and
// allocates but starts nothing; cmd/trine builds the list of modules from
// its configuration and mounts it with Mount.
//
// Register is called once, before the engine serves. Close is called once
// the engine has drained, in the reverse order of Register, and may be
// called more than once.
type Module interface {
	Register(e *Engine) error
	Close() error
}

// Drainer is a Module that stops taking new work (jobs of a queue,
// messages of a subscription) when the engine starts draining, before its
// calls are drained; the work already running goes on. Drain must not
// block on that work.
type Drainer interface {
	Drain(ctx context.Context)
}

// Modules is a list of mounted modules, in the order they registered.
type Modules []Module

// Mount registers every module on e in order. On an error it closes every
// module of mods, registered or not, in reverse order, and returns the
// error: the caller owns none of them any more.
func (e *Engine) Mount(mods ...Module) (Modules, error) {
	for _, m := range mods {
		if err := m.Register(e); err != nil {
			_ = Modules(mods).Close()
			return nil, fmt.Errorf("register %T: %w", m, err)
		}
	}
	return Modules(mods), nil
}

// Drain drains every module that is a Drainer, in order.
func (ms Modules) Drain(ctx context.Context) {
	for _, m := range ms {
		if d, ok := m.(Drainer); ok {
			d.Drain(ctx)
		}
	}
}

// Close closes every module in reverse order and joins their errors.
func (ms Modules) Close() error {
	var errs []error
	for i := len(ms) - 1; i >= 0; i-- {
		errs = append(errs, ms[i].Close())
	}
	return errors.Join(errs...)
}

// Condition calls fn, the condition function of trigger t, with c (its
// FunctionID set to fn) and the rights of t's owner, and reports whether
// t's own function should run: it should unless fn answers JSON false.
// With fn "" it calls nothing and answers true. An error of fn is
// returned with false: the caller decides whether that skips the fire
// (stream, state, cron) or answers the request (http).
func (e *Engine) Condition(ctx context.Context, t Trigger, fn string, c Call) (bool, error) {
	if fn == "" {
		return true, nil
	}
	c.FunctionID = fn
	out, err := e.Fire(ctx, t, c)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(bytes.TrimSpace(out), []byte("false")), nil
}

// ValidateCondition checks a trigger config's condition_function_id; ""
// (none) is fine.
func ValidateCondition(fn string) error {
	if fn == "" {
		return nil
	}
	return ValidateID("condition_function_id", fn)
}

// TriggerSet is a module's book of live triggers, by trigger id: keeping
// a trigger again under its id stops the one it replaces, Remove stops
// one, and Close stops them all and waits for every goroutine the set
// started (each trigger's own, and the calls started with Go). An indexed
// set (NewIndexedTriggerSet) also finds the triggers of one key, a stream
// name for instance, without going through the others.
//
// All methods are safe for concurrent use. Stop functions run under the
// set's lock and must not call back into it.
type TriggerSet[T any] struct {
	what string         // "the cron module", for the error after Close
	key  func(T) string // nil: not indexed

	mu     sync.RWMutex
	byID   map[string]kept[T]
	byKey  map[string]map[string]T // key > id; nil when not indexed
	closed bool
	wg     sync.WaitGroup
}

type kept[T any] struct {
	v    T
	stop func()
}

// NewTriggerSet returns an empty set; what names its module in the error
// that refuses triggers after Close ("the cron module is stopped").
func NewTriggerSet[T any](what string) *TriggerSet[T] {
	return &TriggerSet[T]{what: what, byID: make(map[string]kept[T])}
}

// NewIndexedTriggerSet returns an empty set that also indexes each
// trigger under key(v), for In.
func NewIndexedTriggerSet[T any](what string, key func(T) string) *TriggerSet[T] {
	s := NewTriggerSet[T](what)
	s.key, s.byKey = key, make(map[string]map[string]T)
	return s
}

// Put keeps v as trigger id's, with stop (if not nil) to end it, stopping
// the trigger it replaces. run, if not nil, runs on a goroutine of the
// set's and must return once stop has been called. After Close, Put
// refuses with unavailable and neither keeps v nor runs run: the caller
// releases what v holds.
func (s *TriggerSet[T]) Put(id string, v T, stop func(), run func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Errorf(codes.Unavailable, "%s is stopped", s.what)
	}
	if old, ok := s.byID[id]; ok {
		s.drop(id, old)
	}
	s.byID[id] = kept[T]{v, stop}
	if s.key != nil {
		k := s.key(v)
		if s.byKey[k] == nil {
			s.byKey[k] = make(map[string]T)
		}
		s.byKey[k][id] = v
	}
	if run != nil {
		s.wg.Go(run)
	}
	return nil
}

// drop stops k, trigger id's, and forgets it. Callers hold s.mu.
func (s *TriggerSet[T]) drop(id string, k kept[T]) {
	if k.stop != nil {
		k.stop()
	}
	delete(s.byID, id)
	if s.key == nil {
		return
	}
	key := s.key(k.v)
	delete(s.byKey[key], id)
	if len(s.byKey[key]) == 0 {
		delete(s.byKey, key)
	}
}

// Check refuses with unavailable once the set is closed, as Put would.
func (s *TriggerSet[T]) Check() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Errorf(codes.Unavailable, "%s is stopped", s.what)
	}
	return nil
}

// Remove stops trigger id and forgets it; false if it is not kept.
func (s *TriggerSet[T]) Remove(id string) (T, bool) {
	return s.RemoveIf(id, nil)
}

// RemoveIf removes trigger id as Remove does, but only if when is nil or
// reports true for its value, read under the set's lock: the test and the
// removal are one step, so a trigger that replaced the one tested is
// never removed in its stead.
func (s *TriggerSet[T]) RemoveIf(id string, when func(T) bool) (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.byID[id]
	if !ok || (when != nil && !when(k.v)) {
		var zero T
		return zero, false
	}
	s.drop(id, k)
	return k.v, true
}

// Get returns trigger id's value.
func (s *TriggerSet[T]) Get(id string) (T, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.byID[id]
	return k.v, ok
}

// All yields every trigger under the set's read lock: the loop body must
// not call Put or Remove.
func (s *TriggerSet[T]) All() iter.Seq2[string, T] {
	return func(yield func(string, T) bool) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		for id, k := range s.byID {
			if !yield(id, k.v) {
				return
			}
		}
	}
}

// In yields the triggers kept under key, as All does; none when the set
// is not indexed.
func (s *TriggerSet[T]) In(key string) iter.Seq2[string, T] {
	return func(yield func(string, T) bool) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		for id, v := range s.byKey[key] {
			if !yield(id, v) {
				return
			}
		}
	}
}

// Go runs f on a goroutine that Close waits for, unless the set is
// closed: then it reports false and runs nothing.
func (s *TriggerSet[T]) Go(f func()) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.wg.Go(f)
	return true
}

// Stop stops every trigger and refuses new ones, without waiting for the
// goroutines. It may be called more than once.
func (s *TriggerSet[T]) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id, k := range s.byID {
		s.drop(id, k)
	}
}

// Close is Stop, then waits for every goroutine the set started. It may be
// called more than once.
func (s *TriggerSet[T]) Close() {
	s.Stop()
	s.wg.Wait()
}
