// Package natsheader encodes the names a NATS header carries (function
// ids, queues, topics) so that no transport alters them. nats.go, like
// net/http, trims the ends of a header value and turns CR and LF into
// spaces, so "job::q " would arrive as "job::q". Encode escapes every byte
// outside the printable ASCII range 0x21 to 0x7E, and '%', as %XX: an
// encoded value has no byte a transport changes, and a plain ASCII id
// ("api::echo") is its own encoding, readable in a stream's messages.
// Decode is strict: it refuses any value that Encode could not have made.
//
// The functions are pure and safe for concurrent use.
//
// Concurrency: every function is pure and safe to call concurrently; the
// package starts no goroutines.
package natsheader

import (
	"errors"
	"strings"

	"github.com/trinehq/trine/internal/subject"
)

// ErrBadValue reports a header value that Encode did not make: it holds a
// byte outside 0x21 to 0x7E, or a '%' without two upper-case hex digits,
// or an escape of a byte that needs none.
var ErrBadValue = errors.New("natsheader: value is not encoded")

const hexDigits = "0123456789ABCDEF"

func plain(c byte) bool { return c > 0x20 && c < 0x7F && c != '%' }

// Encode returns v with every byte that is not plain escaped as %XX.
func Encode(v string) string {
	n := 0
	for i := 0; i < len(v); i++ {
		if !plain(v[i]) {
			n++
		}
	}
	if n == 0 {
		return v
	}
	return subject.Escape(v, '%', plain)
}

// Decode reverses Encode. It fails with ErrBadValue on a value that Encode
// cannot return, so a value altered on its way is caught.
func Decode(s string) (string, error) {
	if !strings.ContainsRune(s, '%') {
		for i := 0; i < len(s); i++ {
			if !plain(s[i]) {
				return "", ErrBadValue
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if !plain(c) {
				return "", ErrBadValue
			}
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return "", ErrBadValue
		}
		hi, lo := strings.IndexByte(hexDigits, s[i+1]), strings.IndexByte(hexDigits, s[i+2])
		if hi < 0 || lo < 0 {
			return "", ErrBadValue
		}
		d := byte(hi<<4 | lo)
		if plain(d) {
			return "", ErrBadValue // Encode never escapes a plain byte
		}
		b = append(b, d)
		i += 2
	}
	return string(b), nil
}
