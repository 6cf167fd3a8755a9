package moduletest

import (
	"encoding/json"
	"runtime"
	"testing"
)

// TotalAlloc is the bytes the process has allocated so far, after a GC:
// the difference of two readings is what was built in between.
func TotalAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// ReadPages reads a paged list to its end: page(after) returns one page,
// {"items": [{idField: …}, …], "more": bool}, of at most maxBytes; after
// is "" first, then the last id of the page before, while more is true.
// It returns every id read.
func ReadPages(t testing.TB, maxBytes int, idField string, page func(after string) string) []string {
	t.Helper()
	var ids []string
	for after, n := "", 0; ; n++ {
		out := page(after)
		if len(out) > maxBytes {
			t.Fatalf("page of %d bytes, the bound is %d", len(out), maxBytes)
		}
		var p struct {
			Items []map[string]json.RawMessage
			More  bool
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatal(err)
		}
		for _, it := range p.Items {
			var id string
			if err := json.Unmarshal(it[idField], &id); err != nil {
				t.Fatalf("item without a string %s: %v", idField, err)
			}
			ids = append(ids, id)
		}
		if !p.More {
			return ids
		}
		if len(p.Items) == 0 || n > 1e6 {
			t.Fatalf("page %d says more but brings nothing", n)
		}
		after = ids[len(ids)-1]
	}
}
