package updateops_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/trinehq/trine/streammodule/updateops"
)

// canon re-encodes JSON the way Apply does: compact, sorted keys, numbers
// kept as written.
func canon(t *testing.T, s string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad JSON in test %q: %v", s, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func decode(t *testing.T, ops string) []updateops.Op {
	t.Helper()
	decoded, err := updateops.Decode(json.RawMessage(ops))
	if err != nil {
		t.Fatalf("Decode(%s): %v", ops, err)
	}
	return decoded
}

// nest returns n objects nested in each other: {"a":{"a":...{}}}.
func nest(n int) string {
	return strings.Repeat(`{"a":`, n-1) + "{}" + strings.Repeat("}", n-1)
}

// manyKeys returns an object with n keys.
func manyKeys(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteByte('}')
	return b.String()
}

// segs returns a JSON array of n segments.
func segs(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("%q", fmt.Sprintf("s%d", i))
	}
	return "[" + strings.Join(s, ",") + "]"
}

type applyCase struct {
	name    string
	current string // stored value; "" means the item is missing
	ops     string
	want    string // expected value, when code is ""
	code    string // expected OpError code
	index   int    // expected OpError index
}

func runApply(t *testing.T, cases []applyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops := decode(t, tc.ops)
			exists := tc.current != ""
			got, err := updateops.Apply(json.RawMessage(tc.current), exists, ops)
			if tc.code != "" {
				var opErr *updateops.OpError
				if !errors.As(err, &opErr) {
					t.Fatalf("got value %s, err %v; want OpError %s", got, err, tc.code)
				}
				if opErr.Code != tc.code || opErr.Index != tc.index {
					t.Fatalf("got OpError %v; want code %s at index %d", opErr, tc.code, tc.index)
				}
				if opErr.Message == "" {
					t.Fatal("OpError has no message")
				}
				if got != nil {
					t.Fatalf("got value %s along with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if want := canon(t, tc.want); string(got) != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestSet(t *testing.T) {
	runApply(t, []applyCase{
		{name: "field", current: `{"a":1}`, ops: `[{"type":"set","path":"b","value":{"x":[1,2]}}]`, want: `{"a":1,"b":{"x":[1,2]}}`},
		{name: "overwrite", current: `{"a":{"deep":1}}`, ops: `[{"type":"set","path":"a","value":2}]`, want: `{"a":2}`},
		{name: "dotted key is literal", current: `{"a":{"b":1}}`, ops: `[{"type":"set","path":"a.b","value":2}]`, want: `{"a":{"b":1},"a.b":2}`},
		{name: "field without value is null", current: `{}`, ops: `[{"type":"set","path":"a"}]`, want: `{"a":null}`},
		{name: "on missing item", ops: `[{"type":"set","path":"a","value":"x"}]`, want: `{"a":"x"}`},
		{name: "root replace", current: `{"a":1}`, ops: `[{"type":"set","path":"","value":[1,"two"]}]`, want: `[1,"two"]`},
		{name: "root without value is null", current: `{"a":1}`, ops: `[{"type":"set","path":""}]`, want: `null`},
		{name: "root on missing item", ops: `[{"type":"set","path":"","value":7}]`, want: `7`},
		{name: "root on non-object root", current: `"s"`, ops: `[{"type":"set","path":"","value":{"a":1}}]`, want: `{"a":1}`},
		{name: "non-object root", current: `[1]`, ops: `[{"type":"set","path":"a","value":1}]`, code: "set.target_not_object"},
		{name: "null root", current: `null`, ops: `[{"type":"set","path":"a","value":1}]`, code: "set.target_not_object"},
		{name: "after root replaced", current: `{}`, ops: `[{"type":"set","path":"","value":5},{"type":"set","path":"a","value":1}]`, code: "set.target_not_object", index: 1},
	})
}

func TestMerge(t *testing.T) {
	runApply(t, []applyCase{
		{name: "root shallow", current: `{"a":{"x":1},"b":1}`, ops: `[{"type":"merge","value":{"a":{"y":2},"c":3}}]`, want: `{"a":{"y":2},"b":1,"c":3}`},
		{name: "root empty string path", current: `{"b":1}`, ops: `[{"type":"merge","path":"","value":{"a":1}}]`, want: `{"a":1,"b":1}`},
		{name: "root empty array path", current: `{"b":1}`, ops: `[{"type":"merge","path":[],"value":{"a":1}}]`, want: `{"a":1,"b":1}`},
		{name: "root null path", current: `{"b":1}`, ops: `[{"type":"merge","path":null,"value":{"a":1}}]`, want: `{"a":1,"b":1}`},
		{name: "on missing item", ops: `[{"type":"merge","value":{"a":1}}]`, want: `{"a":1}`},
		{name: "empty value", current: `{"b":1}`, ops: `[{"type":"merge","value":{}}]`, want: `{"b":1}`},
		{name: "root merge on array root is a no-op", current: `[1,2]`, ops: `[{"type":"merge","value":{"a":1}}]`, want: `[1,2]`},
		{name: "root merge on null root is a no-op", current: `null`, ops: `[{"type":"merge","path":"","value":{"a":1}}]`, want: `null`},
		{name: "root merge on number root is a no-op", current: `5`, ops: `[{"type":"merge","path":[],"value":{"a":1}}]`, want: `5`},
		{name: "string path", current: `{"a":{"x":1}}`, ops: `[{"type":"merge","path":"a","value":{"y":2}}]`, want: `{"a":{"x":1,"y":2}}`},
		{name: "dotted string path is one segment", current: `{"a":{"b":{"x":1}}}`, ops: `[{"type":"merge","path":"a.b","value":{"y":2}}]`, want: `{"a":{"b":{"x":1}},"a.b":{"y":2}}`},
		{name: "dotted array segment is literal", current: `{}`, ops: `[{"type":"merge","path":["a.b","c"],"value":{"y":2}}]`, want: `{"a.b":{"c":{"y":2}}}`},
		{name: "nested creates intermediates", current: `{"keep":1}`, ops: `[{"type":"merge","path":["a","b","c"],"value":{"x":1}}]`, want: `{"a":{"b":{"c":{"x":1}}},"keep":1}`},
		{name: "nested on missing item", ops: `[{"type":"merge","path":["a","b"],"value":{"x":1}}]`, want: `{"a":{"b":{"x":1}}}`},
		{name: "nested into existing object", current: `{"a":{"b":{"x":1,"y":1}}}`, ops: `[{"type":"merge","path":["a","b"],"value":{"y":2}}]`, want: `{"a":{"b":{"x":1,"y":2}}}`},
		{name: "replaces null intermediate", current: `{"a":null}`, ops: `[{"type":"merge","path":["a","b"],"value":{"x":1}}]`, want: `{"a":{"b":{"x":1}}}`},
		{name: "replaces scalar intermediate", current: `{"a":"s"}`, ops: `[{"type":"merge","path":["a","b"],"value":{"x":1}}]`, want: `{"a":{"b":{"x":1}}}`},
		{name: "replaces array intermediate", current: `{"a":[1,2,3]}`, ops: `[{"type":"merge","path":["a","b"],"value":{"x":1}}]`, want: `{"a":{"b":{"x":1}}}`},
		{name: "replaces non-object leaf", current: `{"a":7}`, ops: `[{"type":"merge","path":"a","value":{"x":1}}]`, want: `{"a":{"x":1}}`},
		{name: "replaces array root on path", current: `[1,2]`, ops: `[{"type":"merge","path":["a"],"value":{"x":1}}]`, want: `{"a":{"x":1}}`},
		{name: "replaces scalar root on string path", current: `7`, ops: `[{"type":"merge","path":"a","value":{"x":1}}]`, want: `{"a":{"x":1}}`},
		{name: "replaces null root on path", current: `null`, ops: `[{"type":"merge","path":["a","b"],"value":{"x":1}}]`, want: `{"a":{"b":{"x":1}}}`},
		{name: "value depth 16 ok", current: `{}`, ops: `[{"type":"merge","value":` + nest(16) + `}]`, want: nest(16)},
		{name: "value 1024 keys ok", current: `{}`, ops: `[{"type":"merge","value":` + manyKeys(1024) + `}]`, want: manyKeys(1024)},
		{name: "nested proto key in value ok", current: `{}`, ops: `[{"type":"merge","value":{"a":{"__proto__":1}}}]`, want: `{"a":{"__proto__":1}}`},
		{name: "value array", current: `{}`, ops: `[{"type":"merge","value":[1]}]`, code: "merge.value.not_an_object"},
		{name: "value null", current: `{}`, ops: `[{"type":"merge","value":null}]`, code: "merge.value.not_an_object"},
		{name: "value string", current: `{}`, ops: `[{"type":"merge","path":["a"],"value":"x"}]`, code: "merge.value.not_an_object"},
		{name: "value on non-object root still checked", current: `[1]`, ops: `[{"type":"merge","value":5}]`, code: "merge.value.not_an_object"},
		{name: "value too many keys", current: `{}`, ops: `[{"type":"merge","value":` + manyKeys(1025) + `}]`, code: "merge.value.too_many_keys"},
		{name: "value too deep", current: `{}`, ops: `[{"type":"merge","value":` + nest(17) + `}]`, code: "merge.value.too_deep"},
		{name: "value too deep through arrays", current: `{}`, ops: `[{"type":"merge","value":{"a":` + strings.Repeat("[", 16) + strings.Repeat("]", 16) + `}}]`, code: "merge.value.too_deep"},
		{name: "value __proto__", current: `{}`, ops: `[{"type":"merge","value":{"__proto__":{"x":1}}}]`, code: "merge.value.proto_polluted"},
		{name: "value constructor", current: `{}`, ops: `[{"type":"merge","value":{"constructor":1}}]`, code: "merge.value.proto_polluted"},
		{name: "value prototype", current: `{}`, ops: `[{"type":"merge","path":["a"],"value":{"ok":1,"prototype":1}}]`, code: "merge.value.proto_polluted"},
	})
}

func TestIncrementDecrement(t *testing.T) {
	runApply(t, []applyCase{
		{name: "increment field", current: `{"n":1}`, ops: `[{"type":"increment","path":"n","by":2}]`, want: `{"n":3}`},
		{name: "decrement field", current: `{"n":1}`, ops: `[{"type":"decrement","path":"n","by":3}]`, want: `{"n":-2}`},
		{name: "negative by", current: `{"n":1}`, ops: `[{"type":"increment","path":"n","by":-5},{"type":"decrement","path":"n","by":-1}]`, want: `{"n":-3}`},
		{name: "increment missing field", current: `{}`, ops: `[{"type":"increment","path":"n","by":4}]`, want: `{"n":4}`},
		{name: "decrement missing field", current: `{}`, ops: `[{"type":"decrement","path":"n","by":4}]`, want: `{"n":-4}`},
		{name: "decrement missing field by min i64", current: `{}`, ops: `[{"type":"decrement","path":"n","by":-9223372036854775808}]`, want: `{"n":9223372036854775808}`},
		{name: "dotted key is literal", current: `{"a":{"b":1}}`, ops: `[{"type":"increment","path":"a.b","by":1}]`, want: `{"a":{"b":1},"a.b":1}`},
		{name: "field on missing item", ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":1}`},
		{name: "increment root on missing item", ops: `[{"type":"increment","path":"","by":5}]`, want: `5`},
		{name: "decrement root on missing item", ops: `[{"type":"decrement","path":"","by":5}]`, want: `-5`},
		{name: "increment root number", current: `10`, ops: `[{"type":"increment","path":"","by":5}]`, want: `15`},
		{name: "decrement root number", current: `10`, ops: `[{"type":"decrement","path":"","by":15}]`, want: `-5`},
		{name: "root float", current: `0.5`, ops: `[{"type":"increment","path":"","by":1}]`, want: `1.5`},
		{name: "root increment twice on missing item", ops: `[{"type":"increment","path":"","by":5},{"type":"increment","path":"","by":1}]`, want: `6`},
		{name: "increment root object", current: `{"a":1}`, ops: `[{"type":"increment","path":"","by":1}]`, code: "increment.not_number"},
		{name: "decrement root string", current: `"x"`, ops: `[{"type":"decrement","path":"","by":1}]`, code: "decrement.not_number"},
		{name: "increment root null", current: `null`, ops: `[{"type":"increment","path":"","by":1}]`, code: "increment.not_number"},
		{name: "root after an op on missing item", ops: `[{"type":"set","path":"a","value":1},{"type":"increment","path":"","by":1}]`, code: "increment.not_number", index: 1},
		{name: "increment string field", current: `{"s":"x"}`, ops: `[{"type":"increment","path":"s","by":1}]`, code: "increment.not_number"},
		{name: "decrement bool field", current: `{"s":true}`, ops: `[{"type":"decrement","path":"s","by":1}]`, code: "decrement.not_number"},
		{name: "increment object field", current: `{"s":{}}`, ops: `[{"type":"increment","path":"s","by":1}]`, code: "increment.not_number"},
		{name: "increment null field", current: `{"s":null}`, ops: `[{"type":"increment","path":"s","by":1}]`, code: "increment.not_number"},
		{name: "decrement null field", current: `{"s":null}`, ops: `[{"type":"decrement","path":"s","by":1}]`, code: "decrement.not_number"},
		{name: "zero by is type-checked", current: `{"s":"x"}`, ops: `[{"type":"increment","path":"s","by":0}]`, code: "increment.not_number"},
		{name: "zero by decrement is type-checked", current: `{"s":[]}`, ops: `[{"type":"decrement","path":"s","by":0}]`, code: "decrement.not_number"},
		{name: "zero by on number", current: `{"n":2}`, ops: `[{"type":"decrement","path":"n","by":0}]`, want: `{"n":2}`},
		{name: "increment on array root", current: `[1]`, ops: `[{"type":"increment","path":"a","by":1}]`, code: "increment.target_not_object"},
		{name: "decrement on number root", current: `3`, ops: `[{"type":"decrement","path":"a","by":1}]`, code: "decrement.target_not_object"},
		{name: "increment on null root", current: `null`, ops: `[{"type":"increment","path":"a","by":1}]`, code: "increment.target_not_object"},
		{name: "float field", current: `{"f":1.5}`, ops: `[{"type":"increment","path":"f","by":2},{"type":"decrement","path":"f","by":1}]`, want: `{"f":2.5}`},
		{name: "float result stays a float", current: `{"f":2.0}`, ops: `[{"type":"increment","path":"f","by":1}]`, want: `{"f":3.0}`},
		{name: "exponent literal is a float", current: `{"f":1e3}`, ops: `[{"type":"increment","path":"f","by":1}]`, want: `{"f":1001.0}`},
		{name: "small float", current: `{"f":-0.25}`, ops: `[{"type":"decrement","path":"f","by":1}]`, want: `{"f":-1.25}`},
		{name: "large float", current: `{"f":1.5e300}`, ops: `[{"type":"increment","path":"f","by":1}]`, want: `{"f":1.5e+300}`},
		{name: "float outside float64 range", current: `{"f":1e400}`, ops: `[{"type":"increment","path":"f","by":1}]`, code: "increment.not_number"},
		{name: "i64 overflow is exact", current: `{"n":9223372036854775807}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":9223372036854775808}`},
		{name: "i64 underflow is exact", current: `{"n":-9223372036854775808}`, ops: `[{"type":"decrement","path":"n","by":1}]`, want: `{"n":-9223372036854775809}`},
		{name: "u64 overflow is exact", current: `{"n":18446744073709551615}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"n":18446744073709551616}`},
		{name: "back into i64", current: `{"n":9223372036854775808}`, ops: `[{"type":"decrement","path":"n","by":9223372036854775807}]`, want: `{"n":1}`},
		{name: "max by twice", current: `{"n":9223372036854775807}`, ops: `[{"type":"increment","path":"n","by":9223372036854775807},{"type":"increment","path":"n","by":9223372036854775807}]`, want: `{"n":27670116110564327421}`},
		{name: "decrement by min i64", current: `{"n":0}`, ops: `[{"type":"decrement","path":"n","by":-9223372036854775808}]`, want: `{"n":9223372036854775808}`},
		{name: "huge integer", current: `{"n":123456789012345678901234567890}`, ops: `[{"type":"increment","path":"n","by":10}]`, want: `{"n":123456789012345678901234567900}`},
		{name: "root i64 overflow", current: `9223372036854775807`, ops: `[{"type":"increment","path":"","by":1}]`, want: `9223372036854775808`},
		{name: "untouched numbers stay exact", current: `{"big":18446744073709551615,"huge":1e400,"tiny":1e-400,"f":1.10,"n":0}`, ops: `[{"type":"increment","path":"n","by":1}]`, want: `{"big":18446744073709551615,"huge":1e400,"tiny":1e-400,"f":1.10,"n":1}`},
	})
}

func TestAppend(t *testing.T) {
	runApply(t, []applyCase{
		{name: "push", current: `{"a":[1]}`, ops: `[{"type":"append","path":"a","value":2}]`, want: `{"a":[1,2]}`},
		{name: "array value is one element", current: `{"a":[1]}`, ops: `[{"type":"append","path":"a","value":[2,3]}]`, want: `{"a":[1,[2,3]]}`},
		{name: "to empty array", current: `{"a":[]}`, ops: `[{"type":"append","path":"a","value":{"k":1}}]`, want: `{"a":[{"k":1}]}`},
		{name: "string to empty array", current: `{"a":[]}`, ops: `[{"type":"append","path":"a","value":"x"}]`, want: `{"a":["x"]}`},
		{name: "string concat", current: `{"s":"ab"}`, ops: `[{"type":"append","path":"s","value":"cd"}]`, want: `{"s":"abcd"}`},
		{name: "string concat twice", current: `{"s":""}`, ops: `[{"type":"append","path":"s","value":"a"},{"type":"append","path":["s"],"value":"b"}]`, want: `{"s":"ab"}`},
		{name: "missing field with string", current: `{}`, ops: `[{"type":"append","path":"s","value":"x"}]`, want: `{"s":"x"}`},
		{name: "missing field with number", current: `{}`, ops: `[{"type":"append","path":"s","value":1}]`, want: `{"s":[1]}`},
		{name: "missing field with null", current: `{}`, ops: `[{"type":"append","path":"s","value":null}]`, want: `{"s":[null]}`},
		{name: "null field with string", current: `{"s":null}`, ops: `[{"type":"append","path":"s","value":"x"}]`, want: `{"s":"x"}`},
		{name: "null field with object", current: `{"s":null}`, ops: `[{"type":"append","path":"s","value":{"k":1}}]`, want: `{"s":[{"k":1}]}`},
		{name: "dotted key is literal", current: `{"a":{"b":[]}}`, ops: `[{"type":"append","path":"a.b","value":1}]`, want: `{"a":{"b":[]},"a.b":[1]}`},
		{name: "field on missing item", ops: `[{"type":"append","path":"log","value":"x"}]`, want: `{"log":"x"}`},
		{name: "nested missing leaf is an array", current: `{}`, ops: `[{"type":"append","path":["a","b"],"value":"x"}]`, want: `{"a":{"b":["x"]}}`},
		{name: "nested on missing item", ops: `[{"type":"append","path":["a","b","c"],"value":1}]`, want: `{"a":{"b":{"c":[1]}}}`},
		{name: "nested existing array", current: `{"a":{"b":[1]}}`, ops: `[{"type":"append","path":["a","b"],"value":2}]`, want: `{"a":{"b":[1,2]}}`},
		{name: "nested existing string", current: `{"a":{"b":"x"}}`, ops: `[{"type":"append","path":["a","b"],"value":"y"}]`, want: `{"a":{"b":"xy"}}`},
		{name: "nested null leaf with string", current: `{"a":{"b":null}}`, ops: `[{"type":"append","path":["a","b"],"value":"y"}]`, want: `{"a":{"b":"y"}}`},
		{name: "nested replaces null intermediate", current: `{"a":null}`, ops: `[{"type":"append","path":["a","b"],"value":42}]`, want: `{"a":{"b":[42]}}`},
		{name: "nested replaces scalar intermediate", current: `{"a":5}`, ops: `[{"type":"append","path":["a","b"],"value":42}]`, want: `{"a":{"b":[42]}}`},
		{name: "nested replaces array intermediate", current: `{"a":[1,2,3]}`, ops: `[{"type":"append","path":["a","b"],"value":42}]`, want: `{"a":{"b":[42]}}`},
		{name: "string to non-string value", current: `{"s":"ab"}`, ops: `[{"type":"append","path":"s","value":1}]`, code: "append.type_mismatch"},
		{name: "string to object value", current: `{"s":"ab"}`, ops: `[{"type":"append","path":"s","value":{"k":"v"}}]`, code: "append.type_mismatch"},
		{name: "object target", current: `{"o":{}}`, ops: `[{"type":"append","path":"o","value":"x"}]`, code: "append.type_mismatch"},
		{name: "number target", current: `{"n":1}`, ops: `[{"type":"append","path":"n","value":1}]`, code: "append.type_mismatch"},
		{name: "bool target", current: `{"b":false}`, ops: `[{"type":"append","path":["b"],"value":[1]}]`, code: "append.type_mismatch"},
		{name: "nested object target", current: `{"a":{"b":{}}}`, ops: `[{"type":"append","path":["a","b"],"value":1}]`, code: "append.type_mismatch"},
		{name: "path on array root", current: `[1]`, ops: `[{"type":"append","path":"a","value":1}]`, code: "append.target_not_object"},
		{name: "nested path on string root", current: `"s"`, ops: `[{"type":"append","path":["a","b"],"value":1}]`, code: "append.target_not_object"},
		{name: "path on null root", current: `null`, ops: `[{"type":"append","path":["a"],"value":1}]`, code: "append.target_not_object"},
		{name: "root on missing item with string", ops: `[{"type":"append","path":"","value":"x"}]`, want: `"x"`},
		{name: "root on missing item with object", ops: `[{"type":"append","value":{"k":1}}]`, want: `[{"k":1}]`},
		{name: "root on missing item with array", ops: `[{"type":"append","path":[],"value":[1]}]`, want: `[[1]]`},
		{name: "root on missing item twice", ops: `[{"type":"append","value":"a"},{"type":"append","value":"b"}]`, want: `"ab"`},
		{name: "root empty array push", current: `[]`, ops: `[{"type":"append","path":[],"value":1}]`, want: `[1]`},
		{name: "root array push array", current: `[1]`, ops: `[{"type":"append","value":[2]}]`, want: `[1,[2]]`},
		{name: "root string concat", current: `"ab"`, ops: `[{"type":"append","path":"","value":"c"}]`, want: `"abc"`},
		{name: "root null", current: `null`, ops: `[{"type":"append","value":1}]`, want: `[1]`},
		{name: "root existing object", current: `{}`, ops: `[{"type":"append","value":1}]`, code: "append.type_mismatch"},
		{name: "root number", current: `3`, ops: `[{"type":"append","value":1}]`, code: "append.type_mismatch"},
		{name: "root string with number", current: `"ab"`, ops: `[{"type":"append","value":1}]`, code: "append.type_mismatch"},
		{name: "root after an op on missing item", ops: `[{"type":"set","path":"a","value":1},{"type":"append","value":"x"}]`, code: "append.type_mismatch", index: 1},
	})
}

func TestRemove(t *testing.T) {
	runApply(t, []applyCase{
		{name: "field", current: `{"a":1,"b":2}`, ops: `[{"type":"remove","path":"a"}]`, want: `{"b":2}`},
		{name: "missing key is silent", current: `{"a":1}`, ops: `[{"type":"remove","path":"z"}]`, want: `{"a":1}`},
		{name: "dotted key is literal", current: `{"a":{"b":1},"a.b":2}`, ops: `[{"type":"remove","path":"a.b"}]`, want: `{"a":{"b":1}}`},
		{name: "on missing item", ops: `[{"type":"remove","path":"a"}]`, want: `{}`},
		{name: "root", current: `{"a":1}`, ops: `[{"type":"remove","path":""}]`, want: `null`},
		{name: "root on missing item", ops: `[{"type":"remove","path":""}]`, want: `null`},
		{name: "root then set root", current: `{"a":1}`, ops: `[{"type":"remove","path":""},{"type":"set","path":"","value":{"b":2}}]`, want: `{"b":2}`},
		{name: "non-object root", current: `[1]`, ops: `[{"type":"remove","path":"a"}]`, code: "remove.target_not_object"},
		{name: "after root removed", current: `{"a":1}`, ops: `[{"type":"remove","path":""},{"type":"remove","path":"a"}]`, code: "remove.target_not_object", index: 1},
	})
}

func TestPathChecks(t *testing.T) {
	long := strings.Repeat("x", 257)
	ok256 := strings.Repeat("x", 256)
	var cases []applyCase
	for _, op := range []string{"set", "increment", "decrement", "remove", "merge", "append"} {
		extra := ""
		switch op {
		case "set", "merge":
			extra = `,"value":{}`
		case "append":
			extra = `,"value":1`
		case "increment", "decrement":
			extra = `,"by":1`
		}
		mk := func(path string) string { return `[{"type":"` + op + `","path":` + path + extra + `}]` }
		cases = append(cases, applyCase{name: op + " segment too long", current: `{}`, ops: mk(`"` + long + `"`), code: op + ".path.segment_too_long"})
		for _, bad := range []string{"__proto__", "constructor", "prototype"} {
			cases = append(cases, applyCase{name: op + " " + bad, current: `{}`, ops: mk(`"` + bad + `"`), code: op + ".path.proto_polluted"})
		}
		if op != "remove" {
			cases = append(cases, applyCase{name: op + " segment of 256 bytes", current: `{}`, ops: mk(`"` + ok256 + `"`), want: `{"` + ok256 + `":` + map[string]string{"set": `{}`, "merge": `{}`, "append": `[1]`, "increment": `1`, "decrement": `-1`}[op] + `}`})
		}
		if op != "merge" && op != "append" {
			continue
		}
		cases = append(cases,
			applyCase{name: op + " too deep", current: `{}`, ops: mk(segs(33)), code: op + ".path.too_deep"},
			applyCase{name: op + " too deep on non-object root", current: `5`, ops: mk(segs(33)), code: op + ".path.too_deep"},
			applyCase{name: op + " empty segment", current: `{}`, ops: mk(`[""]`), code: op + ".path.empty_segment"},
			applyCase{name: op + " empty inner segment", current: `{}`, ops: mk(`["a","","b"]`), code: op + ".path.empty_segment"},
			applyCase{name: op + " long inner segment", current: `{}`, ops: mk(`["a","` + long + `"]`), code: op + ".path.segment_too_long"},
			applyCase{name: op + " proto inner segment", current: `{}`, ops: mk(`["a","__proto__"]`), code: op + ".path.proto_polluted"},
		)
	}
	cases = append(cases,
		applyCase{name: "merge 32 segments", current: `{}`, ops: `[{"type":"merge","path":` + segs(32) + `,"value":{}}]`, want: nestPath(32, `{}`)},
		applyCase{name: "append 32 segments", current: `{}`, ops: `[{"type":"append","path":` + segs(32) + `,"value":1}]`, want: nestPath(32, `[1]`)},
	)
	runApply(t, cases)
}

// nestPath returns leaf nested under the segments of segs(n).
func nestPath(n int, leaf string) string {
	s := leaf
	for i := n - 1; i >= 0; i-- {
		s = fmt.Sprintf(`{"s%d":%s}`, i, s)
	}
	return s
}

func TestSequence(t *testing.T) {
	runApply(t, []applyCase{
		{
			name:    "ops apply in order",
			current: `{"n":1,"log":[]}`,
			ops: `[{"type":"increment","path":"n","by":1},{"type":"set","path":"m","value":{"k":"v"}},` +
				`{"type":"append","path":"log","value":"a"},{"type":"merge","path":["m"],"value":{"j":1}},` +
				`{"type":"remove","path":"n"},{"type":"decrement","path":"c","by":2}]`,
			want: `{"c":-2,"log":["a"],"m":{"j":1,"k":"v"}}`,
		},
		{
			name:    "failure after successful ops",
			current: `{"n":1}`,
			ops:     `[{"type":"increment","path":"n","by":1},{"type":"set","path":"m","value":2},{"type":"append","path":"n","value":3},{"type":"set","path":"z","value":4}]`,
			code:    "append.type_mismatch",
			index:   2,
		},
		{name: "no ops on missing item", ops: `[]`, want: `{}`},
		{name: "no ops keeps value", current: ` {"b":[1, 2.50],"a":"<&>"} `, ops: `[]`, want: `{"a":"<&>","b":[1,2.50]}`},
	})
}

func TestAllOrNothing(t *testing.T) {
	current := json.RawMessage(`{"n":1,"s":"x"}`)
	ops := decode(t, `[{"type":"increment","path":"n","by":1},{"type":"set","path":"m","value":2},{"type":"increment","path":"s","by":1}]`)
	got, err := updateops.Apply(current, true, ops)
	if got != nil {
		t.Fatalf("got value %s; want none", got)
	}
	var opErr *updateops.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("got error %v (%T); want *OpError", err, err)
	}
	if opErr.Index != 2 || opErr.Code != "increment.not_number" {
		t.Fatalf("got %+v; want index 2, increment.not_number", opErr)
	}
	if want := `ops[2] increment.not_number: ` + opErr.Message; opErr.Error() != want {
		t.Fatalf("Error() = %q; want %q", opErr.Error(), want)
	}
	if string(current) != `{"n":1,"s":"x"}` {
		t.Fatalf("current was modified: %s", current)
	}
}

func TestOpErrorJSON(t *testing.T) {
	b, err := json.Marshal(&updateops.OpError{Index: 3, Code: "remove.target_not_object", Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"op_index":3,"code":"remove.target_not_object","message":"m"}`; string(b) != want {
		t.Fatalf("got %s; want %s", b, want)
	}
}

func TestApplyDoesNotModifyInputs(t *testing.T) {
	current := json.RawMessage(`{"a":{"l":[0]}}`)
	before := string(current)
	ops := decode(t, `[{"type":"set","path":"b","value":{"l":[1]}},{"type":"append","path":["b","l"],"value":2},`+
		`{"type":"merge","path":["b"],"value":{"k":{"x":1}}},{"type":"merge","path":["b","k"],"value":{"y":2}},`+
		`{"type":"append","path":["a","l"],"value":1},{"type":"set","path":"","value":{"r":[1]}},{"type":"append","path":"r","value":2}]`)
	first, err := updateops.Apply(current, true, ops)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"r":[1,2]}`; string(first) != want {
		t.Fatalf("got %s; want %s", first, want)
	}
	ops2 := decode(t, `[{"type":"set","path":"b","value":{"l":[1]}},{"type":"append","path":["b","l"],"value":2},`+
		`{"type":"merge","path":["b"],"value":{"k":{"x":1}}},{"type":"merge","path":["b","k"],"value":{"y":2}},{"type":"append","path":["a","l"],"value":1}]`)
	for range 2 {
		got, err := updateops.Apply(current, true, ops2)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"a":{"l":[0,1]},"b":{"k":{"x":1,"y":2},"l":[1,2]}}`; string(got) != want {
			t.Fatalf("got %s; want %s", got, want)
		}
	}
	if again, _ := updateops.Apply(current, true, ops); string(again) != string(first) {
		t.Fatalf("second Apply gave %s; first gave %s", again, first)
	}
	if string(current) != before {
		t.Fatalf("current was modified: %s", current)
	}
}

func TestApplyBadCurrent(t *testing.T) {
	for _, current := range []string{``, `{`, `{"a":1}x`, `1 2`} {
		got, err := updateops.Apply(json.RawMessage(current), true, nil)
		var opErr *updateops.OpError
		if err == nil || errors.As(err, &opErr) || got != nil {
			t.Errorf("Apply(%q): got %s, %v; want a non-OpError error", current, got, err)
		}
	}
	// A missing item ignores current.
	got, err := updateops.Apply(json.RawMessage(`garbage`), false, nil)
	if err != nil || string(got) != `{}` {
		t.Fatalf("got %s, %v; want {}", got, err)
	}
}

func TestApplyZeroOp(t *testing.T) {
	_, err := updateops.Apply(json.RawMessage(`{}`), true, []updateops.Op{{Type: "set"}})
	var opErr *updateops.OpError
	if !errors.As(err, &opErr) || opErr.Index != 0 {
		t.Fatalf("got %v; want an OpError at index 0", err)
	}
}

func TestDecode(t *testing.T) {
	ops, err := updateops.Decode(json.RawMessage(`[
		{"type":"set","path":"a","value":1},
		{"type":"merge","value":{}},
		{"type":"increment","path":"n","by":1},
		{"type":"decrement","path":"n","by":-1},
		{"type":"append","path":["x","y"],"value":"v"},
		{"type":"remove","path":"a","extra":"ignored"}
	]`))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, op := range ops {
		types = append(types, op.Type)
	}
	if got, want := strings.Join(types, ","), "set,merge,increment,decrement,append,remove"; got != want {
		t.Fatalf("types %s; want %s", got, want)
	}

	empty, err := updateops.Decode(json.RawMessage(` [] `))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty array: got %v, %v", empty, err)
	}

	if _, err := updateops.Decode(json.RawMessage(opsOf(updateops.MaxOps))); err != nil {
		t.Fatalf("%d ops: %v", updateops.MaxOps, err)
	}
}

// opsOf returns a JSON array of n remove ops.
func opsOf(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat(`{"type":"remove","path":"a"},`, n), ",") + "]"
}

func TestDecodeErrors(t *testing.T) {
	const ok = `{"type":"remove","path":"a"},{"type":"set","path":"a"},`
	cases := []struct {
		name string
		raw  string
		want string // prefix of the error
	}{
		{"unknown type", `[` + ok + `{"type":"multiply","path":"a"}]`, `ops[2]: unknown op type "multiply"`},
		{"type is case sensitive", `[` + ok + `{"type":"Set","path":"a"}]`, `ops[2]: unknown op type "Set"`},
		{"missing type", `[` + ok + `{"path":"a"}]`, `ops[2]: missing field "type"`},
		{"type not a string", `[` + ok + `{"type":1,"path":"a"}]`, "ops[2]: field type: expected a string, got number"},
		{"type null", `[` + ok + `{"type":null,"path":"a"}]`, "ops[2]: field type: expected a string, got null"},
		{"float by", `[` + ok + `{"type":"increment","path":"a","by":1.5}]`, "ops[2]: field by: expected an integer, got 1.5"},
		{"integral float by", `[` + ok + `{"type":"increment","path":"a","by":1.0}]`, "ops[2]: field by: expected an integer, got 1.0"},
		{"exponent by", `[` + ok + `{"type":"decrement","path":"a","by":1e2}]`, "ops[2]: field by: expected an integer, got 1e2"},
		{"by beyond i64", `[` + ok + `{"type":"increment","path":"a","by":9223372036854775808}]`, "ops[2]: field by: 9223372036854775808 is outside the i64 range"},
		{"missing by", `[` + ok + `{"type":"increment","path":"a"}]`, `ops[2]: missing field "by"`},
		{"null by", `[` + ok + `{"type":"decrement","path":"a","by":null}]`, "ops[2]: field by: expected an integer, got null"},
		{"string by", `[` + ok + `{"type":"increment","path":"a","by":"1"}]`, "ops[2]: field by: expected an integer, got string"},
		{"missing path for set", `[` + ok + `{"type":"set","value":1}]`, `ops[2]: missing field "path"`},
		{"missing path for increment", `[` + ok + `{"type":"increment","by":1}]`, `ops[2]: missing field "path"`},
		{"missing path for remove", `[` + ok + `{"type":"remove"}]`, `ops[2]: missing field "path"`},
		{"null path for set", `[` + ok + `{"type":"set","path":null,"value":1}]`, "ops[2]: field path: expected a string, got null"},
		{"array path for set", `[` + ok + `{"type":"set","path":["a"],"value":1}]`, "ops[2]: field path: expected a string, got array"},
		{"missing merge value", `[` + ok + `{"type":"merge","path":"a"}]`, `ops[2]: missing field "value"`},
		{"missing append value", `[` + ok + `{"type":"append","path":"a"}]`, `ops[2]: missing field "value"`},
		{"number merge path", `[` + ok + `{"type":"merge","path":1,"value":{}}]`, "ops[2]: field path: expected a string or an array of strings, got number"},
		{"non-string segment", `[` + ok + `{"type":"append","path":["a",1],"value":1}]`, "ops[2]: field path: segment 1: expected a string, got number"},
		{"null segment", `[` + ok + `{"type":"merge","path":[null],"value":{}}]`, "ops[2]: field path: segment 0: expected a string, got null"},
		{"op not an object", `[` + ok + `1]`, "ops[2]: op must be a JSON object"},
		{"op null", `[` + ok + `null]`, "ops[2]: op must be a JSON object"},
		{"first op", `[{"type":"nope"}]`, `ops[0]: unknown op type "nope"`},
		{"not an array", `{"type":"set","path":"a"}`, "ops: must be a JSON array"},
		{"null", `null`, "ops: must be a JSON array"},
		{"empty", ``, "ops: must be a JSON array"},
		{"malformed", `[{"type":"set","path":"a"}`, "ops: "},
		{"trailing data", `[] []`, "ops: "},
		{"too many ops", opsOf(updateops.MaxOps + 1), "ops: 1025 ops exceed the maximum of 1024"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := updateops.Decode(json.RawMessage(tc.raw))
			if err == nil {
				t.Fatalf("got %d ops; want an error", len(ops))
			}
			if ops != nil {
				t.Fatalf("got ops along with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %q does not start with %q", err, tc.want)
			}
		})
	}
}
