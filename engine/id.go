package engine

import (
	"unicode"
	"unicode/utf8"

	"github.com/trinehq/trine/codes"
)

// MaxIDLength is the longest function, trigger or trigger-type id, in bytes.
const MaxIDLength = 256

// ValidateID checks that id is usable as a function, trigger or trigger-type
// id: a name (see ValidateName) of at most MaxIDLength bytes. kind names the
// id in the error ("function id").
func ValidateID(kind, id string) error {
	return ValidateName(kind, id, MaxIDLength)
}

// ValidateName checks a name that routes or decides (a function id, a
// queue, a topic) byte-exact, once, where it comes in: it must be
// non-empty, at most max bytes of valid UTF-8, printable (no control or
// format characters; the space character is allowed inside), and start and
// end with something other than a space. No transport can then alter it:
// HTTP-style headers (NATS's among them) trim the ends of a value and turn
// CR and LF into spaces. kind names the name in the error ("topic").
func ValidateName(kind, v string, max int) error {
	switch {
	case v == "":
		return Errorf(codes.InvalidArgument, "%s is empty", kind)
	case len(v) > max:
		return Errorf(codes.InvalidArgument, "%s is %d bytes long, the limit is %d", kind, len(v), max)
	case !utf8.ValidString(v):
		return Errorf(codes.InvalidArgument, "%s %q is not valid UTF-8", kind, v)
	case v[0] == ' ' || v[len(v)-1] == ' ':
		return Errorf(codes.InvalidArgument, "%s %q starts or ends with a space", kind, v)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return Errorf(codes.InvalidArgument, "%s %q contains the unprintable character %U", kind, v, r)
		}
	}
	return nil
}
