package natsfanout

import (
	"errors"
	"strings"
)

// SubjectPrefix starts every stream event subject.
const SubjectPrefix = "trine.stream."

const hexDigits = "0123456789ABCDEF"

// Token encodes a name as one NATS subject token. Letters, digits, '-' and
// '_' stay as they are; every other byte becomes '~' and two uppercase hex
// digits; the empty name is "~". The result never contains '.', '*', '>' or
// whitespace, and different names always give different tokens.
func Token(name string) string {
	if name == "" {
		return "~"
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
	return b.String()
}

func plain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// ErrBadToken reports a token that Token cannot have produced.
var ErrBadToken = errors.New("natsfanout: malformed subject token")

// ParseToken inverts Token.
func ParseToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
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

// Subject is the NATS subject of a stream group's events.
func Subject(stream, group string) string {
	return SubjectPrefix + Token(stream) + "." + Token(group)
}

// ParseSubject inverts Subject.
func ParseSubject(subject string) (stream, group string, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix)
	if !ok {
		return "", "", ErrBadToken
	}
	st, gt, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(gt, ".") {
		return "", "", ErrBadToken
	}
	if stream, err = ParseToken(st); err != nil {
		return "", "", err
	}
	if group, err = ParseToken(gt); err != nil {
		return "", "", err
	}
	return stream, group, nil
}
