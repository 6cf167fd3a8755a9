package natsfanout_test

import (
	"errors"
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
	f.Add(strings.Repeat(".", 1024))
	f.Add(strings.Repeat("a", natsfanout.MaxTokenBytes+1))
	f.Add(strings.Repeat("a", 47) + "." + strings.Repeat("b", 60))
	f.Fuzz(func(t *testing.T, name string) {
		tok := natsfanout.Token(name)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") || len(tok) > natsfanout.MaxTokenBytes {
			t.Fatalf("Token(%q) = %q is not a literal subject token of at most %d bytes", name, tok, natsfanout.MaxTokenBytes)
		}
		back, err := natsfanout.ParseToken(tok)
		if natsfanout.Hashed(tok) {
			if !errors.Is(err, natsfanout.ErrHashedToken) {
				t.Fatalf("ParseToken(%q) = %q, %v; want ErrHashedToken", tok, back, err)
			}
			return
		}
		if err != nil || back != name {
			t.Fatalf("ParseToken(Token(%q)) = %q, %v", name, back, err)
		}
	})
}

// Names at the 1024-byte limit, of the bytes that escape to three, give
// subjects far below NATS's 4096-byte control line, and names that share
// a long prefix still give different subjects.
func TestLongNamesBoundedAndDistinct(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, c := range []string{".", "a", "~", "é", "\x00"} {
		for _, n := range []int{natsfanout.MaxTokenBytes / 3, natsfanout.MaxTokenBytes/3 + 1, 100, 1023, 1024} {
			for _, tail := range []string{"", "x", "y"} {
				name := strings.Repeat(c, n/len(c)) + tail
				subj := natsfanout.Subject(name, name)
				if len(subj) > len(natsfanout.SubjectPrefix)+2*natsfanout.MaxTokenBytes+1 {
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
