package streammodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
)

// The functions that show how a stream's writes and items fare against
// its contract.
const (
	// FnRefusals answers a stream's recent contract refusals on this
	// engine.
	FnRefusals = "engine::streams::refusals"
	// FnValidate checks stored items of a group against the stream's
	// contract in force.
	FnValidate = "engine::streams::validate"
)

// MaxValidateItems bounds the item ids of one engine::streams::validate
// call.
const MaxValidateItems = 100

func (m *Module) registerContractViews(e *engine.Engine) error {
	return e.RegisterFunctions([]engine.Function{
		{ID: FnRefusals, Description: "A stream's recent writes its contract refused on this engine, newest first, without their values; {stream_name, limit?}.", Handle: m.refusals},
		{ID: FnValidate, Description: fmt.Sprintf("Check a group's stored items against the stream's contract in force: {stream_name, group_id, item_ids} (at most %d ids); answers the items that fail, with the pointer and rule.", MaxValidateItems), Handle: m.validate},
	})
}

// refused records err, the refusal by contract ct of a write by call c
// of function fn to k (event: a sent event's type), and returns err.
func (m *Module) refused(c engine.Call, fn string, ct *contract.Contract, k store.Key, event string, err error) error {
	r := contracts.Refusal{Function: fn, Group: k.Group, Item: k.Item, EventType: event, Error: contracts.RefusalText(fn, err),
		Caller: contracts.Caller{WorkerID: c.CallerID}}
	if ct != nil {
		r.Version = ct.Version
	}
	if w, ok := m.e.(interface {
		Worker(string) (engine.WorkerInfo, bool)
	}); ok && c.CallerID != "" {
		if info, ok := w.Worker(c.CallerID); ok {
			r.Caller.Name, r.Caller.Transport, r.Caller.Identity = info.Name, info.Transport, info.Identity
		}
	}
	m.cfg.Contracts.Refuse(k.Stream, r)
	return err
}

// readable checks the caller's right to read a stream's items: these
// functions show item ids and what is wrong with them, so a caller that
// may not call stream::get may not call them either.
func readable(c engine.Call) error { return c.Grant.CanCall(FnGet, nil) }

// refusals serves engine::streams::refusals.
func (m *Module) refusals(_ context.Context, c engine.Call) ([]byte, error) {
	in, stream, err := m.readStream(c)
	if err != nil {
		return nil, err
	}
	limit, err := in.Int("limit")
	if err != nil {
		return nil, err
	}
	if err := readable(c); err != nil {
		return nil, err
	}
	n := 0
	if limit != nil {
		if *limit < 0 {
			return nil, in.Invalid(errors.New("limit must not be negative"))
		}
		n = *limit
	}
	return engine.MarshalJSON(m.cfg.Contracts.Refusals(stream, n))
}

// ItemCheck is one item engine::streams::validate found failing.
type ItemCheck struct {
	ID    string `json:"item_id"`
	Error string `json:"error"`
}

// Validation is the result of engine::streams::validate.
type Validation struct {
	StreamName string `json:"stream_name"`
	GroupID    string `json:"group_id"`
	// Version is the contract in force the items were checked against; 0
	// when the stream has none (nothing fails then).
	Version uint64 `json:"version"`
	// Checked counts the items found and checked (ids of no item are
	// skipped).
	Checked int         `json:"checked"`
	Failing []ItemCheck `json:"failing"`
}

// validate serves engine::streams::validate: items stored before a
// contract, or kept by a definition in mode NONE, can fail the contract
// in force.
func (m *Module) validate(ctx context.Context, c engine.Call) ([]byte, error) {
	in, it, err := m.readItem(c, false)
	if err != nil {
		return nil, err
	}
	var ids []string
	if raw := in.Raw("item_ids"); raw == nil {
		return nil, in.Missing("item_ids")
	} else if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, in.Invalid(errors.New("item_ids must be an array of item ids"))
	}
	if len(ids) > MaxValidateItems {
		return nil, in.Invalid(fmt.Errorf("item_ids: %d ids, at most %d", len(ids), MaxValidateItems))
	}
	for _, id := range ids {
		if err := m.checkName("item_ids", id); err != nil {
			return nil, in.Invalid(err)
		}
	}
	if err := readable(c); err != nil {
		return nil, err
	}
	if op, err := m.custom(it.key.Stream, "get"); err != nil || op != "" {
		if err == nil {
			err = engine.Errorf(codes.InvalidArgument, "%s: %q is a custom stream: its worker keeps the items", FnValidate, it.key.Stream)
		}
		return nil, err
	}
	out := Validation{StreamName: it.key.Stream, GroupID: it.key.Group, Failing: []ItemCheck{}}
	ct, err := m.cfg.Contracts.For(ctx, FnValidate, it.key.Stream)
	if err != nil {
		return nil, err
	}
	if ct == nil {
		return engine.MarshalJSON(out)
	}
	out.Version = ct.Version
	for _, id := range ids {
		k := it.key
		k.Item = id
		v, _, err := m.store.Get(ctx, k)
		if err != nil {
			return nil, storeError(FnValidate, err)
		}
		if v.Value == nil {
			continue
		}
		out.Checked++
		if err := ct.ValidateItem(v.Value); err != nil {
			out.Failing = append(out.Failing, ItemCheck{ID: id, Error: contracts.RefusalText(FnValidate, err)})
		}
	}
	return engine.MarshalJSON(out)
}
