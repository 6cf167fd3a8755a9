package cronmodule

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// FnList lists the cron triggers.
const FnList = "cron::list"

// ListMaxLimit is the most jobs a cron::list page holds (Config.MaxListBytes
// bounds its bytes), and DefaultMaxListBytes the default of that bound.
const (
	ListMaxLimit        = 1000
	DefaultMaxListBytes = 1 << 20
)

// JobStatus is one row of cron::list.
type JobStatus struct {
	TriggerID  string `json:"trigger_id"`
	FunctionID string `json:"function_id"`
	Expression string `json:"expression"`
	Timezone   string `json:"timezone,omitempty"`
	// LastFireMS is the last fire that came due (run by whichever engine
	// claimed it), NextFireMS the next one, in Unix ms; 0 for none.
	LastFireMS int64 `json:"last_fire_ms"`
	NextFireMS int64 `json:"next_fire_ms"`
	// LastError is why the last run on this engine failed, if it did.
	LastError string `json:"last_error,omitempty"`
}

// list answers cron::list {limit?, after?}: the cron triggers whose
// function the caller may call, by trigger id.
func (m *Module) list(_ context.Context, c engine.Call) ([]byte, error) {
	var in struct {
		Limit *int   `json:"limit"`
		After string `json:"after"`
	}
	if len(c.Payload) > 0 && string(c.Payload) != "null" {
		if err := json.Unmarshal(c.Payload, &in); err != nil {
			return nil, engine.Errorf(codes.InvalidArgument, "%s: want {limit?, after?}: %v", FnList, err)
		}
	}
	limit := 100
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > ListMaxLimit {
			return nil, engine.Errorf(codes.InvalidArgument, "%s: limit must be 1 to %d", FnList, ListMaxLimit)
		}
		limit = *in.Limit
	}
	var jobs []*job
	for id, j := range m.jobs.All() {
		if id > in.After {
			jobs = append(jobs, j)
		}
	}
	slices.SortFunc(jobs, func(a, b *job) int { return cmp.Compare(a.t.ID, b.t.ID) })
	out := []JobStatus{}
	more, size := false, 0
	for _, j := range jobs {
		if m.e.CanCall(c.Grant, j.t.FunctionID) != nil {
			continue
		}
		if len(out) == limit {
			more = true
			break
		}
		st := JobStatus{TriggerID: j.t.ID, FunctionID: j.t.FunctionID, Expression: *j.cfg.Expression, Timezone: j.cfg.Timezone,
			LastFireMS: j.last.Load(), NextFireMS: j.next.Load()}
		if e := j.lastErr.Load(); e != nil {
			st.LastError = *e
		}
		n := len(st.TriggerID) + len(st.FunctionID) + len(st.Expression) + len(st.Timezone) + len(st.LastError) + 128
		if len(out) > 0 && size+n > m.cfg.MaxListBytes {
			more = true
			break
		}
		out = append(out, st)
		size += n
	}
	return json.Marshal(map[string]any{"jobs": out, "more": more})
}
