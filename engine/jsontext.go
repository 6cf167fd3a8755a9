package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ValidJSONText checks that b is JSON whose text is valid UTF-8 and whose
// string escapes encode no lone UTF-16 surrogate (\ud800 alone, say).
// encoding/json accepts both and turns them into U+FFFD when it decodes,
// so that distinct names collapse into one, and a raw invalid byte stored
// as is breaks every browser that receives it in a text frame.
func ValidJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	if !json.Valid(b) {
		return errors.New("not valid JSON")
	}
	return checkSurrogates(b)
}

// checkSurrogates scans the \u escapes of valid JSON b.
func checkSurrogates(b []byte) error {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		i++ // b is valid JSON: an escape always has its next byte
		if b[i] != 'u' {
			continue
		}
		r := hex4(b[i+1 : i+5])
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return errors.New("a string holds a lone low surrogate escape")
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
				return errors.New("a string holds a lone high surrogate escape")
			}
			if lo := hex4(b[i+3 : i+7]); lo < 0xDC00 || lo > 0xDFFF {
				return errors.New("a string holds a lone high surrogate escape")
			}
			i += 6
		}
	}
	return nil
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// MarshalJSON is json.Marshal without HTML escaping: the JSON values a
// caller stored come back as they were written. json.Marshal writes <, >
// and & (inside json.RawMessage values too) as \u003c…, six bytes for
// one, so an answer or an event could grow six times past the size
// checked when the value was stored.
func MarshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
