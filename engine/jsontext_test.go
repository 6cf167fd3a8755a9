package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
)

func TestValidJSONText(t *testing.T) {
	t.Parallel()
	good := []string{`{}`, `"a"`, `"é🎉"`, `"\ufffd"`, `"\ud83c\udf89"`, `"\\ud800"`, `{"k":"\u00e9"}`, `[1,"x\"y"]`}
	bad := []string{"\"\xff\"", "{\"a\xfe\":1}", `"\ud800"`, `"\udc00"`, `"\ud800x"`, `"\ud800\u0041"`, `{"k":"\uDBFF"}`, `"\ud83c"`, `{`}
	for _, s := range good {
		if err := engine.ValidJSONText([]byte(s)); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range bad {
		if err := engine.ValidJSONText([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// A payload with invalid UTF-8, or an escaped lone surrogate (which
// decoders turn into U+FFFD, so that different names collapse into one),
// is refused before it reaches any function, whatever the transport.
func TestCallsRefuseInvalidText(t *testing.T) {
	t.Parallel()
	e := enginetest.Run(t, engine.Config{})
	called := 0
	if err := e.RegisterFunction("f", "", engine.HandlerFunc(func(context.Context, engine.Call) ([]byte, error) {
		called++
		return []byte(`{}`), nil
	})); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"{\"data\":\"\xff\"}", `{"item_id":"\ud800"}`} {
		_, err := e.Trigger(context.Background(), engine.Call{FunctionID: "f", Payload: []byte(p)})
		if engine.AsError(err).Code != codes.InvalidArgument {
			t.Errorf("payload %q: %v, want invalid_argument", p, err)
		}
		_, err = e.Trigger(context.Background(), engine.Call{FunctionID: "f", Payload: []byte(`{}`), Metadata: []byte(p)})
		if engine.AsError(err).Code != codes.InvalidArgument {
			t.Errorf("metadata %q: %v, want invalid_argument", p, err)
		}
	}
	if called != 0 {
		t.Fatalf("the function ran %d times", called)
	}
}

func FuzzValidJSONText(f *testing.F) {
	for _, s := range []string{`{}`, `"\ud800"`, `"\ud83c\udf89"`, "\"\xff\"", `"\\u"`, `["\u0041\ud800\udc00"]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if engine.ValidJSONText(b) != nil {
			return
		}
		if !utf8.Valid(b) || !json.Valid(b) {
			t.Fatalf("%q accepted", b)
		}
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber() // valid JSON numbers may not fit a float64
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%q accepted but does not decode: %v", b, err)
		}
		// Accepted text decodes without replacement characters that were
		// not in it.
		out, _ := json.Marshal(v)
		if bytes.Count(out, []byte("\ufffd")) > bytes.Count(b, []byte("\ufffd"))+bytes.Count(bytes.ToLower(b), []byte(`\ufffd`)) {
			t.Fatalf("%q decodes with replacement characters: %s", b, out)
		}
	})
}

// threeScans is the edge check as it was: UTF-8, then encoding/json, then
// the \u escapes, each a pass of its own. ScanJSONText must agree with it
// on every input, message included.
func threeScans(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	if !json.Valid(b) {
		return errors.New("not valid JSON")
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		i++
		if b[i] != 'u' {
			continue
		}
		r, _ := strconv.ParseUint(string(b[i+1:i+5]), 16, 32)
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return errors.New("a string holds a lone low surrogate escape")
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
				return errors.New("a string holds a lone high surrogate escape")
			}
			if lo, _ := strconv.ParseUint(string(b[i+3:i+7]), 16, 32); lo < 0xDC00 || lo > 0xDFFF {
				return errors.New("a string holds a lone high surrogate escape")
			}
			i += 6
		}
	}
	return nil
}

// sameAsThreeScans fails t unless ScanJSONText gives b the verdict and
// message of threeScans, and calls b compact exactly when it is valid and
// json.Compact leaves it as it is.
func sameAsThreeScans(t *testing.T, b []byte) {
	t.Helper()
	compact, err := engine.ScanJSONText(b)
	want := threeScans(b)
	if fmt.Sprint(err) != fmt.Sprint(want) {
		t.Fatalf("%q: one pass says %v, the three scans %v", b, err, want)
	}
	if engine.ValidJSONText(b) == nil != (err == nil) {
		t.Fatalf("%q: ValidJSONText and ScanJSONText disagree", b)
	}
	wantCompact := false
	if want == nil {
		var c bytes.Buffer
		_ = json.Compact(&c, b)
		wantCompact = bytes.Equal(c.Bytes(), b)
	}
	if compact != wantCompact {
		t.Fatalf("%q: compact %v, want %v", b, compact, wantCompact)
	}
}

// hostileTexts are inputs at the edges of UTF-8, JSON and the surrogate
// rule.
func hostileTexts() [][]byte {
	s := []string{
		``, ` `, "\t\n\r ", `{}`, ` {} `, `[]`, `[ ]`, `{ }`, `null`, `true`, `false`, `0`, `-0`, `"a"`, `""`,
		`{"a":1}`, `{"a" : 1}`, `{"a":[1,2,{"b":"c d"}],"e":null}`, "{\n\t\"a\":\r\n1}",
		// Trailing garbage, truncation, bad structure.
		`{} x`, `{}}`, `[]]`, `{} {}`, `1 2`, `{`, `[`, `"`, `"abc`, `{"a"`, `{"a":`, `{"a":1`, `[1`, `[1,`,
		`[1,]`, `{"a":1,}`, `{,}`, `[,]`, `{"a"}`, `{"a" 1}`, `{1:2}`, `{a:1}`, `[1 2]`, `{"a":1 "b":2}`, `{"a"::1}`,
		`]`, `}`, `:`, `,`, `{]`, `[}`, `{"a":1]`, `[1}`,
		// Literals.
		`tru`, `nul`, `nulll`, `True`, `NULL`, `falsey`, `[true,false,null]`, `nan`, `Infinity`,
		// Numbers, huge ones included.
		`-`, `01`, `-01`, `1.`, `.1`, `1e`, `1e+`, `1E-5`, `1e5`, `1.5e+10`, `+1`, `0x10`, `1.2.3`, `--1`, `-a`, `0.e1`, `1e1.5`,
		`123456789012345678901234567890123456789012345678901234567890`, `1e999999999`, `-1e-999999999`,
		`[1e400,-0.0e-0,0E0]`, `00`, `[0,0]`, `1_000`,
		// Escapes.
		`"\""`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\x"`, `"\'"`, `"\u00e9"`, `"\u00E9"`, `"\u12g4"`, `"\u00"`, `"\u"`, `"\`, `"\\u"`,
		`"\\ud800"`, `"\\\ud800"`,
		// Surrogates.
		`"\ud800"`, `"\udc00"`, `"\udfff"`, `"\udbff\udfff"`, `"\ud83c\udf89"`, `"\uD83C\uDF89"`, `"\udc00\ud800"`,
		`"\ud800\ud800\udc00"`, `"\ud800x"`, `"\ud800\u0041"`, `"\ud800\n"`, `"\ud800\"`, `"\ud800\udc0"`, `{"\ud800":1}`,
		`["\ud800",]`, `["\ud800" 1]`, `["\ud800","\udc00"]`, `"\ud800\\udc00"`,
		// Raw bytes: NUL, controls, DEL, BOM, invalid UTF-8.
		"\x00", "{}\x00", "\"\x00\"", "\"a\tb\"", "\"\x1f\"", "\"\x7f\"", "\xef\xbb\xbf{}", "\"\xef\xbb\xbf\"",
		"\"\xff\"", "{\"a\xfe\":1}", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "\"\xe2\x82\xac\"",
		"\"\xf0\x9f\x8e\x89\"", "\"é🎉\"", "{\xff", "[1,\xff]", "\xff", "[\"\\ud800\",\"\xff\"]", "[\"\\ud800\",]\xff", "\"\x80\"",
		"\"\xc2\"", "\"\xdf\xbf\"", "\"\xef\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\"", "1\xff", "[1]\xff", " \xff",
	}
	out := make([][]byte, 0, len(s)+8)
	for _, v := range s {
		out = append(out, []byte(v))
	}
	// Nesting at and past encoding/json's limit of 10,000.
	for _, n := range []int{64, 65, 10000, 10001} {
		out = append(out, []byte(strings.Repeat("[", n)+strings.Repeat("]", n)))
		out = append(out, []byte(strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n)))
	}
	out = append(out, []byte(strings.Repeat("[", 10000)))
	return out
}

// The one pass at the edge gives every input the verdict, and the message,
// of the three scans it replaces.
func TestScanJSONTextMatchesThreeScans(t *testing.T) {
	t.Parallel()
	for _, b := range hostileTexts() {
		sameAsThreeScans(t, b)
	}
}

func FuzzScanJSONText(f *testing.F) {
	for _, b := range hostileTexts() {
		if len(b) < 1000 {
			f.Add(b)
		}
	}
	f.Fuzz(sameAsThreeScans)
}

// A stream::set payload, as the edge checks it: the one pass against the
// three scans it replaced.
func BenchmarkEdgeCheck(b *testing.B) {
	p := []byte(`{"stream_name":"bench-set","group_id":"g001","item_id":"c001","data":{"n":12345,"pad":"` + strings.Repeat("x", 128) + `","é":"\u00e9\ud83c\udf89"}}`)
	b.Run("one pass", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if _, err := engine.ScanJSONText(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("three scans", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if err := threeScans(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
