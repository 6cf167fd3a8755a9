package contract

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

func def(stream string, version uint64, mode Mode, item string, events map[string]string) Definition {
	d := Definition{Stream: stream, Version: version, Mode: mode, Item: json.RawMessage(item)}
	if events != nil {
		d.Events = map[string]json.RawMessage{}
		for k, v := range events {
			d.Events[k] = json.RawMessage(v)
		}
	}
	return d
}

// refusedWith checks err's code, sentinel and message.
func refusedWith(t *testing.T, err error, code string, kind error, want string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code() != code || !errors.Is(err, kind) {
		t.Fatalf("error = %v, want %s (%v)", err, code, kind)
	}
	if !strings.Contains(e.Message, want) {
		t.Fatalf("message = %q, want it to contain %q", e.Message, want)
	}
}

func versions(t *testing.T, r *Registry, stream string) []uint64 {
	t.Helper()
	h, err := r.History(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	var vs []uint64
	for _, d := range h {
		vs = append(vs, d.Version)
	}
	return vs
}

const (
	titleString = `{"type":"object","properties":{"title":{"type":"string"}}}`
	titleNumber = `{"type":"object","properties":{"title":{"type":"number"}}}`
)

func TestRegistryDefineAndValidate(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	ctx := t.Context()
	if c, err := r.Contract(ctx, "todos"); c != nil || err != nil {
		t.Fatalf("Contract(undefined) = %v, %v, want nil, nil", c, err)
	}
	if _, err := r.Define(ctx, def("todos", 1, "", titleString, nil)); err != nil {
		t.Fatalf("Define(v1) = %v", err)
	}
	c, err := r.Contract(ctx, "todos")
	if err != nil || c == nil || c.Version != 1 || c.Mode != Backward {
		t.Fatalf("Contract = %+v, %v, want version 1 under BACKWARD", c, err)
	}
	refusedWith(t, c.ValidateItem([]byte(`{"title":1}`)), CodeInvalidArgument, ErrInvalidValue, "/title: expected string, got number")
	if err := c.ValidateItem([]byte(`{"title":"x"}`)); err != nil {
		t.Fatalf("ValidateItem(valid) = %v", err)
	}
	if err := c.ValidateEvent("anything", []byte(`1`)); err != nil {
		t.Fatalf("ValidateEvent on a stream without event types = %v", err)
	}
}

func TestRegistryRefusesVersionNotAbove(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	ctx := t.Context()
	if _, err := r.Define(ctx, def("s", 3, "", titleString, nil)); err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint64{3, 2} {
		_, err := r.Define(ctx, def("s", v, "", `{}`, nil))
		refusedWith(t, err, CodeConflict, ErrVersion, "is not above the last, 3")
	}
	if got := versions(t, r, "s"); len(got) != 1 {
		t.Fatalf("history = %v after refusals, want [3]", got)
	}
}

func TestRegistryChecksMode(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	ctx := t.Context()
	if _, err := r.Define(ctx, def("s", 1, "", titleString, nil)); err != nil {
		t.Fatal(err)
	}
	_, err := r.Define(ctx, def("s", 2, "", titleNumber, nil))
	refusedWith(t, err, CodeConflict, ErrIncompatible, "incompatible with version 1 (BACKWARD): /title: type string -> number")
	if c, _ := r.Contract(ctx, "s"); c.Version != 1 {
		t.Fatalf("contract in force is version %d after a refusal, want 1", c.Version)
	}
	if _, err := r.Define(ctx, def("s", 2, None, titleNumber, nil)); err != nil {
		t.Fatalf("Define(v2, NONE) = %v", err)
	}
	// The mode carries over: version 3 is checked under NONE.
	if _, err := r.Define(ctx, def("s", 3, "", titleString, nil)); err != nil {
		t.Fatalf("Define(v3) = %v", err)
	}
	_, err = r.Define(ctx, def("s", 4, Forward, `{"type":"object","properties":{"title":{"type":"string"}},"required":["title"]}`, nil))
	if err != nil {
		t.Fatalf("Define(v4, FORWARD, required added) = %v", err)
	}
	_, err = r.Define(ctx, def("s", 5, "", titleString, nil))
	refusedWith(t, err, CodeConflict, ErrIncompatible, "(FORWARD): /title: required removed")
	if got := versions(t, r, "s"); len(got) != 4 {
		t.Fatalf("history = %v, want 4 versions", got)
	}
}

func TestRegistryTransitiveChecksEveryVersion(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	ctx := t.Context()
	max := func(n string) string { return `{"type":"integer","maximum":` + n + `}` }
	for _, d := range []Definition{def("s", 1, Backward, max("20"), nil), def("s", 2, None, max("10"), nil)} {
		if _, err := r.Define(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// 15 reads everything version 2 allowed, not everything version 1 did.
	_, err := r.Define(ctx, def("s", 3, BackwardTransitive, max("15"), nil))
	refusedWith(t, err, CodeConflict, ErrIncompatible, "incompatible with version 1 (BACKWARD_TRANSITIVE): (root): maximum 20 -> maximum 15")
	if _, err := r.Define(ctx, def("s", 3, Backward, max("15"), nil)); err != nil {
		t.Fatalf("Define(v3, BACKWARD) = %v", err)
	}
}

func TestRegistryEventTypes(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	ctx := t.Context()
	created := `{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`
	c, err := r.Define(ctx, def("s", 1, "", `{}`, map[string]string{"created": created}))
	if err != nil {
		t.Fatal(err)
	}
	refusedWith(t, c.ValidateEvent("deleted", []byte(`{}`)), CodeInvalidArgument, ErrUnknownEventType, `event type "deleted" is not declared by stream "s"`)
	refusedWith(t, c.ValidateEvent("created", []byte(`{"id":1}`)), CodeInvalidArgument, ErrInvalidValue, "/id: expected string, got number")
	if err := c.ValidateEvent("created", []byte(`{"id":"1"}`)); err != nil {
		t.Fatalf("ValidateEvent(valid) = %v", err)
	}
	// Adding a type: new readers read old events (BACKWARD), old readers
	// do not know the new type (FORWARD).
	two := map[string]string{"created": created, "deleted": `{}`}
	_, err = r.Define(ctx, def("s", 2, Forward, `{}`, two))
	refusedWith(t, err, CodeConflict, ErrIncompatible, `(FORWARD): events: event type "deleted" added`)
	if _, err := r.Define(ctx, def("s", 2, Backward, `{}`, two)); err != nil {
		t.Fatalf("Define(event type added, BACKWARD) = %v", err)
	}
	_, err = r.Define(ctx, def("s", 3, "", `{}`, map[string]string{"created": created}))
	refusedWith(t, err, CodeConflict, ErrIncompatible, `(BACKWARD): events: event type "deleted" removed`)
	_, err = r.Define(ctx, def("s", 3, "", `{}`, map[string]string{"created": `{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}`, "deleted": `{}`}))
	refusedWith(t, err, CodeConflict, ErrIncompatible, `event "created" /id: type string -> integer`)
	if _, err = r.Define(ctx, def("s", 3, "", `{}`, nil)); err != nil {
		t.Fatalf("Define(event types dropped, BACKWARD) = %v", err)
	}
	_, err = r.Define(ctx, def("untyped", 1, "", `{}`, nil))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Define(ctx, def("untyped", 2, "", `{}`, map[string]string{"created": created}))
	refusedWith(t, err, CodeConflict, ErrIncompatible, "events: any event type -> only the declared ones")
}

func TestRegistryRefusesBadDefinitions(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{MaxEventTypes: 2}))
	for name, tc := range map[string]struct {
		d    Definition
		kind error
		want string
	}{
		"no stream":         {def("", 1, "", `{}`, nil), ErrInvalidDefinition, "stream_name is required"},
		"version 0":         {def("s", 0, "", `{}`, nil), ErrInvalidDefinition, "version must be 1 to 9007199254740991"},
		"bad mode":          {def("s", 1, "SIDEWAYS", `{}`, nil), ErrInvalidDefinition, `mode "SIDEWAYS"`},
		"no item schema":    {def("s", 1, "", ``, nil), ErrInvalidDefinition, "item_schema is required"},
		"bad event type":    {def("s", 1, "", `{}`, map[string]string{"a\x00": `{}`}), ErrInvalidDefinition, "event type"},
		"too many events":   {def("s", 1, "", `{}`, map[string]string{"a": `{}`, "b": `{}`, "c": `{}`}), ErrInvalidDefinition, "3 event types, over the limit of 2"},
		"bad item schema":   {def("s", 1, "", `{"type":"text"}`, nil), ErrInvalidSchema, "item_schema: schema refused: not a valid draft 2020-12 schema: /type"},
		"bad event schema":  {def("s", 1, "", `{}`, map[string]string{"x": `{"$ref":"https://example.com/s.json"}`}), ErrInvalidSchema, `event_schemas["x"]: schema refused: /$ref`},
		"lowercase mode ok": {def("s", 1, "full", `{"type":1}`, nil), ErrInvalidSchema, "item_schema"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := r.Define(t.Context(), tc.d)
			refusedWith(t, err, CodeInvalidArgument, tc.kind, tc.want)
		})
	}
	if got := versions(t, r, "s"); len(got) != 0 {
		t.Fatalf("history = %v after refusals, want none", got)
	}
}

