package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/trinehq/trine/codes"
)

// The engine's own function ids.
const (
	FnFunctionsList = "engine::functions::list"
	FnWorkersList   = "engine::workers::list"
	FnTriggersList  = "engine::triggers::list"
	// FnTriggersOverview is Trine's richer listing: trigger types with
	// their providers and counts, and every trigger with its status.
	FnTriggersOverview = "engine::triggers::overview"
	FnHealthCheck      = "engine::health::check"
	// FnRegisteredTriggersList lists live triggers in iii's shape.
	FnRegisteredTriggersList = "engine::registered-triggers::list"
	// FnWorkersRegister lets a worker describe itself after connecting (the
	// iii SDKs do so last, with a void call).
	FnWorkersRegister = "engine::workers::register"
)

// FunctionStatus is one row of engine::functions::list.
type FunctionStatus struct {
	FunctionID  string   `json:"function_id"`
	Description string   `json:"description,omitempty"`
	BuiltIn     bool     `json:"builtin"`
	Replicas    int      `json:"replicas"`
	Workers     []string `json:"workers"`
	// WorkerName and Namespace are those of the first replica ("engine"
	// and "default" for built-ins), as iii lists them.
	WorkerName string `json:"worker_name"`
	Namespace  string `json:"namespace"`
	// RequestFormat and ResponseFormat are the JSON Schemas the function
	// was registered with (iii's names); absent when none.
	RequestFormat  json.RawMessage `json:"request_format,omitempty"`
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	// Validated is true when the engine checks calls against them (false
	// when the registration opted out).
	Validated bool `json:"validated,omitempty"`
}

// Functions lists the registered functions, sorted by id.
func (e *Engine) Functions() []FunctionStatus {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]FunctionStatus, 0, len(e.functions))
	for _, id := range slices.Sorted(maps.Keys(e.functions)) {
		fn := e.functions[id]
		st := FunctionStatus{FunctionID: id, Description: fn.description, BuiltIn: fn.builtin != nil, Workers: []string{},
			WorkerName: "engine", Namespace: "default", RequestFormat: fn.request, ResponseFormat: fn.response, Validated: fn.formats != nil}
		for i, r := range fn.replicas {
			st.Workers = append(st.Workers, r.id)
			if i == 0 {
				info := r.Info()
				st.WorkerName, st.Namespace = info.Name, info.Namespace
			}
		}
		st.Replicas = len(fn.replicas)
		out = append(out, st)
	}
	return out
}

// Health is the result of engine::health::check.
type Health struct {
	Status      string `json:"status"`
	Version     string `json:"version"`
	UptimeMS    int64  `json:"uptime_ms"`
	Workers     int    `json:"workers"`
	Functions   int    `json:"functions"`
	TimestampMS int64  `json:"timestamp"`
}

// Health reports whether the engine is serving ("ok") or shutting down
// ("draining").
func (e *Engine) Health() Health {
	e.mu.RLock()
	defer e.mu.RUnlock()
	now := e.cfg.Now()
	h := Health{Status: "ok", Version: e.cfg.Version, UptimeMS: now.Sub(e.started).Milliseconds(),
		Workers: len(e.workers), Functions: len(e.functions), TimestampMS: now.UnixMilli()}
	if e.draining {
		h.Status = "draining"
	}
	return h
}

// listFilter is the input of the list built-ins. Prefix is Trine's;
// Search (a substring), TriggerType, FunctionID and Worker (a worker name)
// are iii's.
type listFilter struct {
	Prefix      string `json:"prefix"`
	Search      string `json:"search"`
	TriggerType string `json:"trigger_type"`
	FunctionID  string `json:"function_id"`
	Worker      string `json:"worker"`
}

