package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/enginetest"
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

// Invocation ids are distinct version 4 UUIDs, as iii's SDKs require,
// across many calls at once.
func TestInvocationIDsAreUUIDs(t *testing.T) {
	t.Parallel()
	e := enginetest.Run(t, engine.Config{})
	var mu sync.Mutex
	seen := map[string]bool{}
	if err := e.RegisterFunction("f", "", engine.HandlerFunc(func(_ context.Context, c engine.Call) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		seen[c.InvocationID] = true
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	const callers, calls = 8, 100
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range calls {
				if _, err := e.Trigger(context.Background(), engine.Call{FunctionID: "f"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != callers*calls {
		t.Fatalf("%d distinct ids for %d calls", len(seen), callers*calls)
	}
	for id := range seen {
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 4 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Fatalf("id %q: %v, version %v, variant %v", id, err, u.Version(), u.Variant())
		}
	}
}
