// Package origin decides which browser origins may open a WebSocket or
// SSE connection, for every listener that browsers can reach.
package origin

import (
	"net/http"
	"strings"
)

// Allowed reports whether r may connect: requests without an Origin header
// (non-browser clients) always may; a browser may when its Origin is the
// request's own host or is listed in allowed ("*" allows any).
func Allowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	for _, o := range allowed {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	host := origin
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	return strings.EqualFold(host, r.Host)
}
