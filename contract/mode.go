package contract

import "strings"

// Mode is a compatibility mode, as in Confluent's Schema Registry. It says
// which earlier versions a new version is checked against, and how:
//   - BACKWARD: readers using the new version can read data written with
//     the last one (the new schema accepts everything the last accepted);
//   - FORWARD: readers using the last version can read data written with
//     the new one (the last schema accepts everything the new accepts);
//   - FULL: both;
//   - the _TRANSITIVE forms: the same against every earlier version;
//   - NONE: no check.
type Mode string

// The modes. The zero Mode means Backward.
const (
	Backward           Mode = "BACKWARD"
	BackwardTransitive Mode = "BACKWARD_TRANSITIVE"
	Forward            Mode = "FORWARD"
	ForwardTransitive  Mode = "FORWARD_TRANSITIVE"
	Full               Mode = "FULL"
	FullTransitive     Mode = "FULL_TRANSITIVE"
	None               Mode = "NONE"
)

// Modes lists every mode, the default first.
func Modes() []Mode {
	return []Mode{Backward, BackwardTransitive, Forward, ForwardTransitive, Full, FullTransitive, None}
}

// ParseMode reads a mode name, in any case; "" is Backward.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return Backward, nil
	}
	m := Mode(strings.ToUpper(s))
	for _, known := range Modes() {
		if m == known {
			return m, nil
		}
	}
	return "", invalidDefinition("mode %q: want one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE", truncate(s, 40))
}

func (m Mode) backward() bool {
	return m == Backward || m == BackwardTransitive || m == Full || m == FullTransitive
}

func (m Mode) forward() bool {
	return m == Forward || m == ForwardTransitive || m == Full || m == FullTransitive
}

// Transitive reports whether the mode checks every earlier version rather
// than the last one only.
func (m Mode) Transitive() bool {
	return m == BackwardTransitive || m == ForwardTransitive || m == FullTransitive
}
