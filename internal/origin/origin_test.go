package origin_test

import (
	"net/http/httptest"
	"testing"

	"github.com/trinehq/trine/internal/origin"
)

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		origin  string
		allowed []string
		want    bool
	}{
		{"", nil, true},
		{"http://engine.test:3112", nil, true},
		{"HTTP://ENGINE.TEST:3112", nil, true},
		{"https://evil.test", nil, false},
		{"https://app.test", []string{"https://app.test"}, true},
		{"https://app.test", []string{"https://other.test"}, false},
		{"https://app.test:8443", []string{"https://app.test"}, false},
		{"https://anything.test", []string{"*"}, true},
		{"null", nil, false},
	} {
		r := httptest.NewRequest("GET", "http://engine.test:3112/", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := origin.Allowed(r, tc.allowed); got != tc.want {
			t.Errorf("Origin %q, allowed %v: %v, want %v", tc.origin, tc.allowed, got, tc.want)
		}
	}
}
