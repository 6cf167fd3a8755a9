package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"

	"github.com/trinehq/trine/codes"
)

// FnTriggersRelease ends a trigger that its provider keeps in force after
// its worker left (an orphan): the operator's way out when that worker
// will not come back. It is not in the infrastructure carve-out, so a
// connection under a listener policy may call it only when exposed.
const FnTriggersRelease = "engine::triggers::release"

// StatusOrphaned is the status of an orphan in the trigger listings.
const StatusOrphaned = "orphaned"

// Orphan is a trigger that a provider keeps after its owner disconnected.
type Orphan struct {
	Trigger
	// Reason says why it is kept and what it does meanwhile.
	Reason string
}

// OrphanHolder is a built-in OrphanKeeper whose orphans the engine lists
// (engine::triggers::overview) and releases (engine::triggers::release).
// ReleaseOrphan ends orphan id and reports whether there was one; a live
// trigger of that id is not an orphan and stays.
type OrphanHolder interface {
	Orphans() []Orphan
	ReleaseOrphan(ctx context.Context, id string) (bool, error)
}

// holders are the built-in trigger types' providers that keep orphans.
func (e *Engine) holders() []OrphanHolder {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var hs []OrphanHolder
	for _, id := range slices.Sorted(maps.Keys(e.triggerTypes)) {
		if tt := e.triggerTypes[id]; tt.owner == nil {
			if h, ok := tt.provider.(OrphanHolder); ok {
				hs = append(hs, h)
			}
		}
	}
	return hs
}

// Triggers lists trigger types and triggers, sorted by id: the triggers
// of connected workers, and the orphans their providers keep, with status
// "orphaned", the reason, and no owner.
func (e *Engine) Triggers() ([]TriggerTypeStatus, []TriggerStatus) {
	types, ts := e.liveTriggers()
	var orphans []TriggerStatus
	for _, h := range e.holders() {
		for _, o := range h.Orphans() {
			orphans = append(orphans, TriggerStatus{Trigger: o.Trigger, Status: StatusOrphaned, Reason: o.Reason})
		}
	}
	if len(orphans) == 0 {
		return types, ts
	}
	for i := range types {
		for _, o := range orphans {
			if o.Type == types[i].ID {
				types[i].TriggerCount++
			}
		}
	}
	ts = append(ts, orphans...)
	slices.SortStableFunc(ts, func(a, b TriggerStatus) int { return cmp.Compare(a.ID, b.ID) })
	return types, ts
}

func (e *Engine) registerOrphanBuiltins() error {
	return e.RegisterFunction(FnTriggersRelease, "End a trigger kept in force after its worker left (status orphaned in engine::triggers::overview); {trigger_id}",
		HandlerFunc(func(ctx context.Context, c Call) ([]byte, error) {
			var in struct {
				TriggerID string `json:"trigger_id"`
			}
			if err := decodeInput(c.Payload, &in); err != nil {
				return nil, err
			}
			if in.TriggerID == "" {
				return nil, Errorf(codes.InvalidArgument, "%s needs trigger_id", FnTriggersRelease)
			}
			for _, h := range e.holders() {
				ok, err := h.ReleaseOrphan(ctx, in.TriggerID)
				if err != nil {
					return nil, err
				}
				if ok {
					e.log.Warn("orphaned trigger released: what it guarded is no longer guarded by it", LogTriggerID, in.TriggerID, "caller_worker_id", c.CallerID)
					return json.Marshal(map[string]any{"trigger_id": in.TriggerID, "released": true})
				}
			}
			return nil, Errorf(codes.TriggerNotFound, "no orphaned trigger %q: only a trigger kept after its worker left can be released (status %q in %s)",
				in.TriggerID, StatusOrphaned, FnTriggersOverview)
		}))
}
