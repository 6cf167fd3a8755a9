package contracts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/streammodule/store"
)

// maxFailedIDs bounds the ids of failing items a refusal lists.
const maxFailedIDs = 10

// scanPageItems is how many items one page of the re-check reads.
const scanPageItems = 256

// passes is how many times a re-check lists the items: once in full,
// then once for those changed meanwhile.
const passes = 2

// Target is what a new version of a contract is checked against: the
// store of a module and the groups its items of one name live in.
type Target struct {
	// Store holds the items.
	Store store.Store
	// Groups lists the (Stream, Group) of every group holding name's
	// items.
	Groups func(ctx context.Context, name string) ([]store.Key, error)
	// MaxValueBytes bounds a migrated value (0: none).
	MaxValueBytes int
	// Describe names an item in messages and in the migrate call's input
	// ({stream_name, group_id, item_id} or {scope, key}).
	Describe func(name string, k store.Key) map[string]any
	// Call runs a migrate function under the definer's rights (nil: no
	// migrate).
	Call func(ctx context.Context, def engine.Call, fn string, payload []byte) ([]byte, error)
	// History, if set, checks the events still in name's history against
	// next; with reset, it drops the history that fails instead (clients
	// resuming from it get a fresh snapshot).
	History func(ctx context.Context, name string, next *contract.Contract, reset bool) (HistoryReport, error)
}

// HistoryReport says what a history check found.
type HistoryReport struct {
	Checked int      `json:"checked"`
	Failed  int      `json:"failed"`
	Reset   []string `json:"reset_groups,omitempty"`
	// First describes the first failing events ("group g seq 4: /title:
	// ..."), at most maxFailedIDs.
	First []string `json:"-"`
}

// Progress is what a definition's re-check did, in its answer.
type Progress struct {
	Checked  int            `json:"checked"`
	Bytes    int64          `json:"bytes"`
	Failed   int            `json:"failed"`
	Migrated int            `json:"migrated"`
	Retried  int            `json:"retried"`
	Passes   int            `json:"passes"`
	History  *HistoryReport `json:"history,omitempty"`
	Millis   int64          `json:"ms"`
}

// evolution is one re-check of name's items against next.
type evolution struct {
	t       Target
	limits  contract.Limits
	name    string
	migrate string
	def     engine.Call
	next    *contract.Contract
	start   time.Time
	p       Progress
	seen    map[store.Key]uint64 // items checked, at the sequence checked
	failed  []string             // first failing items, described
	left    int                  // items failing, migrate or not
	problem string               // the first failure's violation
	bound   string               // the time bound, described
}

// refused is a re-check's refusal: code, what it found, and that nothing
// of the definition was stored.
func (e *evolution) refused(code engine.Code, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return engine.Errorf(code, "%s: %s (checked %d items, %d bytes, in %s; %d failed, %d migrated); nothing was stored",
		e.def.FunctionID, msg, e.p.Checked, e.p.Bytes, time.Since(e.start).Round(time.Millisecond), e.p.Failed, e.p.Migrated)
}

