package tsgen

import (
	"encoding/json"
	"strings"
	"testing"
)

// lex splits TypeScript source the way a JavaScript lexer reads it: what
// is code, and the string literals ("…" and `…`, whose ${…} parts are
// code). Comments are dropped.
func lex(t *testing.T, src string) (code string, strs []string) {
	t.Helper()
	var c strings.Builder
	for i := 0; i < len(src); {
		switch {
		case strings.HasPrefix(src[i:], "//"):
			j := strings.IndexAny(src[i:], "\n\r\u2028\u2029")
			if j < 0 {
				return c.String(), strs
			}
			i += j
		case strings.HasPrefix(src[i:], "/*"):
			j := strings.Index(src[i+2:], "*/")
			if j < 0 {
				t.Fatalf("unterminated comment at %d", i)
			}
			c.WriteByte(' ')
			i += 2 + j + 2
		case src[i] == '"':
			j := i + 1
			for ; j < len(src) && src[j] != '"'; j++ {
				if src[j] == '\\' {
					j++
				}
				if src[j] == '\n' || src[j] == '\r' {
					t.Fatalf("newline in a string literal at %d: %q", j, src[i:j+1])
				}
			}
			strs = append(strs, src[i:j+1])
			c.WriteString(` "" `)
			i = j + 1
		case src[i] == '`':
			j := i + 1
			for ; j < len(src) && src[j] != '`'; j++ {
				switch {
				case src[j] == '\\':
					j++
				case strings.HasPrefix(src[j:], "${"):
					k := strings.IndexByte(src[j:], '}')
					c.WriteString(" " + src[j+2:j+k] + " ")
					j += k
				}
			}
			c.WriteString(" `` ")
			i = j + 1
		default:
			c.WriteByte(src[i])
			i++
		}
	}
	return c.String(), strs
}

// Names come from whoever may define a stream or register a function:
// none of them can put code into the generated module, and every quoted
// name reads back as itself.
func TestWriteKeepsHostileNamesInsideLiterals(t *testing.T) {
	const evil = "x*/ pwn() /*"
	odd := "a\u2028b\U000E0001c\u00a0\"`${pwn()}\\"
	streams := []Stream{{
		Name:    evil,
		Version: 1,
		Item:    json.RawMessage(`{"type":"object","properties":{"` + "p\\u2028\\udb40\\udc01" + `":{"type":"string"},"q*/ pwn() /*":{"const":"*/ pwn() /*"}},"$defs":{"d*/pwn()/*":{"type":"string"}}}`),
		Events:  map[string]json.RawMessage{evil: json.RawMessage(`{"type":"string"}`), odd: json.RawMessage(`true`)},
		GroupID: "g-*`${pwn()}\\",
	}, {Name: odd, Version: 2, Item: json.RawMessage(`true`)}}
	fns := []Function{{ID: "f*/ pwn() /*", Request: json.RawMessage(`{"type":"number"}`)}}
	out, err := Write("// header\n\n", streams, fns)
	if err != nil {
		t.Fatal(err)
	}
	code, strs := lex(t, out)
	if strings.Contains(code, "pwn") {
		t.Fatalf("a name reached the code outside any literal or comment:\n%s\n--- code as a lexer reads it:\n%s", out, code)
	}
	want := map[string]bool{evil: false, odd: false, "p\u2028\U000E0001": false, "f*/ pwn() /*": false}
	for _, s := range strs {
		var v string
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Errorf("string literal %s is not one JavaScript reads as written: %v", s, err)
			continue
		}
		if _, ok := want[v]; ok {
			want[v] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no string literal reads back as %q:\n%s", k, out)
		}
	}
}
