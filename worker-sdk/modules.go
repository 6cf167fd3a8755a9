package trine

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/trinehq/trine/triggerapi"
)

// The engine's module function ids and trigger types.
const (
	fnStateSet        = "state::set"
	fnStateGet        = "state::get"
	fnStateDelete     = "state::delete"
	fnStateUpdate     = "state::update"
	fnStateList       = "state::list"
	fnStateListGroups = "state::list_groups"
	fnPublish         = "publish"
	fnDurablePublish  = "iii::durable::publish"
	fnEnqueue         = "engine::queue::enqueue"

	// TriggerState fires for every state change (StateTriggerConfig).
	TriggerState = "state"
	// TriggerTopic runs a function for every message of a pubsub topic
	// (TopicConfig); iii calls it "subscribe".
	TriggerTopic = "subscribe"
	// TriggerDurableTopic runs a function for every message of a durable
	// topic, with retries (DurableTopicConfig).
	TriggerDurableTopic = "durable:subscriber"
	// TriggerCron runs a function on a schedule, once per fleet
	// (CronConfig).
	TriggerCron = "cron"
	// TriggerHTTP serves a function on an HTTP route (HTTPConfig).
	TriggerHTTP = "http"
)

// State is a typed view of one scope of the engine's server-side state
// (state::*): values T by key, never pushed to browsers. Create it with
// NewState; it is safe for concurrent use.
type State[T any] struct {
	s *Stream[T] // its decoding, with the scope as the name
}

// NewState returns a typed view of scope, called through w.
func NewState[T any](w *Worker, scope string) *State[T] {
	return &State[T]{s: &Stream[T]{w: w, name: scope, kind: "state"}}
}

// Scope is the state's scope.
func (st *State[T]) Scope() string { return st.s.Name() }

func (st *State[T]) key(key string) map[string]any {
	return map[string]any{"scope": st.s.name, "key": key}
}

func (st *State[T]) ready(what string) error {
	if st == nil || st.s == nil || st.s.w == nil {
		return errorf(CodeInvalidArgument, "state: %s on a State without a Worker; use NewState", what)
	}
	return nil
}

// Set stores v under key (state::set) and returns the change; Seq is the
// scope's sequence after it. WithIfSeq makes it conditional.
func (st *State[T]) Set(ctx context.Context, key string, v T, opts ...WriteOption) (Change[T], error) {
	if err := st.ready("set"); err != nil {
		return Change[T]{}, err
	}
	in := st.key(key)
	in["value"] = v
	o, err := writeOpts(opts)
	if err != nil {
		return Change[T]{}, err
	}
	if o.ifSeq != nil {
		in["if_seq"] = *o.ifSeq
	}
	return st.s.change(ctx, fmt.Sprintf("set %q", key), fnStateSet, in)
}

// Update applies ops to the value under key, all or none (state::update).
func (st *State[T]) Update(ctx context.Context, key string, ops []UpdateOp, opts ...WriteOption) (Change[T], error) {
	if err := st.ready("update"); err != nil {
		return Change[T]{}, err
	}
	if ops == nil {
		ops = []UpdateOp{}
	}
	in := st.key(key)
	in["ops"] = ops
	o, err := writeOpts(opts)
	if err != nil {
		return Change[T]{}, err
	}
	if o.ifSeq != nil {
		in["if_seq"] = *o.ifSeq
	}
	return st.s.change(ctx, fmt.Sprintf("update %q", key), fnStateUpdate, in)
}