// run waits for the writes checked without next (drain), then checks
// every stored item against next, migrating those that fail when a
// migrate function is given, then passes again over the items that
// changed meanwhile, and finally checks the history.
func (e *evolution) run(ctx context.Context, drain func(context.Context) error) error {
	e.bound = fmt.Sprintf("%s (--contract-define-timeout)", e.limits.DefineTimeout)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < e.limits.DefineTimeout {
		e.bound = fmt.Sprintf("%s (the deadline of the define call)", time.Until(dl).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(ctx, e.limits.DefineTimeout)
	defer cancel()
	if err := drain(ctx); err != nil {
		return e.fail(ctx, err)
	}
	groups, err := e.t.Groups(ctx, e.name)
	if err != nil {
		return e.fail(ctx, err)
	}
	for pass := 1; ; pass++ {
		e.p.Passes = pass
		changed := 0
		for _, g := range groups {
			n, err := e.group(ctx, g)
			if err != nil {
				return e.fail(ctx, err)
			}
			changed += n
		}
		if len(e.failed) > 0 {
			ids := strings.Join(e.failed, ", ")
			if e.left > len(e.failed) {
				ids += ", ..."
			}
			if e.migrate == "" {
				hint := "pass migrate to convert them"
				if e.t.Call == nil {
					hint = "convert them through stream::define with migrate, or delete them"
				}
				return e.refused(codes.Conflict, "%d stored items fail version %d: %s; first: %s; %s", e.left, e.next.Version, ids, e.problem, hint)
			}
			return e.refused(codes.Conflict, "migrate %q left items failing version %d: %s; first: %s", e.migrate, e.next.Version, ids, e.problem)
		}
		// Every write checked without the new version committed before
		// the first pass (drain), and later writes were checked against
		// both. The second pass reads again only what changed since the
		// first read it: a migrated item written meanwhile, or a write of
		// another engine of a fleet, which learns of the new version only
		// once it is stored.
		if changed == 0 || pass == passes {
			break
		}
		// Groups created meanwhile.
		if groups, err = e.t.Groups(ctx, e.name); err != nil {
			return e.fail(ctx, err)
		}
	}
	if e.t.History != nil {
		h, err := e.t.History(ctx, e.name, e.next, e.migrate != "")
		if err != nil {
			return e.fail(ctx, err)
		}
		e.p.History = &h
		if h.Failed > 0 && len(h.Reset) == 0 {
			return e.refused(codes.Conflict, "%d events in the history clients resume from fail version %d: %s; wait for them to age out of the history, or pass migrate (which also resets the failing groups' history: clients resuming from it get a fresh snapshot)", h.Failed, e.next.Version, strings.Join(h.First, "; "))
		}
	}
	e.p.Millis = time.Since(e.start).Milliseconds()
	return nil
}

// fail turns an error of the re-check into its refusal.
func (e *evolution) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || engine.AsError(err).Code == codes.DeadlineExceeded) {
		return e.refused(codes.DeadlineExceeded, "re-checking the stored items took over %s", e.bound)
	}
	var ee *engine.Error
	if errors.As(err, &ee) {
		return e.refused(ee.Code, "%s", ee.Message)
	}
	return e.refused(codes.Internal, "%v", err)
}

// group checks one group's items, page by page, and returns how many it
// had not seen at their current sequence.
func (e *evolution) group(ctx context.Context, g store.Key) (int, error) {
	changed := 0
	after := ""
	for {
		if err := ctx.Err(); err != nil {
			return changed, err
		}
		page, err := e.t.Store.List(ctx, g.Stream, g.Group, store.Range{After: after, Limit: scanPageItems})
		if err != nil {
			return changed, err
		}
		for _, it := range page.Items {
			after = it.ID
			k := store.Key{Stream: g.Stream, Group: g.Group, Item: it.ID}
			if seq, ok := e.seen[k]; ok && seq == it.Seq {
				continue
			}
			changed++
			if err := e.item(ctx, k, it); err != nil {
				return changed, err
			}
		}
		if !page.More || len(page.Items) == 0 {
			return changed, nil
		}
	}
}

