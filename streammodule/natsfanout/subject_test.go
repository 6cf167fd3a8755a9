package natsfanout_test

import (
	"strings"
	"testing"

	"github.com/trinehq/trine/internal/subject"
	"github.com/trinehq/trine/streammodule/natsfanout"
)

var hostile = []string{"", ".", "*", ">", ":", "/", " ", "a.b", "a b", "chat.*", "room>", "~", "~2E", "%2E", "émoji 🎉", "流", "a\x00b", "-", "_", "A-z_09"}

func TestSubjectRoundTripAndIsolation(t *testing.T) {
	t.Parallel()
	seen := map[string][2]string{}
	for _, s := range hostile {
		for _, g := range hostile {
			subj := natsfanout.Subject(s, g)
			if prev, ok := seen[subj]; ok {
				t.Fatalf("Subject(%q, %q) = Subject(%q, %q) = %q", s, g, prev[0], prev[1], subj)
			}
			seen[subj] = [2]string{s, g}
			rest := strings.TrimPrefix(subj, natsfanout.SubjectPrefix)
			if strings.Count(rest, ".") != 1 || strings.ContainsAny(rest, "*> \t\r\n") {
				t.Fatalf("Subject(%q, %q) = %q is not two literal tokens", s, g, subj)
			}
			gs, gg, err := natsfanout.ParseSubject(subj)
			if err != nil || gs != s || gg != g {
				t.Fatalf("ParseSubject(%q) = %q, %q, %v; want %q, %q", subj, gs, gg, err, s, g)
			}
		}
	}
}

// Names at the 1024-byte limit, of the bytes that escape to three, give
// subjects far below NATS's 4096-byte control line, and names that share
// a long prefix still give different subjects.
func TestLongNamesBoundedAndDistinct(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, c := range []string{".", "a", "~", "é", "\x00"} {
		for _, n := range []int{subject.MaxTokenBytes / 3, subject.MaxTokenBytes/3 + 1, 100, 1023, 1024} {
			for _, tail := range []string{"", "x", "y"} {
				name := strings.Repeat(c, n/len(c)) + tail
				subj := natsfanout.Subject(name, name)
				if len(subj) > len(natsfanout.SubjectPrefix)+2*subject.MaxTokenBytes+1 {
					t.Fatalf("Subject of a %d-byte name is %d bytes", len(name), len(subj))
				}
				if prev, ok := seen[subj]; ok && prev != name {
					t.Fatalf("%q and %q share subject %q", prev, name, subj)
				}
				seen[subj] = name
			}
		}
	}
}
