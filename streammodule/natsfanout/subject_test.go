package natsfanout_test

import (
	"strings"
	"testing"

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

func TestParseTokenRejectsNonCanonical(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "~4", "~zz", "~41", "a.b", "a*", "~2e", "é"} {
		if _, err := natsfanout.ParseToken(tok); err == nil {
			t.Errorf("ParseToken(%q) succeeded, want ErrBadToken", tok)
		}
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		tok := natsfanout.Token(name)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") {
			t.Fatalf("Token(%q) = %q is not a literal subject token", name, tok)
		}
		back, err := natsfanout.ParseToken(tok)
		if err != nil || back != name {
			t.Fatalf("ParseToken(Token(%q)) = %q, %v", name, back, err)
		}
	})
}