// Delete removes the value under key (state::delete) and returns it, or nil
// and 0 when there was none.
func (st *State[T]) Delete(ctx context.Context, key string, opts ...WriteOption) (old *T, seq uint64, err error) {
	if err := st.ready("delete"); err != nil {
		return nil, 0, err
	}
	in := st.key(key)
	o, err := writeOpts(opts)
	if err != nil {
		return nil, 0, err
	}
	if o.ifSeq != nil {
		in["if_seq"] = *o.ifSeq
	}
	what := fmt.Sprintf("delete %q", key)
	var r changeResult
	if err := st.s.call(ctx, what, fnStateDelete, in, &r); err != nil {
		return nil, 0, err
	}
	if old, err = st.s.decodeOld(what, r.OldValue); err != nil {
		return nil, r.Seq, applied(err)
	}
	return old, r.Seq, nil
}

// Get reads the value under key (state::get); found is false when there is
// none.
func (st *State[T]) Get(ctx context.Context, key string) (v T, seq uint64, found bool, err error) {
	if err := st.ready("get"); err != nil {
		return v, 0, false, err
	}
	what := fmt.Sprintf("get %q", key)
	in := st.key(key)
	in["include_seq"] = true
	var r struct {
		Value json.RawMessage `json:"value"`
		Seq   *uint64         `json:"seq"`
	}
	if err := st.s.call(ctx, what, fnStateGet, in, &r); err != nil {
		return v, 0, false, err
	}
	if r.Seq == nil {
		return v, 0, false, st.s.badResult(what, fnStateGet, nil, fmt.Errorf("no seq"))
	}
	if *r.Seq == 0 {
		return v, 0, false, nil
	}
	v, err = st.s.decodeValue(what, r.Value)
	return v, *r.Seq, err == nil, err
}

// List reads one page of the scope's values in byte order of their keys
// (state::list); without WithLimit, all of them. Item.ID is the key.
func (st *State[T]) List(ctx context.Context, opts ...ListOption) (Page[T], error) {
	if err := st.ready("list"); err != nil {
		return Page[T]{}, err
	}
	o, err := listOpts(opts)
	if err != nil {
		return Page[T]{}, err
	}
	in := map[string]any{"scope": st.s.name, "after": ""}
	if o.after != nil {
		in["after"] = *o.after
	}
	if o.limit != nil {
		in["limit"] = *o.limit
	}
	var r struct {
		Items []struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
			Seq   uint64          `json:"seq"`
		} `json:"items"`
		Seq  uint64 `json:"seq"`
		More bool   `json:"more"`
	}
	if err := st.s.call(ctx, "list", fnStateList, in, &r); err != nil {
		return Page[T]{}, err
	}
	p := Page[T]{Items: make([]Item[T], len(r.Items)), Seq: r.Seq, More: r.More}
	for i, it := range r.Items {
		v, err := st.s.decodeValue(fmt.Sprintf("list: key %q", it.Key), it.Value)
		if err != nil {
			return Page[T]{}, err
		}
		p.Items[i] = Item[T]{ID: it.Key, Data: v, Seq: it.Seq}
	}
	return p, nil
}

// StateScopes lists the scopes that hold values (state::list_groups).
func StateScopes(ctx context.Context, w *Worker) ([]string, error) {
	var r struct {
		Groups []string `json:"groups"`
	}
	if err := callInto(ctx, w, fnStateListGroups, nil, &r); err != nil {
		return nil, err
	}
	if r.Groups == nil {
		r.Groups = []string{}
	}
	return r.Groups, nil
}

// Call calls function id with in and returns its JSON result decoded as
// Out (json.RawMessage keeps it as is).
func Call[Out any](ctx context.Context, w *Worker, id string, in any) (Out, error) {
	var out Out
	err := callInto(ctx, w, id, in, &out)
	return out, err
}

// callInto calls function id with in and decodes its JSON result into out
// (nil discards it).
func callInto(ctx context.Context, w *Worker, id string, in, out any) error {
	raw, err := w.Trigger(ctx, id, in)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return errorf(CodeInternal, "%s: the result %.200q does not decode into %T: %v", id, raw, out, err)
	}
	return nil
}

