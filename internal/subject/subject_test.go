package subject_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/trinehq/trine/internal/subject"
)

var hostile = []string{"", ".", "*", ">", ":", "/", " ", "a.b", "a b", "chat.*", "room>", "~", "~2E", "%2E", "émoji 🎉", "流", "a\x00b", "-", "_", "A-z_09"}

func TestParseTokenRejectsNonCanonical(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "~4", "~zz", "~41", "a.b", "a*", "~2e", "é"} {
		if _, err := subject.ParseToken(tok); err == nil {
			t.Errorf("ParseToken(%q) succeeded, want ErrBadToken", tok)
		}
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Add(strings.Repeat(".", 1024))
	f.Add(strings.Repeat("a", subject.MaxTokenBytes+1))
	f.Add(strings.Repeat("a", 47) + "." + strings.Repeat("b", 60))
	f.Fuzz(func(t *testing.T, name string) {
		tok := subject.Token(name)
		if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") || len(tok) > subject.MaxTokenBytes {
			t.Fatalf("Token(%q) = %q is not a literal subject token of at most %d bytes", name, tok, subject.MaxTokenBytes)
		}
		back, err := subject.ParseToken(tok)
		if subject.Hashed(tok) {
			if !errors.Is(err, subject.ErrHashedToken) {
				t.Fatalf("ParseToken(%q) = %q, %v; want ErrHashedToken", tok, back, err)
			}
			return
		}
		if err != nil || back != name {
			t.Fatalf("ParseToken(Token(%q)) = %q, %v", name, back, err)
		}
	})
}

// A name that needs no escaping is its own token, without a copy: every
// event's subject is made of two.
func TestPlainTokenAllocatesNothing(t *testing.T) {
	name := "orders-2026_eu"
	if n := testing.AllocsPerRun(100, func() {
		if subject.Token(name) != name {
			t.Fatal("a plain name changed")
		}
	}); n != 0 {
		t.Errorf("Token of a plain name: %v allocations", n)
	}
	if got := subject.Token("a.b"); got != "a~2Eb" {
		t.Errorf("Token(a.b) = %q", got)
	}
}
