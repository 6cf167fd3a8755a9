package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"unicode/utf8"

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
		if engine.AsError(err).Code != engine.CodeInvalidArgument {
			t.Errorf("payload %q: %v, want invalid_argument", p, err)
		}
		_, err = e.Trigger(context.Background(), engine.Call{FunctionID: "f", Payload: []byte(`{}`), Metadata: []byte(p)})
		if engine.AsError(err).Code != engine.CodeInvalidArgument {
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
