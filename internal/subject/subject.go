// Package subject encodes names as NATS subject tokens: one injective
// function (Token) that every package building a subject from a name uses,
// so that any UTF-8 name (dots, wildcards, spaces, emoji) maps to a token
// of its own that can never match another name's subscription.
//
// Concurrency: every function is pure and safe to call concurrently; the
// package starts no goroutines.
package subject

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

const hexDigits = "0123456789ABCDEF"

// MaxTokenBytes bounds a token: a name whose escaped form is longer is
// hashed (see Token), so that a subject stays far below the NATS server's
// 4096-byte control line whatever the names.
const MaxTokenBytes = 96

// hashedPrefixBytes is how much of a long name's escaped form a hashed
// token keeps, for people reading subjects.
const hashedPrefixBytes = 48

// Token encodes a name as one NATS subject token of at most MaxTokenBytes
// bytes. Letters, digits, '-' and '_' stay as they are; every other byte
// becomes '~' and two uppercase hex digits; the empty name is "~". When
// that is longer than MaxTokenBytes, the token is its first 48 bytes (cut
// before an unfinished escape), "~~", and 32 hex digits of the name's
// SHA-256. The result never contains '.', '*', '>' or whitespace; escaped
// tokens never contain "~~", so they never equal a hashed one, and
// different names give different tokens (for hashed ones, unless SHA-256
// collides in 128 bits: whoever stores the names beside the token, as
// jsstore and event frames do, can check them).
func Token(name string) string {
	if name == "" {
		return "~"
	}
	tok := Escape(name, '~', plain)
	if len(tok) > MaxTokenBytes {
		return hashed(tok, name)
	}
	return tok
}

// Escape returns s with every byte that is not plain written as esc and
// two upper-case hex digits: the escaping of subject tokens, and of NATS
// header values (internal/natsheader, with '%'). A plain s is returned
// as it is, without a copy.
func Escape(s string, esc byte, plain func(byte) bool) string {
	i := 0
	for i < len(s) && plain(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(esc)
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String()
}

func hashed(escaped, name string) string {
	p := escaped[:hashedPrefixBytes]
	if i := strings.LastIndexByte(p, '~'); i >= 0 && i > len(p)-3 {
		p = p[:i] // do not cut an escape in two
	}
	sum := sha256.Sum256([]byte(name))
	return p + "~~" + hex.EncodeToString(sum[:16])
}

// Hashed reports whether tok is a hashed token, whose name ParseToken
// cannot give back.
func Hashed(tok string) bool { return strings.Contains(tok, "~~") }

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// ErrBadToken reports a token that Token cannot have produced.
var ErrBadToken = errors.New("subject: malformed subject token")

// ErrHashedToken reports a hashed token: its name is not in it.
var ErrHashedToken = errors.New("subject: hashed subject token")

// ParseToken inverts Token for the tokens that are not hashed.
func ParseToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	if Hashed(tok) {
		return "", ErrHashedToken
	}
	if tok == "" {
		return "", ErrBadToken
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case plain(c):
			b.WriteByte(c)
		case c == '~' && i+2 < len(tok):
			hi, lo := strings.IndexByte(hexDigits, tok[i+1]), strings.IndexByte(hexDigits, tok[i+2])
			v := byte(hi<<4 | lo)
			if hi < 0 || lo < 0 || plain(v) {
				return "", ErrBadToken // not canonical: Token never escapes a plain byte
			}
			b.WriteByte(v)
			i += 2
		default:
			return "", ErrBadToken
		}
	}
	return b.String(), nil
}