// RegisteredTrigger is one row of engine::registered-triggers::list.
type RegisteredTrigger struct {
	ID            string          `json:"id"`
	TriggerType   string          `json:"trigger_type"`
	FunctionID    string          `json:"function_id"`
	WorkerName    string          `json:"worker_name"`
	Config        json.RawMessage `json:"config"`
	ConfigSummary string          `json:"config_summary"`
	// Status and Reason are set for an orphan only (Trine's addition).
	Status string `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// registeredTriggers lists the active and orphaned triggers matching f
// that v shows, in iii's shape.
func (e *Engine) registeredTriggers(v view, f listFilter) []RegisteredTrigger {
	_, ts := e.Triggers()
	out := []RegisteredTrigger{}
	for _, t := range ts {
		if (t.Status != "active" && t.Status != StatusOrphaned) || !v.trigger(t) || (f.TriggerType != "" && t.Type != f.TriggerType) ||
			(f.FunctionID != "" && t.FunctionID != f.FunctionID) || (f.Worker != "" && t.OwnerName != f.Worker) ||
			!strings.HasPrefix(t.ID, f.Prefix) ||
			(f.Search != "" && !strings.Contains(t.ID+"\x00"+t.Type+"\x00"+t.FunctionID, f.Search)) {
			continue
		}
		cfg := t.Config
		if len(cfg) == 0 {
			cfg = json.RawMessage("null")
		}
		summary := string(cfg)
		if len(summary) > 120 {
			summary = summary[:117] + "..."
		}
		rt := RegisteredTrigger{ID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID, WorkerName: t.OwnerName,
			Config: cfg, ConfigSummary: summary}
		if t.Status == StatusOrphaned {
			rt.Status, rt.Reason = t.Status, t.Reason
		}
		out = append(out, rt)
	}
	return out
}

func (e *Engine) registerBuiltins() error {
	fns := map[string]struct {
		desc string
		h    func(view, listFilter) any
	}{
		FnFunctionsList: {"List registered functions; {prefix?}", func(v view, f listFilter) any {
			fs := slices.DeleteFunc(v.functions(e.Functions()), func(s FunctionStatus) bool {
				return !strings.HasPrefix(s.FunctionID, f.Prefix) || !strings.Contains(s.FunctionID, f.Search) ||
					(f.Worker != "" && s.WorkerName != f.Worker)
			})
			return map[string]any{"functions": fs}
		}},
		FnWorkersList: {"List connected workers; {prefix?} filters by name", func(v view, f listFilter) any {
			ws := slices.DeleteFunc(e.Workers(), func(s WorkerStatus) bool { return !v.worker(s.ID) || !strings.HasPrefix(s.Name, f.Prefix) })
			return map[string]any{"workers": ws}
		}},
		FnTriggersList: {"List trigger types (iii's shape): {triggers:[{id, namespace, worker_name, description}]}; {prefix?} filters type ids", func(v view, f listFilter) any {
			types, _ := e.Triggers()
			out := make([]map[string]string, 0, len(types))
			for _, tt := range types {
				if !v.triggerType(tt.ID) || !strings.HasPrefix(tt.ID, f.Prefix) {
					continue
				}
				ns, name := cmp.Or(tt.ProviderNamespace, "default"), cmp.Or(tt.ProviderName, "engine")
				out = append(out, map[string]string{"id": tt.ID, "namespace": ns, "worker_name": name, "description": tt.Description})
			}
			return map[string]any{"triggers": out}
		}},
		FnTriggersOverview: {"List trigger types and triggers with their providers, owners and status; {prefix?} filters trigger ids", func(v view, f listFilter) any {
			types, ts := e.Triggers()
			types = slices.DeleteFunc(types, func(tt TriggerTypeStatus) bool { return !v.triggerType(tt.ID) })
			if !v.all() { // count only what the caller sees
				seen := map[string]int{}
				for _, t := range ts {
					if v.trigger(t) {
						seen[t.Type]++
					}
				}
				for i := range types {
					types[i].TriggerCount = seen[types[i].ID]
				}
			}
			ts = slices.DeleteFunc(ts, func(s TriggerStatus) bool { return !v.trigger(s) || !strings.HasPrefix(s.ID, f.Prefix) })
			return map[string]any{"trigger_types": types, "triggers": ts}
		}},
		FnHealthCheck: {"Report engine health", func(view, listFilter) any { return e.Health() }},
		FnRegisteredTriggersList: {"List active triggers (iii's shape); {search?, trigger_type?, function_id?, worker?, prefix?}", func(v view, f listFilter) any {
			return map[string]any{"registered_triggers": e.registeredTriggers(v, f)}
		}},
	}
	for id, fn := range fns {
		h := HandlerFunc(func(_ context.Context, c Call) ([]byte, error) {
			var f listFilter
			if err := decodeInput(c.Payload, &f); err != nil {
				return nil, err
			}
			return e.marshalAnswer(id, fn.h(e.viewOf(c), f))
		})
		if err := e.RegisterFunction(id, fn.desc, h); err != nil {
			return err
		}
	}
	if err := e.registerLogFunctions(); err != nil {
		return err
	}
	if err := e.registerInfoBuiltins(); err != nil {
		return err
	}
	if err := e.registerOrphanBuiltins(); err != nil {
		return err
	}
	if err := e.registerBaggageFunctions(); err != nil {
		return err
	}
	return e.RegisterFunction(FnWorkersRegister, "Describe the calling worker; {name?, namespace?, runtime?, version?, description?, os?, pid?}",
		HandlerFunc(e.registerWorker))
}

// workerDescription is the input of engine::workers::register. Namespace
// is a pointer because a present but blank namespace is an error.
type workerDescription struct {
	Name        string  `json:"name"`
	Namespace   *string `json:"namespace"`
	Runtime     string  `json:"runtime"`
	Version     string  `json:"version"`
	Description string  `json:"description"`
	OS          string  `json:"os"`
	PID         int     `json:"pid"`
}

func (e *Engine) registerWorker(_ context.Context, c Call) ([]byte, error) {
	e.mu.RLock()
	s := e.workers[c.CallerID]
	e.mu.RUnlock()
	if s == nil {
		return nil, Errorf(codes.InvalidArgument, "%s describes the calling worker: call it from a worker session", FnWorkersRegister)
	}
	var d workerDescription
	if err := decodeInput(c.Payload, &d); err != nil {
		return nil, err
	}
	info := WorkerInfo{Name: d.Name, Runtime: d.Runtime, Version: d.Version, Description: d.Description, OS: d.OS, PID: d.PID}
	if d.Namespace != nil {
		if strings.TrimSpace(*d.Namespace) == "" {
			return nil, Errorf(codes.InvalidArgument, "namespace must not be blank")
		}
		info.Namespace = *d.Namespace
	}
	if err := s.Describe(info); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"worker_id": s.id})
}

// decodeInput decodes an optional JSON object payload.
func decodeInput(payload []byte, v any) error {
	p := strings.TrimSpace(string(payload))
	if p == "" || p == "null" {
		return nil
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return Errorf(codes.InvalidArgument, "payload: %v", err)
	}
	return nil
}
