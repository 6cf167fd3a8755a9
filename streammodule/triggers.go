package streammodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/tracing"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/streamapi"
)

// The StreamModule's trigger types.
const (
	TriggerStream = "stream"
	TriggerJoin   = "stream:join"
	TriggerLeave  = "stream:leave"
)

// triggerConfig is the config of all three types; stream_name is required
// for TriggerStream only. Empty filters match everything.
type triggerConfig struct {
	StreamName          *string `json:"stream_name"`
	GroupID             string  `json:"group_id"`
	ItemID              string  `json:"item_id"`
	ConditionFunctionID string  `json:"condition_function_id"`
	// Optional (stream:join only): when the trigger's worker disconnects,
	// the gate goes with it instead of denying every join it covers.
	Optional bool `json:"optional"`
}

func parseConfig(t engine.Trigger, needStream bool) (triggerConfig, error) {
	var c triggerConfig
	raw := bytes.TrimSpace(t.Config)
	if len(raw) == 0 || raw[0] != '{' {
		if !needStream && (len(raw) == 0 || bytes.Equal(raw, []byte("null"))) {
			return c, nil
		}
		return c, engine.Errorf(codes.InvalidArgument, "%s trigger %q: config must be a JSON object", t.Type, t.ID)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, engine.Errorf(codes.InvalidArgument, "%s trigger %q: bad config: %v", t.Type, t.ID, err)
	}
	if needStream && (c.StreamName == nil || *c.StreamName == "") {
		return c, engine.Errorf(codes.InvalidArgument, "%s trigger %q: config needs stream_name", t.Type, t.ID)
	}
	return c, engine.ValidateCondition(c.ConditionFunctionID)
}

func (c triggerConfig) matches(stream, group, item string) bool {
	return (c.StreamName == nil || *c.StreamName == "" || *c.StreamName == stream) &&
		(c.GroupID == "" || c.GroupID == group) &&
		(c.ItemID == "" || c.ItemID == item)
}

// streamTrigger delivers events to one function in commit order, through a
// bounded queue served by its own goroutine.
type streamTrigger struct {
	t    engine.Trigger
	cfg  triggerConfig
	q    chan triggerEvent
	stop chan struct{}
}

// triggerEvent is one change queued for a stream trigger: its frame and,
// when tracing is on, the context of the write that committed it
// (store.Change.Ctx), whose span the trigger's calls continue.
type triggerEvent struct {
	frame []byte
	write context.Context
}

// triggers are the module's triggers of the three types. Stream triggers
// are indexed by stream name, so that a change reaches the ones of its
// stream without going through the rest.
type triggers struct {
	m      *Module
	stream *engine.TriggerSet[*streamTrigger]
	join   *engine.TriggerSet[*gateTrigger]
	leave  *engine.TriggerSet[*gateTrigger] // and the goroutines running leave handlers
}

type gateTrigger struct {
	t   engine.Trigger
	cfg triggerConfig
	// orphaned, when set, is when the worker that registered this join
	// trigger went. The gate denies every join it covers until a trigger
	// of the same id is registered again, or an operator releases it
	// (engine::triggers::release).
	orphaned atomic.Pointer[time.Time]
}

// since is when g's worker went, or nil while it is there.
func (g *gateTrigger) since() *time.Time { return g.orphaned.Load() }

const moduleName = "the stream module"

func newTriggers(m *Module) *triggers {
	return &triggers{m: m,
		stream: engine.NewIndexedTriggerSet(moduleName, func(st *streamTrigger) string { return *st.cfg.StreamName }),
		join:   engine.NewTriggerSet[*gateTrigger](moduleName),
		leave:  engine.NewTriggerSet[*gateTrigger](moduleName)}
}

// provider adapts one trigger type to engine.TriggerProvider.
type provider struct {
	tr   *triggers
	kind string
}

func (tr *triggers) register(e *engine.Engine) error {
	for _, t := range []struct{ id, desc string }{
		{TriggerStream, "Runs a function for every change of a stream (config: stream_name, group_id?, item_id?, condition_function_id?)."},
		{TriggerJoin, "Runs a function when a browser subscribes; {\"unauthorized\": true} or an error denies the subscription."},
		{TriggerLeave, "Runs a function when a browser subscription ends."},
	} {
		if err := e.RegisterTriggerType(t.id, t.desc, provider{tr, t.id}); err != nil {
			return err
		}
	}
	return nil
}

