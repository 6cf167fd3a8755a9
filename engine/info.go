package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"github.com/trinehq/trine/codes"
)

// The engine's introspection of one function, worker, trigger type or
// trigger: iii's *::info functions.
const (
	FnFunctionsInfo          = "engine::functions::info"
	FnWorkersInfo            = "engine::workers::info"
	FnTriggersInfo           = "engine::triggers::info"
	FnRegisteredTriggersInfo = "engine::registered-triggers::info"
)

// FunctionInfo is the result of engine::functions::info.
type FunctionInfo struct {
	FunctionStatus
	Metadata json.RawMessage `json:"metadata"`
	// RequestFormat and ResponseFormat are the schemas as registered
	// (null when none; they shadow FunctionStatus's, which are left out
	// when empty); RequestSchema and ResponseSchema repeat them under the
	// names iii's tools read.
	RequestFormat      json.RawMessage     `json:"request_format"`
	ResponseFormat     json.RawMessage     `json:"response_format"`
	RequestSchema      json.RawMessage     `json:"request_schema"`
	ResponseSchema     json.RawMessage     `json:"response_schema"`
	RegisteredTriggers []RegisteredTrigger `json:"registered_triggers"`
}

// FunctionInfo describes function id; ok is false when it is not
// registered.
func (e *Engine) FunctionInfo(id string) (FunctionInfo, bool) {
	return e.functionInfo(view{e: e}, id)
}

// functionInfo is FunctionInfo as v shows it: a function v may not call
// is not there.
func (e *Engine) functionInfo(v view, id string) (FunctionInfo, bool) {
	if !v.function(id) {
		return FunctionInfo{}, false
	}
	i := slices.IndexFunc(e.Functions(), func(f FunctionStatus) bool { return f.FunctionID == id })
	if i < 0 {
		return FunctionInfo{}, false
	}
	info := FunctionInfo{FunctionStatus: e.Functions()[i]}
	info.RequestFormat, info.ResponseFormat = info.FunctionStatus.RequestFormat, info.FunctionStatus.ResponseFormat
	e.mu.RLock()
	if fn := e.functions[id]; fn != nil {
		if ms := fn.replicaMetadata(); len(ms) > 0 {
			info.Metadata = ms[len(ms)-1]
		}
	}
	e.mu.RUnlock()
	for _, v := range []*json.RawMessage{&info.Metadata, &info.RequestFormat, &info.ResponseFormat} {
		if len(*v) == 0 {
			*v = json.RawMessage("null")
		}
	}
	info.RequestSchema, info.ResponseSchema = info.RequestFormat, info.ResponseFormat
	info.RegisteredTriggers = e.registeredTriggers(v, listFilter{FunctionID: id})
	return info, true
}

// infoInput names the thing to describe; iii's tools send one of these.
type infoInput struct {
	FunctionID    string `json:"function_id"`
	WorkerID      string `json:"worker_id"`
	TriggerType   string `json:"trigger_type"`
	TriggerTypeID string `json:"trigger_type_id"`
	TriggerID     string `json:"trigger_id"`
	ID            string `json:"id"`
}

func (e *Engine) registerInfoBuiltins() error {
	fns := []struct {
		id, desc string
		h        func(view, infoInput) (any, error)
	}{
		{FnFunctionsInfo, "Describe one function: owner, replicas, metadata, request and response schemas, triggers; {function_id}", func(v view, in infoInput) (any, error) {
			id := cmp.Or(in.FunctionID, in.ID)
			info, ok := e.functionInfo(v, id)
			if !ok {
				return nil, Errorf(codes.FunctionNotFound, "function %q is not registered", id)
			}
			return info, nil
		}},
		{FnWorkersInfo, "Describe one connected worker, as engine::workers::list does; {worker_id}", func(v view, in infoInput) (any, error) {
			id := cmp.Or(in.WorkerID, in.ID)
			for _, w := range e.Workers() {
				if w.ID == id && v.worker(id) {
					return w, nil
				}
			}
			return nil, Errorf(codes.InvalidArgument, "no connected worker has id %q", id)
		}},
		{FnTriggersInfo, "Describe one trigger type with its triggers; {trigger_type}", func(v view, in infoInput) (any, error) {
			id := cmp.Or(in.TriggerType, in.TriggerTypeID, in.ID)
			types, _ := e.Triggers()
			for _, tt := range types {
				if tt.ID == id && v.triggerType(id) {
					return struct {
						TriggerTypeStatus
						Namespace          string              `json:"namespace"`
						WorkerName         string              `json:"worker_name"`
						RegisteredTriggers []RegisteredTrigger `json:"registered_triggers"`
					}{tt, cmp.Or(tt.ProviderNamespace, "default"), cmp.Or(tt.ProviderName, "engine"), e.registeredTriggers(v, listFilter{TriggerType: id})}, nil
				}
			}
			return nil, Errorf(codes.TriggerTypeNotFound, "trigger type %q is not registered", id)
		}},
		{FnRegisteredTriggersInfo, "Describe one trigger: type, function, config, owner and status; {trigger_id}", func(v view, in infoInput) (any, error) {
			id := cmp.Or(in.TriggerID, in.ID)
			_, ts := e.Triggers()
			for _, t := range ts {
				if t.ID == id && v.trigger(t) {
					cfg := t.Config
					if len(cfg) == 0 {
						cfg = json.RawMessage("null")
					}
					return struct {
						TriggerStatus
						TriggerType string          `json:"trigger_type"`
						WorkerName  string          `json:"worker_name"`
						Config      json.RawMessage `json:"config"`
					}{t, t.Type, t.OwnerName, cfg}, nil
				}
			}
			return nil, Errorf(codes.TriggerNotFound, "trigger %q is not registered", id)
		}},
	}
	for _, f := range fns {
		h := HandlerFunc(func(_ context.Context, c Call) ([]byte, error) {
			var in infoInput
			if err := decodeInput(c.Payload, &in); err != nil {
				return nil, err
			}
			out, err := f.h(e.viewOf(c), in)
			if err != nil {
				return nil, err
			}
			return e.marshalAnswer(f.id, out)
		})
		if err := e.RegisterFunction(f.id, f.desc, h); err != nil {
			return err
		}
	}
	return nil
}