// TestRegistryConcurrentDefinitions: of many definitions of one version,
// from one registry or two sharing a store (two engines), one wins.
func TestRegistryConcurrentDefinitions(t *testing.T) {
	t.Parallel()
	store := NewMemoryStore()
	regs := []*Registry{NewRegistry(store, NewCompiler(Limits{})), NewRegistry(store, NewCompiler(Limits{}))}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 16 {
		wg.Go(func() {
			_, err := regs[i%2].Define(context.Background(), def("s", 1, "", titleString, nil))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won++
			} else if !errors.Is(err, ErrVersion) {
				t.Errorf("Define = %v, want success or ErrVersion", err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d definitions of version 1 won, want 1", won)
	}
	if got := versions(t, regs[0], "s"); len(got) != 1 {
		t.Fatalf("history = %v", got)
	}
}

func TestRegistryKeepsABoundedNumberOfContracts(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{MaxCachedContracts: 2}))
	ctx := t.Context()
	for _, s := range []string{"a", "b", "c"} {
		if _, err := r.Define(ctx, def(s, 1, "", titleString, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := r.current.len(); n != 2 {
		t.Fatalf("registry keeps %d contracts, want 2", n)
	}
	c, err := r.Contract(ctx, "a") // evicted: read back from the store
	if err != nil || c == nil || c.Version != 1 {
		t.Fatalf("Contract(a) = %+v, %v", c, err)
	}
}

// slowStore holds a read (Definitions or Last), once, until released: the read of
// an engine racing another engine's definition.
type slowStore struct {
	*MemoryStore
	once    sync.Once
	reading chan struct{}
	release chan struct{}
}

func (s *slowStore) Definitions(ctx context.Context, stream string) ([]Definition, error) {
	h, err := s.MemoryStore.Definitions(ctx, stream)
	s.hold()
	return h, err
}

func (s *slowStore) Last(ctx context.Context, stream string) (Definition, bool, error) {
	d, ok, err := s.MemoryStore.Last(ctx, stream)
	s.hold()
	return d, ok, err
}

func (s *slowStore) hold() {
	s.once.Do(func() {
		close(s.reading)
		<-s.release
	})
}

// TestForgetWinsOverAReadInFlight: a contract read from the store before
// another engine's definition, and kept after the registry was told to
// forget the stream, is not kept: the next lookup reads the new one.
func TestForgetWinsOverAReadInFlight(t *testing.T) {
	ctx := t.Context()
	st := &slowStore{MemoryStore: NewMemoryStore(), reading: make(chan struct{}), release: make(chan struct{})}
	if err := st.Append(ctx, def("s", 1, "", `{"type":"string"}`, nil), 0); err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(st, NewCompiler(Limits{}))
	done := make(chan *Contract)
	go func() {
		c, _ := r.Contract(ctx, "s")
		done <- c
	}()
	<-st.reading
	if err := st.Append(ctx, def("s", 2, "", `{}`, nil), 1); err != nil { // another engine
		t.Fatal(err)
	}
	r.Forget("s")
	close(st.release)
	if c := <-done; c == nil || c.Version != 1 {
		t.Fatalf("the read in flight gave %+v", c)
	}
	c, err := r.Contract(ctx, "s")
	if err != nil || c.Version != 2 {
		t.Fatalf("after Forget the registry answers version %d, %v; want 2", c.Version, err)
	}
}

// DefineWith runs its Verify only for a stream that has a contract, after
// the mode check and before storing; a Verify that fails stores nothing.
// A contract that Also requires a pending version accepts only what both
// accept.
func TestRegistryDefineWithVerify(t *testing.T) {
	t.Parallel()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	ctx := t.Context()
	called := 0
	verify := func(_ context.Context, next *Contract) error {
		called++
		if next.Version == 2 {
			return errors.New("stored items fail")
		}
		return nil
	}
	if _, err := r.DefineWith(ctx, def("todos", 1, "", titleString, nil), verify); err != nil || called != 0 {
		t.Fatalf("first version: %v, verify called %d times", err, called)
	}
	if _, err := r.DefineWith(ctx, def("todos", 2, None, titleNumber, nil), verify); err == nil || err.Error() != "stored items fail" || called != 1 {
		t.Fatalf("refused by verify: %v, verify called %d times", err, called)
	}
	if _, err := r.DefineWith(ctx, def("todos", 2, "", titleNumber, nil), verify); err == nil || called != 1 {
		t.Fatalf("a break of the mode must be refused before verify: %v, %d", err, called)
	}
	if got := versions(t, r, "todos"); len(got) != 1 {
		t.Fatalf("versions after refusals: %v", got)
	}
	old, _ := r.Contract(ctx, "todos")
	next, err := r.compile(def("todos", 3, None, `{"type":"object","required":["title"]}`, map[string]string{"typing": `{"type":"object"}`}))
	if err != nil {
		t.Fatal(err)
	}
	both := old.Also(next)
	refusedWith(t, both.ValidateItem([]byte(`{}`)), CodeInvalidArgument, ErrInvalidValue, "/title: required")
	refusedWith(t, both.ValidateItem([]byte(`{"title":1}`)), CodeInvalidArgument, ErrInvalidValue, "/title: expected string")
	if err := both.ValidateItem([]byte(`{"title":"x"}`)); err != nil {
		t.Fatal(err)
	}
	refusedWith(t, both.ValidateEvent("shout", []byte(`{}`)), CodeInvalidArgument, ErrUnknownEventType, `event type "shout" is not declared`)
	if err := old.ValidateItem([]byte(`{}`)); err != nil {
		t.Fatalf("Also changed the contract it was called on: %v", err)
	}
}

// Definitions are kept forever, and reading a stream's history (a
// define, engine::streams::schema, the console) reads all of them: a
// stream keeps at most MaxVersions of them and MaxHistoryBytes of their
// schemas. Past either a new version is refused and nothing is stored.
func TestRegistryBoundsAStreamsHistory(t *testing.T) {
	ctx := t.Context()
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{MaxVersions: 3}))
	for v := uint64(1); v <= 3; v++ {
		if _, err := r.Define(ctx, def("s", v, None, `{}`, nil)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := r.Define(ctx, def("s", 4, None, `{}`, nil))
	refusedWith(t, err, CodeConflict, ErrHistoryFull, `stream "s" has 3 definitions, the most a stream keeps`)
	if got := versions(t, r, "s"); len(got) != 3 {
		t.Fatalf("history %v after a refusal", got)
	}
	// The bound is each stream's.
	if _, err := r.Define(ctx, def("other", 1, None, `{}`, nil)); err != nil {
		t.Fatal(err)
	}

	big := `{"description":"` + strings.Repeat("x", 400) + `"}`
	r = NewRegistry(NewMemoryStore(), NewCompiler(Limits{MaxHistoryBytes: 1000}))
	for v := uint64(1); v <= 2; v++ {
		if _, err := r.Define(ctx, def("s", v, None, big, nil)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = r.Define(ctx, def("s", 3, None, `{}`, map[string]string{"e": big}))
	refusedWith(t, err, CodeConflict, ErrHistoryFull, "bytes of schemas, over the 1000 a stream's history keeps")
	if got := versions(t, r, "s"); len(got) != 2 {
		t.Fatalf("history %v after a refusal", got)
	}
	if _, err := r.Define(ctx, def("s", 3, None, `{}`, nil)); err != nil {
		t.Fatalf("a small definition within the bound: %v", err)
	}
}

// Versions are numbers every client reads exactly: JavaScript's are
// exact up to 2^53-1, so a higher version is refused rather than shown to
// browsers (the sync frame's contractVersion) as another.
func TestRegistryRefusesVersionsJavaScriptCannotRead(t *testing.T) {
	r := NewRegistry(NewMemoryStore(), NewCompiler(Limits{}))
	for _, v := range []uint64{1 << 53, 1<<64 - 1} {
		_, err := r.Define(t.Context(), def("s", v, "", `{}`, nil))
		refusedWith(t, err, CodeInvalidArgument, ErrInvalidDefinition, "version must be 1 to 9007199254740991")
	}
	if _, err := r.Define(t.Context(), def("s", 1<<53-1, "", `{}`, nil)); err != nil {
		t.Fatal(err)
	}
}
