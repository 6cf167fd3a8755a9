package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
)

// refInput is what encoding/json makes of the same payloads.
type refInput struct {
	Name  *string         `json:"stream_name"`
	Data  json.RawMessage `json:"data"`
	IfSeq *uint64         `json:"if_seq"`
	Limit *int            `json:"limit"`
	IDs   bool            `json:"include_ids"`
}

// TestInputReadsAsEncodingJSON reads payloads with Input and with
// encoding/json and wants the same members, or an error from both.
func TestInputReadsAsEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		``, `null`, ` null `, `{}`, ` { } `,
		`{"stream_name":"s","data":{"a": [1, 2, {"b" : "x y"}]},"if_seq":3,"limit":10,"include_ids":true}`,
		`{"STREAM_NAME":"folded","data":"str \" with } and ]"}`,
		`{"ſtream_name":"long s folds like encoding/json"}`,
		`{"stream_name":"first","stream_name":"last"}`,
		`{"stream_name":"set","stream_name":null}`,
		`{"include_ids":true,"include_ids":null}`,
		`{"stream\u005fname":"escaped key","data":null}`,
		`{"stream_name":"esc\u00e9\n\"q\""}`,
		`{"data":[ ]  , "other": {"nested": [ {}, [] ]}}`,
		"{\n\t\"data\" :\r\n 12.5e3 }",
		`{"if_seq":-1}`, `{"if_seq":1.5}`, `{"if_seq":"3"}`, `{"limit":"x"}`,
		`{"stream_name":5}`, `{"include_ids":"yes"}`,
		`[]`, `"s"`, `5`, `true`,
	} {
		var want refInput
		werr := json.Unmarshal([]byte(p), &want)
		if len(bytes.TrimSpace([]byte(p))) == 0 {
			werr = nil
		}
		got, err := read(p)
		if (err != nil) != (werr != nil) {
			t.Errorf("%s: error %v, encoding/json's %v", p, err, werr)
			continue
		}
		if err != nil {
			if engine.AsError(err).Code != codes.InvalidArgument {
				t.Errorf("%s: error %v, want invalid_argument", p, err)
			}
			continue
		}
		var wantData json.RawMessage
		if want.Data != nil {
			var b bytes.Buffer
			_ = json.Compact(&b, want.Data)
			wantData = b.Bytes()
		}
		if str(got.Name) != str(want.Name) || string(got.Data) != string(wantData) || u64(got.IfSeq) != u64(want.IfSeq) ||
			i64(got.Limit) != i64(want.Limit) || got.IDs != want.IDs {
			t.Errorf("%s: Input read %+v (data %s), encoding/json %+v (data %s)", p, got, got.Data, want, wantData)
		}
	}
}

func read(p string) (refInput, error) {
	var r refInput
	in, err := engine.ReadInput(engine.Call{FunctionID: "f", Payload: []byte(p)})
	if err != nil {
		return r, err
	}
	if s, ok, err := in.String("stream_name"); err != nil {
		return r, err
	} else if ok {
		r.Name = &s
	}
	r.Data = in.Compact("data")
	if r.IfSeq, err = in.Uint64("if_seq"); err != nil {
		return r, err
	}
	if r.Limit, err = in.Int("limit"); err != nil {
		return r, err
	}
	r.IDs, err = in.Bool("include_ids")
	return r, err
}

func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return "=" + *p
}

func u64(p *uint64) int64 {
	if p == nil {
		return -1
	}
	return int64(*p)
}

func i64(p *int) int64 {
	if p == nil {
		return -1 << 62
	}
	return int64(*p)
}

// Through the engine, a payload that the edge found compact is copied and
// one with space is compacted: a member reads the same either way.
func TestInputCompactsAfterTheEdge(t *testing.T) {
	t.Parallel()
	e := enginetest.Run(t, engine.Config{})
	if err := e.RegisterFunction("f", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		in, err := engine.ReadInput(c)
		if err != nil {
			return nil, err
		}
		return in.Compact("data"), nil
	})); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		`{"data":{"a":[1,2,{"b":"x y"}]}}`,
		`{"data":{"a": [1, 2, {"b" : "x y"}]}}`,
		`{"data":{"a":[1,2]}, "other":1}`,
		` {"data":"s p a c e"}`,
		"{\"data\":[\"\\\"\",\t1]}",
	} {
		got, err := e.Trigger(context.Background(), engine.Call{FunctionID: "f", Payload: []byte(p)})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var ref struct{ Data json.RawMessage }
		if err := json.Unmarshal([]byte(p), &ref); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.Compact(&want, ref.Data); err != nil {
			t.Fatal(err)
		}
		if string(got) != want.String() {
			t.Errorf("%s: data %s, want %s", p, got, want.String())
		}
	}
}
