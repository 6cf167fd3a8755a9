package contracts_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natstest"
	"github.com/trinehq/trine/internal/poll"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func def(stream string, version uint64, item string) contract.Definition {
	return contract.Definition{Stream: stream, Version: version, Item: []byte(item)}
}

func compiler() *contract.Compiler { return contract.NewCompiler(contract.Limits{}) }

// Definitions survive a restart of a file store, and the Set loaded from
// it enforces them.
func TestFileStoreDurable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() store.Store {
		st, err := store.OpenFile(dir, store.FileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	s := contracts.NewSet(st, contracts.Streams, compiler())
	if _, err := s.Define(ctx, def("todos", 1, `{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Define(ctx, def("todos", 2, `{}`)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = open()
	defer st.Close()
	s = contracts.NewSet(st, contracts.Streams, compiler())
	if c, _ := s.Lookup(ctx, "todos"); c != nil {
		t.Fatal("a contract before Load")
	}
	if err := s.Load(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := s.Lookup(ctx, "todos")
	if err != nil || c == nil || c.Version != 2 {
		t.Fatalf("after restart: %v %v", c, err)
	}
	h, err := s.History(ctx, "todos")
	if err != nil || len(h) != 2 || h[0].Version != 1 || string(h[0].Item) != `{"type":"object"}` {
		t.Fatalf("history %+v %v", h, err)
	}
	// The state namespace of the same store is apart.
	if c, _ := contracts.NewSet(st, contracts.State, compiler()).Lookup(ctx, "todos"); c != nil {
		t.Fatal("state sees the streams' contracts")
	}
}

// The store's Append compares and swaps the last version: of two appends
// after the same one, one wins.
func TestAppendCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	s := contracts.NewStore(store.NewMemory(store.Options{}), contracts.Streams)
	if err := s.Append(ctx, def("x", 1, `{}`), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, def("x", 3, `{}`), 0); !errors.Is(err, contract.ErrVersion) {
		t.Fatalf("append after a stale last: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Append(ctx, def("x", uint64(2+i), `{}`), 1) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errors.Is(err, contract.ErrVersion) {
			t.Fatal(err)
		}
	}
	h, err := s.Definitions(ctx, "x")
	if won != 1 || err != nil || len(h) != 2 {
		t.Fatalf("%d appends won, history %+v %v", won, h, err)
	}
}

// Two engines on one JetStream store: a definition made through one is
// in force on the other as soon as its watch delivers it, without any
// eviction, and the two never both win a version.
func TestJetStreamFleetSeesDefinitions(t *testing.T) {
	ctx := context.Background()
	ns := natstest.Start(t)
	type engine struct {
		set  *contracts.Set
		stop func()
	}
	var engines [2]engine
	for i := range engines {
		st, err := jsstore.Open(ctx, natstest.Connect(t, ns), jsstore.Config{Stream: "CONTRACTS", Prefix: "t.contracts"}, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		set := contracts.NewSet(st, contracts.Streams, compiler())
		if err := set.Load(ctx); err != nil {
			t.Fatal(err)
		}
		stop, err := st.Watch(ctx, func(k store.Key) {
			if k.Stream == contracts.Streams {
				set.Changed(k.Group)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		engines[i] = engine{set, stop}
		defer stop()
	}
	a, b := engines[0].set, engines[1].set
	// b looks first, so that it has "no contract" in mind.
	if c, err := b.Lookup(ctx, "todos"); c != nil || err != nil {
		t.Fatal(c, err)
	}
	if _, err := a.Define(ctx, def("todos", 1, `{"type":"object"}`)); err != nil {
		t.Fatal(err)
	}
	version := func(s *contracts.Set) func() error {
		return func() error {
			c, err := s.Lookup(ctx, "todos")
			if err != nil {
				return err
			}
			if c == nil {
				return errors.New("no contract yet")
			}
			return errors.New("version " + strconv.FormatUint(c.Version, 10))
		}
	}
	want := func(s *contracts.Set, v uint64) {
		t.Helper()
		poll.CheckFor(t, 10*time.Second, func() error {
			if err := version(s)(); err.Error() != "version "+strconv.FormatUint(v, 10) {
				return err
			}
			return nil
		})
	}
	want(b, 1)
	if _, err := b.Define(ctx, def("todos", 2, `{}`)); err != nil {
		t.Fatal(err)
	}
	want(a, 2)
	// Both define version 3 at once: one wins, the other is told.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*contracts.Set{a, b} {
		wg.Go(func() { _, errs[i] = s.Define(ctx, def("todos", 3, `{}`)) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("both or neither won: %v, %v", errs[0], errs[1])
	}
	h, err := a.History(ctx, "todos")
	if err != nil || len(h) != 3 {
		t.Fatalf("history %+v %v", h, err)
	}
}

// countingStore counts the bytes of item values its Gets return.
type countingStore struct {
	store.Store
	mu    sync.Mutex
	bytes int
}

func (c *countingStore) Get(ctx context.Context, k store.Key) (store.Item, uint64, error) {
	it, seq, err := c.Store.Get(ctx, k)
	c.mu.Lock()
	c.bytes += len(it.Value)
	c.mu.Unlock()
	return it, seq, err
}

func (c *countingStore) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.bytes
	c.bytes = 0
	return n
}

// A write to a stream whose contract is not in memory (another engine
// defined it, or the cache let it go) reads the contract in force, not
// every definition the stream ever had: a long history must not make
// every such write read all of it.
func TestLookupReadsOnlyTheContractInForce(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{Store: store.NewMemory(store.Options{})}
	s := contracts.NewSet(st, contracts.Streams, compiler())
	big := `{"description":"` + strings.Repeat("x", 10_000) + `"}`
	for v := uint64(1); v <= 50; v++ {
		if _, err := s.Define(ctx, contract.Definition{Stream: "s", Version: v, Mode: contract.None, Item: []byte(big)}); err != nil {
			t.Fatal(err)
		}
	}
	s.Changed("s") // as the fleet's watch does
	st.take()
	c, err := s.Lookup(ctx, "s")
	if err != nil || c == nil || c.Version != 50 {
		t.Fatalf("Lookup = %v, %v; want version 50", c, err)
	}
	if n := st.take(); n > 3*len(big) {
		t.Fatalf("reading the contract in force read %d bytes of a history of 50 definitions of %d bytes", n, len(big))
	}
}

// A definition larger than the JetStream store can hold in one message
// (NATS's max_payload, 1 MiB by default) is refused with a clear code, not
// internal, and nothing is stored.
func TestJetStreamRefusesADefinitionTooLargeToStore(t *testing.T) {
	ctx := context.Background()
	ns := natstest.Start(t)
	st, err := jsstore.Open(ctx, natstest.Connect(t, ns), jsstore.Config{Stream: "CONTRACTS", Prefix: "t.contracts"}, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := contracts.NewSet(st, contracts.Streams, compiler())
	big := `{"description":"` + strings.Repeat("x", 250_000) + `"}`
	d := contract.Definition{Stream: "s", Version: 1, Item: []byte(big), Events: map[string]json.RawMessage{}}
	for _, e := range []string{"a", "b", "c", "d", "e"} {
		d.Events[e] = json.RawMessage(big)
	}
	_, err = s.Define(ctx, d)
	if err == nil {
		t.Fatal("a 1.5 MB definition was stored")
	}
	if e := engine.AsError(contracts.Refused("stream::define", err, "nothing was stored")); e.Code == codes.Internal {
		t.Fatalf("refused as %s: %s", e.Code, e.Message)
	}
	if h, err := s.History(ctx, "s"); err != nil || len(h) != 0 {
		t.Fatalf("history after the refusal: %v, %v", h, err)
	}
}

// GET /schemas answers within maxBytes: past it, a page with "more", and
// ?after=<the last stream> reads on.
func TestSchemasDocumentIsPaged(t *testing.T) {
	ctx := context.Background()
	s := contracts.NewSet(store.NewMemory(store.Options{}), contracts.Streams, compiler())
	pad := strings.Repeat("x", 500)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		if _, err := s.Define(ctx, def(n, 1, `{"description":"`+pad+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	all := func(http.ResponseWriter, *http.Request) (func(string) bool, bool) {
		return func(string) bool { return true }, true
	}
	srv := httptest.NewServer(s.Handler(all, 2000))
	defer srv.Close()
	var names []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		res, err := http.Get(srv.URL + "/schemas?after=" + url.QueryEscape(after))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || len(b) > 2000 {
			t.Fatalf("GET /schemas: %d, %d bytes", res.StatusCode, len(b))
		}
		var page struct {
			Streams map[string]json.RawMessage `json:"streams"`
			More    bool                       `json:"more"`
		}
		if err := json.Unmarshal(b, &page); err != nil || len(page.Streams) == 0 {
			t.Fatalf("page %s: %v", b, err)
		}
		for _, n := range slices.Sorted(maps.Keys(page.Streams)) {
			names = append(names, n)
		}
		after = names[len(names)-1]
		if !page.More {
			break
		}
	}
	if strings.Join(names, ",") != "a,b,c,d,e" {
		t.Fatalf("pages gave %v", names)
	}
}
