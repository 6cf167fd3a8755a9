package trine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
)

// The engine's stream function ids.
const (
	fnStreamSet        = "stream::set"
	fnStreamGet        = "stream::get"
	fnStreamDelete     = "stream::delete"
	fnStreamList       = "stream::list"
	fnStreamListGroups = "stream::list_groups"
	fnStreamSend       = "stream::send"
	fnStreamUpdate     = "stream::update"
)

// allPageSize is how many items Stream.All asks for per stream::list call.
const allPageSize = 500

// Stream is a typed view of one stream's items, read and written through the
// engine's stream::* functions. Values are T encoded as JSON. A Stream is
// safe for concurrent use.
type Stream[T any] struct {
	w    *Worker
	name string
	kind string // "stream", or "state" when a State uses it, for messages
}

// NewStream returns a typed view of the stream name, called through w.
// DefineStream returns one too, after making T the stream's contract.
func NewStream[T any](w *Worker, name string) *Stream[T] {
	return &Stream[T]{w: w, name: name, kind: "stream"}
}

// Name is the stream's name.
func (s *Stream[T]) Name() string {
	if s == nil {
		return ""
	}
	return s.name
}

// Item is one item of a stream. Seq is the sequence of the change that last
// wrote it.
type Item[T any] struct {
	ID   string `json:"id"`
	Data T      `json:"data"`
	Seq  uint64 `json:"seq"`
}

// Change is the result of a write: the value before it (nil when there was
// none), the value after it and the group sequence the write produced.
type Change[T any] struct {
	Old *T
	New T
	Seq uint64
}

// Page is one page of a group's items, in byte order of their ids, read at
// group sequence Seq. More reports that items follow the last one.
type Page[T any] struct {
	Items []Item[T]
	Seq   uint64
	More  bool
}

type writeOptions struct {
	ifSeq *uint64
}

type listOptions struct {
	limit *int
	after *string
}

type sendOptions struct {
	id *string
}

// keyInput is the part of the stream::* input that names an item.
type keyInput struct {
	StreamName string  `json:"stream_name"`
	GroupID    *string `json:"group_id,omitempty"`
	ItemID     *string `json:"item_id,omitempty"`
}

func (s *Stream[T]) key(group string) keyInput {
	return keyInput{StreamName: s.name, GroupID: &group}
}

func (s *Stream[T]) itemKey(group, id string) keyInput {
	return keyInput{StreamName: s.name, GroupID: &group, ItemID: &id}
}

// ready refuses calls on a Stream that NewStream did not make.
func (s *Stream[T]) ready(what string) error {
	if s == nil || s.w == nil {
		return errorf(CodeInvalidArgument, "stream: %s on a Stream without a Worker; use NewStream", what)
	}
	return nil
}

