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
	_, err := ScanJSONText(b)
	return err
}

// ScanJSONText is ValidJSONText in one pass over b, which also reports
// whether b is compact: valid, with no space between its tokens, as
// json.Compact would leave it. Its verdict is that of checking UTF-8, then
// json.Valid, then the escapes, each over the whole text: an invalid byte
// anywhere is reported before a syntax error, and a syntax error anywhere
// before a lone surrogate.
func ScanJSONText(b []byte) (compact bool, err error) {
	s := textScan{b: b, compact: true}
	s.value()
	switch {
	case s.fault == faultUTF8:
		return false, errors.New("not valid UTF-8")
	case s.fault == faultSyntax:
		if !utf8.Valid(b[s.i:]) { // what lies before s.i has been read as valid
			return false, errors.New("not valid UTF-8")
		}
		return false, errors.New("not valid JSON")
	case s.surrogate != "":
		return false, errors.New(s.surrogate)
	}
	return s.compact, nil
}

// maxNesting is encoding/json's limit on nested arrays and objects.
const maxNesting = 10000

const (
	faultNone = iota
	faultSyntax
	faultUTF8
)

// textScan reads JSON text iteratively: nesting is a stack of the open
// '[' and '{', not recursion, so that deep input does not grow the
// goroutine's stack. The first 64 levels are bits of a word, so that
// the scan allocates nothing for usual input.
type textScan struct {
	b         []byte
	i         int
	fault     int    // the first syntax or UTF-8 fault; reading stops there
	surrogate string // the first lone surrogate escape; reading goes on
	compact   bool
	depth     int    // arrays and objects open
	objects   uint64 // bit d: level d (< 64) is an object
	deeper    []byte // '[' or '{' of levels 64 and on
}

func (s *textScan) push(c byte) {
	switch {
	case s.depth >= 64:
		s.deeper = append(s.deeper, c)
	case c == '{':
		s.objects |= 1 << s.depth
	default:
		s.objects &^= 1 << s.depth
	}
	s.depth++
}

// top is the innermost open '[' or '{'.
func (s *textScan) top() byte {
	d := s.depth - 1
	switch {
	case d >= 64:
		return s.deeper[d-64]
	case s.objects&(1<<d) != 0:
		return '{'
	}
	return '['
}

func (s *textScan) pop() {
	s.depth--
	if s.depth >= 64 {
		s.deeper = s.deeper[:s.depth-64]
	}
}

// value reads the whole text: one value between optional space.
func (s *textScan) value() {
	for {
		s.space()
		opened, ok := s.scalarOrOpen()
		switch {
		case !ok:
			return
		case !opened && !s.next():
			return
		}
	}
}

// scalarOrOpen reads a scalar, or an empty array or object, at s.i; or
// opens an array, or an object and reads its first name. opened says
// that a value is wanted next; ok is false when reading stops.
func (s *textScan) scalarOrOpen() (opened, ok bool) {
	if s.i == len(s.b) {
		s.fault = faultSyntax
		return false, false
	}
	switch c := s.b[s.i]; c {
	case '{', '[':
		if s.depth == maxNesting {
			s.fault = faultSyntax
			return false, false
		}
		s.i++
		s.space()
		if s.i < len(s.b) && s.b[s.i] == c+2 { // ']' is '['+2, '}' is '{'+2
			s.i++
			return false, true
		}
		s.push(c)
		return true, c == '[' || s.name()
	case '"':
		s.str()
	case 't':
		s.literal("true")
	case 'f':
		s.literal("false")
	case 'n':
		s.literal("null")
	default:
		s.number()
	}
	return false, s.fault == faultNone
}

// next reads what follows a value: the closing of what ends there, then a
// comma (and in an object the next name), or the end of the text. It
// reports whether a value is wanted next.
func (s *textScan) next() bool {
	for {
		s.space()
		if s.depth == 0 {
			if s.i != len(s.b) {
				s.fault = faultSyntax
			}
			return false
		}
		if s.i == len(s.b) {
			s.fault = faultSyntax
			return false
		}
		top := s.top()
		switch s.b[s.i] {
		case ',':
			s.i++
			return top == '[' || s.name()
		case top + 2:
			s.i++
			s.pop()
		default:
			s.fault = faultSyntax
			return false
		}
	}
}

// name reads a member name and its colon; false when reading stops.
func (s *textScan) name() bool {
	s.space()
	if s.i == len(s.b) || s.b[s.i] != '"' {
		s.fault = faultSyntax
		return false
	}
	if s.str(); s.fault != faultNone {
		return false
	}
	s.space()
	if s.i == len(s.b) || s.b[s.i] != ':' {
		s.fault = faultSyntax
		return false
	}
	s.i++
	return true
}

func (s *textScan) space() {
	start := s.i
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
	if s.i != start {
		s.compact = false
	}
}

func (s *textScan) literal(word string) {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		s.fault = faultSyntax
		return
	}
	s.i += len(word)
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *textScan) number() {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		s.i, s.fault = i, faultSyntax
		return
	}
	if i < len(b) && b[i] == '.' {
		if i++; i == len(b) || !isDigit(b[i]) {
			s.i, s.fault = i, faultSyntax
			return
		}
		i = digits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			s.i, s.fault = i, faultSyntax
			return
		}
		i = digits(b, i)
	}
	s.i = i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// str reads the string at s.i (a '"'): its bytes as UTF-8, its escapes,
// and the surrogates they encode.
func (s *textScan) str() {
	b, i := s.b, s.i+1
	for i < len(b) {
		if plain[b[i]] {
			i++
			continue
		}
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return
		case c == '\\':
			if i = s.escape(i); s.fault != faultNone {
				return
			}
		case c < 0x20:
			s.i, s.fault = i, faultSyntax
			return
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				s.i, s.fault = i, faultUTF8
				return
			}
			i += n
		}
	}
	s.i, s.fault = i, faultSyntax
}

// plain is the bytes that a string holds as they are: printable ASCII
// but the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// escape reads the escape at b[i] (a '\\') and returns the index after it.
func (s *textScan) escape(i int) int {
	b := s.b
	if i+1 == len(b) {
		s.i, s.fault = i+1, faultSyntax
		return i
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
	default:
		s.i, s.fault = i+1, faultSyntax
		return i
	}
	r, ok := hex4(b, i+2)
	if !ok {
		s.i, s.fault = i+2, faultSyntax
		return i
	}
	i += 6
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		s.lone("a string holds a lone low surrogate escape")
	case r >= 0xD800 && r <= 0xDBFF:
		// A high surrogate needs a low one escaped right after it; the
		// pair is read here, and what follows it is not: a bad escape
		// after a lone high surrogate is read by the loop.
		if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
			if lo, ok := hex4(b, i+2); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				return i + 6
			}
		}
		s.lone("a string holds a lone high surrogate escape")
	}
	return i
}

func (s *textScan) lone(why string) {
	if s.surrogate == "" {
		s.surrogate = why
	}
}

// hex4 reads the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if len(b)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
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