// ReadFunction guards the types for connections under a listener policy: a
// stream trigger gets every change, which stream::get reads; join and leave
// triggers see every subscriber's auth context and decide who may read, so
// they take a connection that may write (stream::set).
func (p provider) ReadFunction(engine.Trigger) string {
	if p.kind == TriggerStream {
		return FnGet
	}
	return FnSet
}

func (p provider) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	cfg, err := parseConfig(t, p.kind == TriggerStream)
	if err != nil {
		return err
	}
	tr := p.tr
	switch p.kind {
	case TriggerJoin:
		return tr.join.Put(t.ID, &gateTrigger{t: t, cfg: cfg}, nil, nil)
	case TriggerLeave:
		return tr.leave.Put(t.ID, &gateTrigger{t: t, cfg: cfg}, nil, nil)
	}
	st := &streamTrigger{t: t, cfg: cfg, q: make(chan triggerEvent, tr.m.cfg.TriggerQueue), stop: make(chan struct{})}
	return tr.stream.Put(t.ID, st, func() { close(st.stop) }, func() { tr.m.deliver(st) })
}

// TriggerOrphaned implements engine.OrphanKeeper: a stream:join trigger
// whose worker left keeps denying what it covers, unless it is optional.
// Other trigger types go.
func (p provider) TriggerOrphaned(ctx context.Context, t engine.Trigger) error {
	if p.kind != TriggerJoin {
		return p.UnregisterTrigger(ctx, t)
	}
	tr := p.tr
	g, ok := tr.join.Get(t.ID)
	if !ok {
		return nil
	}
	if g.cfg.Optional {
		tr.join.RemoveIf(t.ID, func(cur *gateTrigger) bool { return cur == g })
		return nil
	}
	now := time.Now()
	g.orphaned.Store(&now)
	tr.m.log.Warn("stream:join trigger's worker disconnected: joins it covers are denied until it registers again or an operator releases it",
		"trigger_id", t.ID, "function_id", t.FunctionID, "release_with", engine.FnTriggersRelease)
	return nil
}

// Orphans implements engine.OrphanHolder: the stream:join triggers kept
// after their worker left.
func (p provider) Orphans() []engine.Orphan {
	if p.kind != TriggerJoin {
		return nil
	}
	var out []engine.Orphan
	for _, g := range p.tr.join.All() {
		if since := g.since(); since != nil {
			out = append(out, engine.Orphan{Trigger: g.t, Reason: fmt.Sprintf(
				"its worker disconnected at %s; every join it covers is denied until a trigger with this id registers again, or an operator releases it (%s, trine triggers release %s)",
				since.UTC().Format(time.RFC3339), engine.FnTriggersRelease, g.t.ID)})
		}
	}
	return out
}

// ReleaseOrphan implements engine.OrphanHolder: the orphaned stream:join
// trigger id stops guarding. A live trigger of that id stays.
func (p provider) ReleaseOrphan(_ context.Context, id string) (bool, error) {
	if p.kind != TriggerJoin {
		return false, nil
	}
	_, ok := p.tr.join.RemoveIf(id, func(g *gateTrigger) bool { return g.since() != nil })
	return ok, nil
}

func (p provider) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	switch p.kind {
	case TriggerJoin:
		p.tr.join.Remove(t.ID)
	case TriggerLeave:
		p.tr.leave.Remove(t.ID)
	default:
		p.tr.stream.Remove(t.ID)
	}
	return nil
}

// close stops every trigger and refuses new ones, then waits for the
// stream triggers' goroutines and the leave handlers.
func (tr *triggers) close() {
	tr.stream.Stop()
	tr.join.Stop()
	tr.leave.Stop()
	tr.stream.Close()
	tr.leave.Close()
}

// fire queues frame for the stream triggers that match c. It never blocks:
// a trigger whose queue is full loses the event, which is logged.
func (tr *triggers) fire(c store.Change, frame []byte) {
	ev := triggerEvent{frame: frame}
	if tr.m.tracer != nil {
		ev.write = c.Ctx
	}
	for _, st := range tr.stream.In(c.Stream) {
		if !st.cfg.matches(c.Stream, c.Group, c.Item) {
			continue
		}
		select {
		case st.q <- ev:
		default:
			tr.m.fails.Warn(st.t, "stream trigger queue full: event dropped",
				"function_id", st.t.FunctionID, "stream", c.Stream, "group", c.Group, "seq", c.Seq)
		}
	}
}

