package httptrigger

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// FuzzParsePath checks that a valid api_path normalises idempotently and
// that a request built from it matches its route.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"users/:id", "/", "a//b", ":", "a/:x/:x", "/a%2Fb/:c/", "%3A/:x", "a b/ü", "a%zz", "?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		pattern, segs, err := parsePath(p)
		if err != nil {
			return
		}
		again, segs2, err := parsePath(pattern)
		if err != nil || again != pattern || !reflect.DeepEqual(segs, segs2) {
			t.Fatalf("parsePath(%q) = %q %v, again %q %v %v", p, pattern, segs, again, segs2, err)
		}
		parts := make([]string, len(segs))
		want := make(map[string]string)
		for i, s := range segs {
			if s.param != "" {
				parts[i] = "v" + s.param
				want[s.param] = parts[i]
				parts[i] = url.PathEscape(parts[i])
			} else {
				parts[i] = url.PathEscape(s.lit)
			}
		}
		r := &route{triggerID: "t", method: "GET", pattern: pattern, segs: segs, shape: shapeOf("GET", segs)}
		reqSegs, ok := splitRequestPath("/" + strings.Join(parts, "/"))
		if !ok {
			t.Fatalf("request path for %q does not split", pattern)
		}
		got, params, _ := buildTable(map[string]*route{"t": r}).match("GET", reqSegs)
		if got != r || !reflect.DeepEqual(params, want) {
			t.Fatalf("match(%q) = %v %v, want the route with %v", parts, got, params, want)
		}
	})
}

func FuzzSplitRequestPath(f *testing.F) {
	for _, s := range []string{"/", "", "//", "/a/b/", "/a%2Fb", "/%zz", "/a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		segs, ok := splitRequestPath(p)
		if !ok {
			return
		}
		for _, s := range segs {
			if s == "" {
				t.Fatalf("splitRequestPath(%q) = %q: empty segment", p, segs)
			}
		}
	})
}