// item checks one item and, if it fails and a migrate function is given,
// migrates it.
func (e *evolution) item(ctx context.Context, k store.Key, it store.Item) error {
	if _, ok := e.seen[k]; !ok {
		e.p.Checked++
		e.p.Bytes += int64(len(it.Value))
		if e.p.Checked > e.limits.DefineMaxItems || e.p.Bytes > e.limits.DefineMaxBytes {
			return engine.Errorf(codes.Conflict, "%q holds over %d items or %d bytes, more than a definition re-checks (--contract-define-max-items, --contract-define-max-bytes)", e.name, e.limits.DefineMaxItems, e.limits.DefineMaxBytes)
		}
	}
	e.seen[k] = it.Seq
	verr := e.next.ValidateItem(it.Value)
	if verr == nil {
		return nil
	}
	e.p.Failed++
	if e.migrate == "" {
		e.noteFailed(k, verr)
		return nil
	}
	for attempt := 0; ; attempt++ {
		seq, err := e.migrateOne(ctx, k, it)
		if err == nil {
			e.p.Migrated++
			e.seen[k] = seq
			return nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt == 2 {
			if errors.Is(err, store.ErrConflict) {
				err = fmt.Errorf("written %d times meanwhile", attempt+1)
			}
			var ce *contract.Error
			if errors.As(err, &ce) || !isEngineError(err) {
				e.noteFailed(k, err)
				return nil
			}
			return err
		}
		// Written meanwhile (checked against this version too, unless it
		// began before): read it again, migrate it if it still fails.
		e.p.Retried++
		cur, _, gerr := e.t.Store.Get(ctx, k)
		if gerr != nil {
			return gerr
		}
		e.seen[k] = cur.Seq
		if cur.Value == nil || e.next.ValidateItem(cur.Value) == nil {
			return nil
		}
		it = cur
	}
}

func isEngineError(err error) bool {
	var ee *engine.Error
	return errors.As(err, &ee) && ee.Code != codes.HandlerError
}

// migrateOne calls the migrate function on it, checks its result and
// writes it if the item is still at it.Seq.
func (e *evolution) migrateOne(ctx context.Context, k store.Key, it store.Item) (uint64, error) {
	in := e.t.Describe(e.name, k)
	in["data"] = it.Value
	in["version"] = e.next.Version
	payload, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	out, err := e.t.Call(ctx, e.def, e.migrate, payload)
	if err != nil {
		return 0, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		return 0, fmt.Errorf("migrate %q returned no JSON value: %w", e.migrate, err)
	}
	out = compact.Bytes()
	if e.t.MaxValueBytes > 0 && len(out) > e.t.MaxValueBytes {
		return 0, fmt.Errorf("migrate %q returned %d bytes, over the limit of %d", e.migrate, len(out), e.t.MaxValueBytes)
	}
	if err := e.next.ValidateItem(out); err != nil {
		return 0, err
	}
	seq := it.Seq
	ch, err := store.PutValue(ctx, e.t.Store, k, store.Cond{IfSeq: &seq}, out)
	if err != nil {
		return 0, err
	}
	return ch.Seq, nil
}

func (e *evolution) noteFailed(k store.Key, err error) {
	e.left++
	if len(e.failed) == 0 {
		var ce *contract.Error
		if errors.As(err, &ce) {
			e.problem = ce.Message
		} else {
			e.problem = err.Error()
		}
	}
	if len(e.failed) < maxFailedIDs {
		e.failed = append(e.failed, describe(e.t.Describe(e.name, k)))
	}
}

// describe writes an item's description as JSON.
func describe(d map[string]any) string {
	b, _ := json.Marshal(d)
	return string(b)
}

// Engine runs a migrate function: *engine.Engine is one.
type Engine interface {
	Trigger(ctx context.Context, c engine.Call) ([]byte, error)
	Authorize(g *engine.Grant, c engine.Call) (engine.Call, error)
}

// CallAs returns a Target.Call that runs a function on e with the rights
// of the definer: its grant (listener policy, RBAC) must allow the call,
// and the call goes through the middleware as any call of its would.
func CallAs(e Engine) func(ctx context.Context, def engine.Call, fn string, payload []byte) ([]byte, error) {
	return func(ctx context.Context, def engine.Call, fn string, payload []byte) ([]byte, error) {
		c, err := e.Authorize(def.Grant, engine.Call{FunctionID: fn, Payload: payload, CallerID: def.CallerID, Traceparent: def.Traceparent, Baggage: def.Baggage})
		if err != nil {
			return nil, engine.Errorf(engine.AsError(err).Code, "migrate %q: %s", fn, engine.AsError(err).Message)
		}
		return e.Trigger(ctx, c)
	}
}
