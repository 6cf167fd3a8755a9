package streammodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
)

// evolveTarget is what a new version of a stream's contract is checked
// against: the stream's stored items and its groups' history.
func (m *Module) evolveTarget() *contracts.Target {
	t := &contracts.Target{
		Store:         m.store,
		MaxValueBytes: m.maxItem,
		Groups: func(ctx context.Context, name string) ([]store.Key, error) {
			groups, err := m.store.ListGroups(ctx, name)
			if err != nil {
				return nil, err
			}
			keys := make([]store.Key, len(groups))
			for i, g := range groups {
				keys[i] = store.Key{Stream: name, Group: g}
			}
			return keys, nil
		},
		Describe: func(name string, k store.Key) map[string]any {
			return map[string]any{"stream_name": name, "group_id": k.Group, "item_id": k.Item}
		},
		History: m.checkHistory,
	}
	if e, ok := m.e.(contracts.Engine); ok {
		t.Call = contracts.CallAs(e)
	}
	return t
}

// Define defines d, a stream's contract given at start (YAML streams:),
// as stream::define would without migrate: a new version is checked
// against the mode, then against every item the stream stores and every
// event still in its groups' history, and refused if any breaks it. No
// notice goes to subscribers (none are connected yet). The error of a
// re-check names the stream's items as fn's.
func (m *Module) Define(ctx context.Context, fn string, d contract.Definition) error {
	t := m.evolveTarget()
	t.Call = nil // no migrate at start
	_, _, err := m.cfg.Contracts.Evolve(ctx, d, t, engine.Call{FunctionID: fn}, "")
	return err
}

// historyFrame is what a history check reads of an event frame.
type historyFrame struct {
	Seq   uint64 `json:"seq"`
	Group string `json:"groupId"`
	Event struct {
		Type  string          `json:"type"`
		Data  json.RawMessage `json:"data"`
		Event struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"event"`
	} `json:"event"`
}

// checkFrame checks one event a resuming client would receive: an item's
// new value (create, update) against the item schema, a sent event
// against its type's schema. A delete's value is the one removed, which
// a client drops: it is not checked.
func checkFrame(next *contract.Contract, frame []byte) (historyFrame, error) {
	var f historyFrame
	if err := json.Unmarshal(frame, &f); err != nil {
		return f, fmt.Errorf("unreadable event: %w", err)
	}
	switch f.Event.Type {
	case "create", "update":
		return f, next.ValidateItem(f.Event.Data)
	case "event":
		return f, next.ValidateEvent(f.Event.Event.Type, f.Event.Event.Data)
	}
	return f, nil
}

// checkHistory checks the events of the stream's groups still in this
// engine's history against next; with reset, it drops the history of the
// groups where one fails, so that clients resuming from it get a fresh
// snapshot instead.
func (m *Module) checkHistory(ctx context.Context, name string, next *contract.Contract, reset bool) (contracts.HistoryReport, error) {
	var r contracts.HistoryReport
	check := func(group string, frames [][]byte) bool {
		failed := false
		for _, fr := range frames {
			r.Checked++
			f, err := checkFrame(next, fr)
			if err == nil {
				continue
			}
			r.Failed++
			failed = true
			if len(r.First) < 10 {
				msg := err.Error()
				var ce *contract.Error
				if asContractError(err, &ce) {
					msg = ce.Message
				}
				r.First = append(r.First, fmt.Sprintf("group %q seq %d: %s", group, f.Seq, msg))
			}
		}
		return failed
	}
	if h := m.cfg.History; h != nil {
		groups, err := m.store.ListGroups(ctx, name)
		if err != nil {
			return r, err
		}
		for _, g := range groups {
			frames, err := sharedHeld(ctx, h, name, g)
			if err != nil {
				return r, err
			}
			if check(g, frames) && reset {
				if err := sharedReset(ctx, h, name, g); err != nil {
					return r, err
				}
				r.Reset = append(r.Reset, g)
			}
		}
		return r, nil
	}
	for g, frames := range m.hist.of(name) {
		if check(g, frames) && reset {
			m.hist.reset(name, g)
			r.Reset = append(r.Reset, g)
		}
	}
	slices.Sort(r.Reset)
	return r, nil
}

func asContractError(err error, ce **contract.Error) bool { return errors.As(err, ce) }

// HeldHistory is a shared History that can list every event it holds for
// a group and drop them (natsfanout.History): a stream's redefinition
// checks them, and a migrating one resets the groups that fail.
type HeldHistory interface {
	Held(ctx context.Context, stream, group string) ([][]byte, error)
	Reset(ctx context.Context, stream, group string) error
}

func sharedHeld(ctx context.Context, h History, stream, group string) ([][]byte, error) {
	if hh, ok := h.(HeldHistory); ok {
		return hh.Held(ctx, stream, group)
	}
	frames, _, ok, err := h.Since(ctx, stream, group, 0)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, engine.Errorf(codes.Conflict, "the history of group %q cannot be read in full to check it", group)
	}
	return frames, nil
}

func sharedReset(ctx context.Context, h History, stream, group string) error {
	if hh, ok := h.(HeldHistory); ok {
		return hh.Reset(ctx, stream, group)
	}
	return engine.Errorf(codes.Conflict, "the history of group %q cannot be reset", group)
}
