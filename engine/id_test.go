package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/trinehq/trine/engine"
)

// TestValidateNameIsByteExact: a name that routes or decides is refused
// when a transport could alter it: white space at either end, a control
// character (CR, LF, NUL, tab), invalid UTF-8. Inner spaces stay.
func TestValidateNameIsByteExact(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"admin::secret", true}, {"a b", true}, {"ünï topic/with.dots*", true},
		{"admin::secret ", false}, {" admin::secret", false}, {"orders ", false}, {" ", false},
		{"news\nx", false}, {"a\r", false}, {"nul\x00", false}, {"tab\tx", false}, {"\xc3", false},
		{"nbsp\u00a0", false}, {"", false}, {strings.Repeat("x", 65), false},
	} {
		err := engine.ValidateName("topic", tt.name, 64)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, engine.ErrInvalidArgument) {
			t.Errorf("ValidateName(%q) = %v, want invalid_argument", tt.name, err)
		}
		if idErr := engine.ValidateID("function id", tt.name); (idErr == nil) != (err == nil) && len(tt.name) <= 64 {
			t.Errorf("ValidateID(%q) = %v, ValidateName: %v; want the same answer", tt.name, idErr, err)
		}
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"math::add", "", "a\nb", "🎉", "\xff", "a ", " a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if engine.ValidateName("name", v, 64) != nil {
			return
		}
		if v == "" || len(v) > 64 || strings.TrimSpace(v) != v || strings.ContainsAny(v, "\r\n\x00\t") {
			t.Fatalf("ValidateName accepted %q", v)
		}
	})
}
