package streammodule_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/moduletest"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/streamapi"
)

func wantTooLarge(t *testing.T, what string, err error) {
	t.Helper()
	e := engine.AsError(err)
	if e == nil || e.Code != codes.MessageTooLarge || !strings.Contains(e.Message, `"limit"`) || !strings.Contains(e.Message, `"after"`) {
		t.Fatalf("%s = %v, want message_too_large naming limit and after", what, err)
	}
}

// stream::list, list_groups and list_all refuse an unpaged answer past the
// list bound before building it, and page within it.
func TestListsBounded(t *testing.T) {
	const maxList, items, size = 256 << 10, 40, 100 << 10
	v := start(t, streammodule.Config{Lists: store.NewLists(maxList, 4*maxList)})
	data := `"` + strings.Repeat("x", size-2) + `"`
	for i := range items {
		v.must(t, streammodule.FnSet, fmt.Sprintf(`{"stream_name":"s","group_id":"big","item_id":"i%03d","data":%s}`, i, data))
	}
	before := moduletest.TotalAlloc()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := `{"stream_name":"s","group_id":"big"}`
			if i%2 == 1 {
				in = `{"stream_name":"s","group_id":"big","include_ids":true}`
			}
			_, err := v.call(t, streammodule.FnList, in)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		wantTooLarge(t, "unpaged stream::list", err)
	}
	grew := moduletest.TotalAlloc() - before
	t.Logf("16 refused unpaged stream::list calls allocated %d bytes", grew)
	if grew > 8<<20 {
		t.Fatalf("16 refused lists allocated %d bytes; building them costs 16 x 4 MB", grew)
	}
	// The gateways' whole-group snapshot is bounded the same way.
	_, err := v.call(t, streamapi.FnSnapshot, `{"stream_name":"s","group_id":"big"}`)
	if e := engine.AsError(err); e == nil || e.Code != codes.MessageTooLarge || !strings.Contains(e.Message, `"page_bytes"`) {
		t.Fatalf("whole-group snapshot of 4 MB = %v, want message_too_large naming page_bytes", err)
	}
	ids := moduletest.ReadPages(t, maxList, "id", func(after string) string {
		return v.must(t, streammodule.FnList, fmt.Sprintf(`{"stream_name":"s","group_id":"big","limit":1000,"after":%q}`, after))
	})
	if len(ids) != items {
		t.Fatalf("paging read %d items, want %d", len(ids), items)
	}

	// Names: 64 bytes hold a few groups or streams.
	v = start(t, streammodule.Config{Lists: store.NewLists(64, 64)})
	for i := range 10 {
		v.must(t, streammodule.FnSet, fmt.Sprintf(`{"stream_name":"stream-%d","group_id":"group-%d","item_id":"i","data":1}`, i, i))
		v.must(t, streammodule.FnSet, fmt.Sprintf(`{"stream_name":"s","group_id":"group-%d","item_id":"i","data":1}`, i))
	}
	_, err = v.call(t, streammodule.FnListGroups, `{"stream_name":"s"}`)
	wantTooLarge(t, "unpaged stream::list_groups", err)
	if out := v.must(t, streammodule.FnListGroups, `{"stream_name":"s","limit":2,"after":"group-0"}`); out != `{"groups":["group-1","group-2"],"more":true}` {
		t.Fatalf("paged stream::list_groups = %s", out)
	}
	_, err = v.call(t, streammodule.FnListAll, `{}`)
	wantTooLarge(t, "unpaged stream::list_all", err)
	out := v.must(t, streammodule.FnListAll, `{"limit":1,"after":"stream-8"}`)
	if out != `{"stream":[{"id":"stream-9","groups":["group-9"]}],"count":1,"more":false}` {
		t.Fatalf("paged stream::list_all = %s", out)
	}
}

// Lists being built at once hold at most the total: one more waits, and
// gets overloaded if its deadline comes first.
func TestListsBuiltAtOnceBounded(t *testing.T) {
	t.Parallel()
	l := store.NewLists(1<<10, 2<<10)
	hold := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		started := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = l.Build(t.Context(), "x::list", nil, func(int) ([]byte, error) {
				close(started)
				<-hold
				return nil, nil
			})
		}()
		<-started
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := l.Build(ctx, "x::list", nil, func(int) ([]byte, error) { return []byte("[]"), nil })
	if e := engine.AsError(err); e == nil || e.Code != codes.Overloaded || !strings.Contains(e.Message, "--max-list-bytes-total") {
		t.Fatalf("third list while two hold the total = %v, want overloaded naming --max-list-bytes-total", err)
	}
	close(hold)
	wg.Wait()
	if out, err := l.Build(t.Context(), "x::list", nil, func(int) ([]byte, error) { return []byte("[]"), nil }); err != nil || string(out) != "[]" {
		t.Fatalf("list after the others ended = %s, %v", out, err)
	}
}