// deliver calls st's function with each queued event, one at a time.
func (m *Module) deliver(st *streamTrigger) {
	for {
		select {
		case <-st.stop:
			return
		case ev := <-st.q:
			ctx, span := m.startTrigger(st, ev.write)
			code := m.fireOne(ctx, st, ev.frame)
			if span != nil {
				tracing.End(span, code)
			}
		}
	}
}

// fireOne runs st's condition and function for one event, and returns the
// code of the failure ("" for none, or for a condition that skips it).
func (m *Module) fireOne(ctx context.Context, st *streamTrigger, frame []byte) string {
	if !m.condition(ctx, st.t, st.cfg.ConditionFunctionID, frame) {
		return ""
	}
	if _, err := m.e.Fire(ctx, st.t, engine.Call{FunctionID: st.t.FunctionID, Payload: frame, Metadata: st.t.Metadata}); err != nil {
		m.fails.Warn(st.t, "stream trigger failed", "function_id", st.t.FunctionID, "error", err)
		return string(engine.AsError(err).Code)
	}
	return ""
}

// condition runs a condition function: only a JSON false result or an
// error skips the handler.
func (m *Module) condition(ctx context.Context, t engine.Trigger, fn string, payload []byte) bool {
	ok, err := m.e.Condition(ctx, t, fn, engine.Call{Payload: payload})
	if err != nil {
		m.fails.Warn(t, "stream trigger condition failed", "function_id", fn, "error", err)
	}
	return ok
}

func matching(set *engine.TriggerSet[*gateTrigger], s streamapi.Subscription) []*gateTrigger {
	var out []*gateTrigger
	for _, g := range set.All() {
		if g.cfg.matches(s.StreamName, s.GroupID, s.Item()) {
			out = append(out, g)
		}
	}
	return out
}

// Join runs the stream:join handlers that match s, one after another. It
// fails closed: a handler error, a timeout, a result whose "unauthorized"
// member is anything but false or null, a condition function that fails
// (or is missing), or a trigger whose worker is gone denies the join.
func (m *Module) Join(ctx context.Context, s streamapi.Subscription) error {
	payload, err := json.Marshal(s)
	if err != nil {
		return err
	}
	for _, g := range matching(m.trig.join, s) {
		if g.since() != nil {
			return fmt.Errorf("join trigger %s is waiting for its worker", g.t.ID)
		}
		cctx, cancel := context.WithTimeout(ctx, m.cfg.JoinTimeout)
		ok, err := m.e.Condition(cctx, g.t, g.cfg.ConditionFunctionID, engine.Call{Payload: payload})
		cancel()
		if err != nil {
			return fmt.Errorf("join trigger %s: condition %s: %w", g.t.ID, g.cfg.ConditionFunctionID, err)
		}
		if !ok {
			continue // the handler does not apply
		}
		cctx, cancel = context.WithTimeout(ctx, m.cfg.JoinTimeout)
		out, err := m.e.Fire(cctx, g.t, engine.Call{FunctionID: g.t.FunctionID, Payload: payload, Metadata: g.t.Metadata})
		cancel()
		if err != nil {
			return fmt.Errorf("join handler %s: %w", g.t.FunctionID, err)
		}
		var r struct {
			Unauthorized json.RawMessage `json:"unauthorized"`
		}
		if json.Unmarshal(out, &r) == nil && !isNull(r.Unauthorized) && !bytes.Equal(bytes.TrimSpace(r.Unauthorized), []byte("false")) {
			return fmt.Errorf("join handler %s denied the subscription", g.t.FunctionID)
		}
	}
	return nil
}

// Leave runs the stream:leave handlers that match s in the background;
// their outcome is ignored.
func (m *Module) Leave(s streamapi.Subscription) {
	gs := matching(m.trig.leave, s)
	if len(gs) == 0 {
		return
	}
	payload, err := json.Marshal(s)
	if err != nil {
		return
	}
	m.trig.leave.Go(func() {
		for _, g := range gs {
			if !m.condition(context.Background(), g.t, g.cfg.ConditionFunctionID, payload) {
				continue
			}
			if _, err := m.e.Fire(context.Background(), g.t, engine.Call{FunctionID: g.t.FunctionID, Payload: payload, Metadata: g.t.Metadata}); err != nil {
				m.log.Debug("stream:leave handler failed", "function_id", g.t.FunctionID, "error", err)
			}
		}
	})
}