// Publish sends data to every function subscribed to topic across the
// fleet (publish); it is fire-and-forget, nothing is stored.
func (w *Worker) Publish(ctx context.Context, topic string, data any) error {
	return callInto(ctx, w, fnPublish, map[string]any{"topic": topic, "data": data}, nil)
}

// PublishDurable stores data on a durable topic (iii::durable::publish):
// every function with a TriggerDurableTopic trigger gets it, with retries.
func (w *Worker) PublishDurable(ctx context.Context, topic string, data any) (receiptID string, err error) {
	var r struct {
		ID string `json:"messageReceiptId"`
	}
	err = callInto(ctx, w, fnDurablePublish, map[string]any{"topic": topic, "data": data}, &r)
	return r.ID, err
}

// Enqueue puts a call of function fn with payload on a named queue
// (engine::queue::enqueue): the queue runs it later, with retries, and it
// survives the engine. It returns the job's receipt id once it is stored.
func (w *Worker) Enqueue(ctx context.Context, queue, fn string, payload any) (receiptID string, err error) {
	var r struct {
		ID string `json:"messageReceiptId"`
	}
	err = callInto(ctx, w, fnEnqueue, map[string]any{"queue": queue, "function_id": fn, "payload": payload}, &r)
	return r.ID, err
}

// StateTriggerConfig is the config of a TriggerState trigger; empty
// filters match every change.
type StateTriggerConfig struct {
	Scope               string `json:"scope,omitempty"`
	Key                 string `json:"key,omitempty"`
	ConditionFunctionID string `json:"condition_function_id,omitempty"`
}

// StateEvent is what a TriggerState trigger's function receives.
type StateEvent = triggerapi.StateEvent

// TopicConfig is the config of a TriggerTopic trigger.
type TopicConfig struct {
	Topic string `json:"topic"`
}

// QueueConfig tunes a durable topic subscriber's retries.
type QueueConfig struct {
	MaxRetries  int `json:"max_retries,omitempty"`
	Concurrency int `json:"concurrency,omitempty"`
	BackoffMs   int `json:"backoff_ms,omitempty"`
}

// DurableTopicConfig is the config of a TriggerDurableTopic trigger.
type DurableTopicConfig struct {
	Topic       string       `json:"topic"`
	QueueConfig *QueueConfig `json:"queue_config,omitempty"`
}

// CronConfig is the config of a TriggerCron trigger: six fields (sec min
// hour dom month dow) or seven with year.
type CronConfig struct {
	Expression          string `json:"expression"`
	ConditionFunctionID string `json:"condition_function_id,omitempty"`
}

// CronEvent is what a TriggerCron trigger's function receives.
type CronEvent = triggerapi.CronEvent

// HTTPConfig is the config of a TriggerHTTP trigger.
type HTTPConfig struct {
	APIPath               string   `json:"api_path"`
	HTTPMethod            string   `json:"http_method"`
	ConditionFunctionID   string   `json:"condition_function_id,omitempty"`
	MiddlewareFunctionIDs []string `json:"middleware_function_ids,omitempty"`
	MaxBodyBytes          int64    `json:"max_body_bytes,omitempty"`
}

// SubscribeTopic makes w serve functionID with handler and subscribes it
// to a pubsub topic (a TriggerTopic trigger with id "topic:"+functionID):
// each message reaches one replica of the function, its data decoded as T.
func SubscribeTopic[T any](ctx context.Context, w *Worker, topic, functionID string, handler func(ctx context.Context, data T) error) error {
	if handler == nil {
		return errorf(CodeInvalidArgument, "topic %q: no handler", topic)
	}
	if err := RegisterFunctionTyped(ctx, w, functionID, func(ctx context.Context, in T) (any, error) {
		return nil, handler(ctx, in)
	}); err != nil {
		return err
	}
	return w.RegisterTrigger(ctx, Trigger{ID: "topic:" + functionID, Type: TriggerTopic, FunctionID: functionID, Config: TopicConfig{Topic: topic}})
}
