package natsfanout

import (
	"strings"

	"github.com/trinehq/trine/internal/subject"
)

// SubjectPrefix starts every stream event subject.
const SubjectPrefix = "trine.stream."

// Subject is the NATS subject of a stream group's events.
func Subject(stream, group string) string {
	return SubjectPrefix + subject.Token(stream) + "." + subject.Token(group)
}

// ParseSubject inverts Subject when neither token is hashed.
func ParseSubject(subj string) (stream, group string, err error) {
	rest, ok := strings.CutPrefix(subj, SubjectPrefix)
	if !ok {
		return "", "", subject.ErrBadToken
	}
	st, gt, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(gt, ".") {
		return "", "", subject.ErrBadToken
	}
	if stream, err = subject.ParseToken(st); err != nil {
		return "", "", err
	}
	if group, err = subject.ParseToken(gt); err != nil {
		return "", "", err
	}
	return stream, group, nil
}
