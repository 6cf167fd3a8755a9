package store

import (
	"bytes"
	"testing"
)

// FuzzScan: any bytes scan without a panic into records, damage and a
// torn tail that cover the input, and the records read re-encode to a file
// that scans clean.
func FuzzScan(f *testing.F) {
	var good []byte
	for i, r := range []record{{kind: recPut, seq: 1, stream: "s", group: "g", item: "i", value: []byte(`{"a":1}`)},
		{kind: recDel, seq: 2, stream: "s", group: "g", item: "i"}, {kind: recEvent, seq: 3, stream: "", group: ".", item: "\x00"}} {
		good = appendRecord(good, r)
		f.Add(append([]byte(nil), good...))
		bad := append([]byte(nil), good...)
		bad[len(bad)/2] ^= byte(i + 1)
		f.Add(bad)
	}
	f.Add(append(append([]byte(nil), good...), good[:5]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := scan(b)
		var clean []byte
		for _, r := range s.records {
			clean = appendRecord(clean, r)
		}
		again := scan(clean)
		if len(again.records) != len(s.records) || len(again.damaged) != 0 || again.torn != nil {
			t.Fatalf("re-encoded records scan to %d records, %d damaged, torn %v", len(again.records), len(again.damaged), again.torn)
		}
		if s.torn == nil && len(s.damaged) == 0 && !bytes.Equal(clean, b) {
			t.Fatal("a clean scan does not re-encode to its input")
		}
	})
}
