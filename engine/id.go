package engine

import (
	"unicode"
	"unicode/utf8"
)

// MaxIDLength is the longest function, trigger or trigger-type id, in bytes.
const MaxIDLength = 256

// ValidateID checks that id is usable as a function, trigger or trigger-type
// id: non-empty, at most MaxIDLength bytes of valid UTF-8, and printable (no
// control or format characters; the space character is allowed). kind names
// the id in the error ("function id").
func ValidateID(kind, id string) error {
	switch {
	case id == "":
		return Errorf(CodeInvalidArgument, "%s is empty", kind)
	case len(id) > MaxIDLength:
		return Errorf(CodeInvalidArgument, "%s is %d bytes long, the limit is %d", kind, len(id), MaxIDLength)
	case !utf8.ValidString(id):
		return Errorf(CodeInvalidArgument, "%s %q is not valid UTF-8", kind, id)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return Errorf(CodeInvalidArgument, "%s %q contains the unprintable character %U", kind, id, r)
		}
	}
	return nil
}
