package statemodule_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/statemodule"
	"github.com/trinehq/trine/streammodule/store"
)

// An unpaged state::list whose answer would pass the list bound is refused
// before it is built, pointing to limit and after: sixteen at once
// allocate a fraction of one answer, and paging reads every value.
func TestListTooLargeRefusedBeforeBuilt(t *testing.T) {
	const maxList, values, size = 256 << 10, 40, 100 << 10
	v := start(t, statemodule.Config{Lists: store.NewLists(maxList, 4*maxList)})
	value := `"` + strings.Repeat("x", size-2) + `"`
	for i := range values {
		v.must(t, statemodule.FnSet, fmt.Sprintf(`{"scope":"big","key":"k%03d","value":%s}`, i, value))
	}
	before := moduletest.TotalAlloc()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.call(statemodule.FnList, `{"scope":"big"}`)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e := engine.AsError(err)
		if e == nil || e.Code != codes.MessageTooLarge || !strings.Contains(e.Message, `"limit"`) || !strings.Contains(e.Message, `"after"`) {
			t.Fatalf("unpaged state::list of %d bytes = %v, want message_too_large naming limit and after", values*size, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("16 refusals took %v", d)
	}
	// Building the answers would allocate 16 x 4 MB at least.
	grew := moduletest.TotalAlloc() - before
	t.Logf("16 refused unpaged state::list calls allocated %d bytes", grew)
	if grew > 8<<20 {
		t.Fatalf("16 refused lists allocated %d bytes", grew)
	}

	// Pages of limit 5 (500 KB asked) come back within the bound, and
	// bring every value.
	keys := moduletest.ReadPages(t, maxList, "key", func(after string) string {
		return v.must(t, statemodule.FnList, fmt.Sprintf(`{"scope":"big","limit":5,"after":%q}`, after))
	})
	if len(keys) != values || keys[0] != "k000" || keys[values-1] != fmt.Sprintf("k%03d", values-1) {
		t.Fatalf("paging read %d keys (%v…), want %d", len(keys), keys[:min(3, len(keys))], values)
	}
}

// state::list_groups pages the same way, and refuses an unpaged answer
// past the bound.
func TestListGroupsPaged(t *testing.T) {
	t.Parallel()
	v := start(t, statemodule.Config{Lists: store.NewLists(64, 64)})
	for i := range 10 {
		v.must(t, statemodule.FnSet, fmt.Sprintf(`{"scope":"scope-%d","key":"k","value":1}`, i))
	}
	_, err := v.call(statemodule.FnListGroups, `{}`)
	wantCode(t, err, codes.MessageTooLarge)
	wantJSON(t, v.must(t, statemodule.FnListGroups, `{"limit":2}`), `{"groups":["scope-0","scope-1"],"more":true}`)
	wantJSON(t, v.must(t, statemodule.FnListGroups, `{"limit":2,"after":"scope-8"}`), `{"groups":["scope-9"],"more":false}`)
}
