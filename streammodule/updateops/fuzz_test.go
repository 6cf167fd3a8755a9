package updateops_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/trinehq/trine/streammodule/updateops"
)

func FuzzApply(f *testing.F) {
	seeds := []struct {
		current string
		exists  bool
		ops     string
	}{
		{`{"n":1,"s":"a","l":[]}`, true, `[{"type":"increment","path":"n","by":1},{"type":"append","path":"s","value":"b"},{"type":"append","path":"l","value":[1]}]`},
		{``, false, `[{"type":"increment","path":"","by":9223372036854775807},{"type":"increment","path":"","by":9223372036854775807}]`},
		{`{"a":null}`, true, `[{"type":"merge","path":["a","b"],"value":{"c":{"d":[1]}}},{"type":"append","path":["a","b","e"],"value":"x"}]`},
		{`[1,2]`, true, `[{"type":"append","value":3},{"type":"merge","value":{"k":1}},{"type":"set","path":"","value":{"a":1.5e300}}]`},
		{`{"f":1e400,"g":-0.0,"h":18446744073709551615}`, true, `[{"type":"decrement","path":"g","by":-9223372036854775808},{"type":"increment","path":"h","by":-1},{"type":"remove","path":"f"}]`},
		{`"str"`, true, `[{"type":"remove","path":""},{"type":"append","path":"","value":"x"},{"type":"set","path":"a","value":1}]`},
		{`{"a":{}}`, true, `[{"type":"merge","path":"__proto__","value":{}},{"type":"set","path":"a.b","value":null}]`},
	}
	for _, s := range seeds {
		f.Add(s.current, s.exists, s.ops)
	}
	f.Fuzz(func(t *testing.T, current string, exists bool, rawOps string) {
		ops, err := updateops.Decode(json.RawMessage(rawOps))
		if err != nil {
			return
		}
		in := []byte(current)
		got, err := updateops.Apply(in, exists, ops)
		if !bytes.Equal(in, []byte(current)) {
			t.Fatalf("Apply modified current: %q", in)
		}
		if err != nil {
			var opErr *updateops.OpError
			if errors.As(err, &opErr) {
				if opErr.Index < 0 || opErr.Index >= len(ops) || opErr.Code == "" {
					t.Fatalf("bad OpError %+v for %d ops", opErr, len(ops))
				}
			} else if !exists || json.Valid(in) {
				t.Fatalf("unexpected error for a valid current value: %v", err)
			}
			if got != nil {
				t.Fatalf("got value %s along with error %v", got, err)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("Apply returned invalid JSON %q", got)
		}
		again, err := updateops.Apply(in, exists, ops)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("second Apply gave %s, %v; first gave %s", again, err, got)
		}
	})
}