// call runs fn with in and decodes its result into out.
func (s *Stream[T]) call(ctx context.Context, what, fn string, in, out any) error {
	raw, err := s.w.Trigger(ctx, fn, in)
	if err != nil {
		return fmt.Errorf("%s %q: %s: %w", s.kind, s.name, what, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return s.badResult(what, fn, raw, err)
	}
	return nil
}

func (s *Stream[T]) badResult(what, fn string, raw []byte, err error) error {
	return errorf(CodeInternal, "%s %q: %s: unexpected %s result %.200q: %v", s.kind, s.name, what, fn, raw, err)
}

// decodeValue decodes v into a T.
func (s *Stream[T]) decodeValue(what string, v json.RawMessage) (T, error) {
	var t T
	if err := json.Unmarshal(v, &t); err != nil {
		return t, errorf(CodeInternal, "%s %q: %s: decode value %.200q: %v", s.kind, s.name, what, v, err)
	}
	return t, nil
}

// decodeOld decodes an old_value: nil when it is missing or null.
func (s *Stream[T]) decodeOld(what string, v json.RawMessage) (*T, error) {
	if isJSONNull(v) {
		return nil, nil
	}
	t, err := s.decodeValue(what, v)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// applied notes on a decoding error that the write itself happened.
func applied(err error) error {
	e := asError(err)
	return &Error{Code: e.Code, Message: e.Message + " (the write was applied)"}
}

func isJSONNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || bytes.Equal(v, []byte("null"))
}

// changeResult is the result of stream::set, stream::update and
// stream::delete.
type changeResult struct {
	OldValue json.RawMessage `json:"old_value"`
	NewValue json.RawMessage `json:"new_value"`
	Seq      uint64          `json:"seq"`
}

// change runs a write and decodes its result. When the write was applied
// but a value does not decode into T, it returns what did decode (always
// Seq) with the error.
func (s *Stream[T]) change(ctx context.Context, what, fn string, in any) (Change[T], error) {
	var r changeResult
	if err := s.call(ctx, what, fn, in, &r); err != nil {
		return Change[T]{}, err
	}
	ch := Change[T]{Seq: r.Seq}
	if r.NewValue == nil {
		return ch, s.badResult(what, fn, nil, fmt.Errorf("no new_value"))
	}
	var err error
	if ch.New, err = s.decodeValue(what, r.NewValue); err != nil {
		return ch, applied(err)
	}
	if ch.Old, err = s.decodeOld(what, r.OldValue); err != nil {
		return ch, applied(err)
	}
	return ch, nil
}

func writeOpts(opts []WriteOption) (writeOptions, error) {
	return applyOptions(writeOptions{}, opts, WriteOption.applyWrite)
}

func listOpts(opts []ListOption) (listOptions, error) {
	return applyOptions(listOptions{}, opts, ListOption.applyList)
}

// Set stores v as the item id of group (stream::set) and returns the change.
// An error with code internal after the write was applied (its message says
// so) means the old value does not decode into T; the Change then holds New
// and Seq.
func (s *Stream[T]) Set(ctx context.Context, group, id string, v T, opts ...WriteOption) (Change[T], error) {
	if err := s.ready("set"); err != nil {
		return Change[T]{}, err
	}
	o, err := writeOpts(opts)
	if err != nil {
		return Change[T]{}, err
	}
	in := struct {
		keyInput
		Data  T       `json:"data"`
		IfSeq *uint64 `json:"if_seq,omitempty"`
	}{s.itemKey(group, id), v, o.ifSeq}
	return s.change(ctx, fmt.Sprintf("set %q/%q", group, id), fnStreamSet, in)
}

// Update applies ops to the item id of group, all or none (stream::update),
// and returns the change. A missing item starts as {}. An op that does not
// apply fails with code invalid_argument and nothing is written. Results
// that do not decode into T are reported as for Set.
func (s *Stream[T]) Update(ctx context.Context, group, id string, ops []UpdateOp, opts ...WriteOption) (Change[T], error) {
	if err := s.ready("update"); err != nil {
		return Change[T]{}, err
	}
	o, err := writeOpts(opts)
	if err != nil {
		return Change[T]{}, err
	}
	if ops == nil {
		ops = []UpdateOp{}
	}
	in := struct {
		keyInput
		Ops   []UpdateOp `json:"ops"`
		IfSeq *uint64    `json:"if_seq,omitempty"`
	}{s.itemKey(group, id), ops, o.ifSeq}
	return s.change(ctx, fmt.Sprintf("update %q/%q", group, id), fnStreamUpdate, in)
}

// Delete removes the item id of group (stream::delete). It returns the
// removed value and the group sequence of the change, or nil and 0 when
// there was no such item. If the removed value does not decode into T, the
// error (code internal) says the delete was applied and seq is still set.
func (s *Stream[T]) Delete(ctx context.Context, group, id string, opts ...WriteOption) (old *T, seq uint64, err error) {
	if err := s.ready("delete"); err != nil {
		return nil, 0, err
	}
	o, err := writeOpts(opts)
	if err != nil {
		return nil, 0, err
	}
	what := fmt.Sprintf("delete %q/%q", group, id)
	in := struct {
		keyInput
		IfSeq *uint64 `json:"if_seq,omitempty"`
	}{s.itemKey(group, id), o.ifSeq}
	var r changeResult
	if err := s.call(ctx, what, fnStreamDelete, in, &r); err != nil {
		return nil, 0, err
	}
	old, err = s.decodeOld(what, r.OldValue)
	if err != nil {
		return nil, r.Seq, applied(err)
	}
	return old, r.Seq, nil
}

// getResult is the result of stream::get with include_seq.
type getResult struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
	Seq  *uint64         `json:"seq"`
}

