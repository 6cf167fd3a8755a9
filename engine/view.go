package engine

import (
	"slices"
)

// view is what one caller may see of the engine: everything for a trusted
// caller (nil grant), and for a connection under a listener policy only
// what it may call. Discovery (the list and *::info functions, and
// engine::functions-available notices) answers through it, so that
// listing never shows what calling would refuse.
type view struct {
	e      *Engine
	g      *Grant
	caller string // the calling worker's id, or ""
}

func (e *Engine) viewOf(c Call) view { return view{e: e, g: c.Grant, caller: c.CallerID} }

func (v view) all() bool { return v.g == nil }

// function reports whether the caller may call function id, or serves it.
func (v view) function(id string) bool {
	return v.all() || v.g.CanCall(id, v.e.functionMetadata(id)) == nil || v.serves(id)
}

// serves reports whether the calling worker is a replica of function id.
func (v view) serves(id string) bool {
	if v.caller == "" {
		return false
	}
	v.e.mu.RLock()
	defer v.e.mu.RUnlock()
	f := v.e.functions[id]
	return f != nil && slices.ContainsFunc(f.replicas, func(s *Session) bool { return s.id == v.caller })
}

// functions filters a listing to what the caller may call.
func (v view) functions(fs []FunctionStatus) []FunctionStatus {
	if v.all() {
		return fs
	}
	return slices.DeleteFunc(fs, func(f FunctionStatus) bool { return !v.function(f.FunctionID) })
}

// triggerType reports whether the caller may register triggers of type
// id (allowed_trigger_types).
func (v view) triggerType(id string) bool {
	if v.all() {
		return true
	}
	at := v.g.result.AllowedTriggerTypes
	return at == nil || slices.Contains(*at, id)
}

// trigger reports whether the caller may see a trigger: one it owns, or
// one whose function it may call, of a type it may use.
func (v view) trigger(t TriggerStatus) bool {
	if v.all() || (v.caller != "" && t.OwnerID == v.caller) {
		return true
	}
	return v.triggerType(t.Type) && v.function(t.FunctionID)
}

// worker reports whether the caller may see worker id: itself only.
func (v view) worker(id string) bool { return v.all() || (v.caller != "" && id == v.caller) }