// Get reads the item id of group (stream::get). found is false when the item
// does not exist.
func (s *Stream[T]) Get(ctx context.Context, group, id string) (item Item[T], found bool, err error) {
	if err := s.ready("get"); err != nil {
		return Item[T]{}, false, err
	}
	what := fmt.Sprintf("get %q/%q", group, id)
	in := struct {
		keyInput
		IncludeSeq bool `json:"include_seq"`
	}{s.itemKey(group, id), true}
	var r getResult
	var raw json.RawMessage
	if err := s.call(ctx, what, fnStreamGet, in, &raw); err != nil {
		return Item[T]{}, false, err
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Seq == nil {
		if err == nil {
			err = fmt.Errorf("no seq")
		}
		return Item[T]{}, false, s.badResult(what, fnStreamGet, raw, err)
	}
	if *r.Seq == 0 {
		return Item[T]{ID: id}, false, nil
	}
	v, err := s.decodeValue(what, r.Data)
	if err != nil {
		return Item[T]{}, false, err
	}
	return Item[T]{ID: r.ID, Data: v, Seq: *r.Seq}, true, nil
}

// listResult is the result of stream::list with include_ids.
type listResult struct {
	Items []struct {
		ID   string          `json:"id"`
		Data json.RawMessage `json:"data"`
		Seq  uint64          `json:"seq"`
	} `json:"items"`
	Seq  uint64 `json:"seq"`
	More bool   `json:"more"`
}

// List reads one page of group's items in byte order of their ids
// (stream::list). Without Limit it returns every item.
func (s *Stream[T]) List(ctx context.Context, group string, opts ...ListOption) (Page[T], error) {
	if err := s.ready("list"); err != nil {
		return Page[T]{}, err
	}
	o, err := listOpts(opts)
	if err != nil {
		return Page[T]{}, err
	}
	what := fmt.Sprintf("list %q", group)
	in := struct {
		keyInput
		IncludeIDs bool    `json:"include_ids"`
		Limit      *int    `json:"limit,omitempty"`
		After      *string `json:"after,omitempty"`
	}{s.key(group), true, o.limit, o.after}
	var r listResult
	if err := s.call(ctx, what, fnStreamList, in, &r); err != nil {
		return Page[T]{}, err
	}
	p := Page[T]{Items: make([]Item[T], len(r.Items)), Seq: r.Seq, More: r.More}
	for i, it := range r.Items {
		v, err := s.decodeValue(fmt.Sprintf("%s: item %q", what, it.ID), it.Data)
		if err != nil {
			return Page[T]{}, err
		}
		p.Items[i] = Item[T]{ID: it.ID, Data: v, Seq: it.Seq}
	}
	return p, nil
}

// All iterates over every item of group in byte order of their ids, calling
// List for 500 items at a time. Each page is read at its own
// sequence, so items written during the iteration may or may not appear. An
// error is yielded once, and ends the iteration.
func (s *Stream[T]) All(ctx context.Context, group string) iter.Seq2[Item[T], error] {
	return func(yield func(Item[T], error) bool) {
		opts := []ListOption{WithLimit(allPageSize)}
		for {
			p, err := s.List(ctx, group, opts...)
			if err != nil {
				yield(Item[T]{}, err)
				return
			}
			for _, it := range p.Items {
				if !yield(it, nil) {
					return
				}
			}
			if !p.More || len(p.Items) == 0 {
				return
			}
			opts = []ListOption{WithLimit(allPageSize), WithAfter(p.Items[len(p.Items)-1].ID)}
		}
	}
}

// Groups lists the ids of the stream's groups that hold items, sorted
// (stream::list_groups).
func (s *Stream[T]) Groups(ctx context.Context) ([]string, error) {
	if err := s.ready("list groups"); err != nil {
		return nil, err
	}
	var gs []string
	if err := s.call(ctx, "list groups", fnStreamListGroups, keyInput{StreamName: s.name}, &gs); err != nil {
		return nil, err
	}
	if gs == nil {
		gs = []string{}
	}
	return gs, nil
}

// Send publishes an event of eventType with data to group's subscribers
// (stream::send); nothing is stored. It returns the group sequence of the
// event.
func (s *Stream[T]) Send(ctx context.Context, group, eventType string, data any, opts ...SendOption) (seq uint64, err error) {
	if err := s.ready("send"); err != nil {
		return 0, err
	}
	o, err := applyOptions(sendOptions{}, opts, SendOption.applySend)
	if err != nil {
		return 0, err
	}
	in := struct {
		keyInput
		Type string  `json:"type"`
		Data any     `json:"data"`
		ID   *string `json:"id,omitempty"`
	}{s.key(group), eventType, data, o.id}
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if err := s.call(ctx, fmt.Sprintf("send %q to %q", eventType, group), fnStreamSend, in, &r); err != nil {
		return 0, err
	}
	return r.Seq, nil
}
