// Package origin decides which requests a listener that browsers can reach
// accepts, by their Host and Origin headers, and logs the refusals.
//
// DNS rebinding is the attack it stops: a page on evil.example, whose name
// is made to resolve to 127.0.0.1, sends requests with Host and Origin both
// evil.example, so "Origin equals Host" proves nothing. A listener accepts
// a Host only if it is one of its configured public hosts or, on a
// loopback listener, a loopback name or address; and a browser request is
// same-origin only if its Origin's host is such a host too.
//
// On a loopback listener addressed by a loopback name, pages of any
// loopback origin (http://localhost:8000, http://127.0.0.1:5173,
// http://[::1]:3000) are allowed too: only a process of this machine can
// serve them, and a rebinding page has its own name as Origin and Host.
//
// Concurrency: a Policy is read-only once built and safe for concurrent
// use; the package starts no goroutines.
package origin

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/trinehq/trine/internal/ratelog"
)

// Policy is one listener's rule. The zero Policy accepts loopback hosts on
// loopback listeners, any host elsewhere, and same-origin browsers only.
type Policy struct {
	// Origins lists the browser origins allowed besides same-origin ones
	// ("*" allows any), as scheme://host[:port].
	Origins []string
	// Hosts lists the listener's public host names (no port): the Host
	// values it accepts besides loopback ones, and the hosts whose pages
	// are same-origin. Empty: a loopback listener accepts only loopback
	// hosts; any other accepts any Host, but no page is same-origin unless
	// it is on a loopback host.
	Hosts []string
	// Logger receives refusals, at most one every LogEvery (with the
	// number held back). Default: none.
	Logger   *slog.Logger
	LogEvery time.Duration // default ratelog.DefaultEvery, 10s
	// OriginsSetting and HostsSetting name the settings that allow more,
	// for the log ("--allowed-origins").
	OriginsSetting, HostsSetting string

	limit ratelog.Limiter
}

// Refusal is why a request was refused.
type Refusal struct {
	Status int // 403 or 421
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// Check returns nil when r may proceed, or why not. A request without an
// Origin header (not a browser) is checked for its Host only.
func (p *Policy) Check(r *http.Request) *Refusal {
	loopback := localIsLoopback(r)
	host := hostname(r.Host)
	if !p.hostAllowed(host, loopback) {
		return p.refuse(r, &Refusal{Status: http.StatusMisdirectedRequest,
			Reason: fmt.Sprintf("host %q is not one of this listener's hosts", host)},
			fmt.Sprintf("add it to %s", orDefault(p.HostsSetting, "the allowed hosts")))
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	for _, a := range p.Origins {
		if a == "*" || strings.EqualFold(a, o) {
			return nil
		}
	}
	if loopback && isLoopbackName(host) && loopbackOrigin(o) {
		return nil // a page of this machine, to this machine
	}
	if o == "null" {
		return p.refuse(r, &Refusal{Status: http.StatusForbidden, Reason: `origin "null" not allowed (a page opened from file://, or a sandboxed frame)`},
			nullAdvice)
	}
	u, err := url.Parse(o)
	if err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) && p.hostAllowed(hostname(u.Host), loopback) &&
		(len(p.Hosts) > 0 || isLoopbackName(hostname(u.Host))) {
		return nil // same-origin, on a host that is really this listener's
	}
	return p.refuse(r, &Refusal{Status: http.StatusForbidden, Reason: fmt.Sprintf("origin %q not allowed", o)},
		fmt.Sprintf("to allow it, add %s to %s", o, orDefault(p.OriginsSetting, "the allowed origins")))
}

// nullAdvice is the fix for a page that sends Origin null: any sandboxed
// page can send it, so allowing it would allow every page.
const nullAdvice = "serve the page over http from localhost (for example python3 -m http.server in its directory, then open http://localhost:8000); Origin null, sent by file:// pages and sandboxed frames, cannot be allowed"

// loopbackOrigin reports whether o is the origin of a page served over
// http or https from a loopback name or address.
func loopbackOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Path == "" && u.User == nil && isLoopbackName(hostname(u.Host))
}

// CheckAllowed reports why an allowed-origin value can never match the
// Origin header of a browser, naming the value that would: an Origin is
// scheme://host[:port], with no path, no default port, and no wildcard
// ("*" alone allows any).
func CheckAllowed(v string) error {
	if v == "*" {
		return nil
	}
	if v == "null" {
		return fmt.Errorf("%q cannot be allowed: %s", v, nullAdvice)
	}
	if strings.Contains(v, "*") {
		return fmt.Errorf("%q never matches: only * alone is a wildcard; list each origin", v)
	}
	u, err := url.Parse(v)
	if err != nil || !strings.Contains(v, "://") {
		// host:port, or a bare host: the scheme is missing.
		scheme := "https"
		if isLoopbackName(hostname(v)) || strings.Contains(v, ":") {
			scheme = "http"
		}
		if u, err := url.Parse(scheme + "://" + v); err == nil && u.Host != "" {
			return fmt.Errorf("%q never matches: an Origin has a scheme; use %q (or %q)", v, canonical(u), otherScheme(u))
		}
		return fmt.Errorf("%q is not an origin such as https://app.example", v)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host: an origin is scheme://host[:port]", v)
	}
	switch u.Scheme = strings.ToLower(u.Scheme); u.Scheme {
	case "ws", "wss":
		u.Scheme = "http" + strings.TrimPrefix(u.Scheme, "ws")
		return fmt.Errorf("%q never matches: an Origin is the page's, over http or https; use %q", v, canonical(u))
	}
	if want := canonical(u); !strings.EqualFold(want, v) {
		return fmt.Errorf("%q never matches: an Origin is scheme://host[:port], with no path, query, user or default port; use %q", v, want)
	}
	return nil
}

// canonical is the Origin a browser sends for a page at u.
func canonical(u *url.URL) string {
	host := u.Host
	if h, port, err := net.SplitHostPort(host); err == nil &&
		(port == "" || (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443")) {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	return u.Scheme + "://" + host
}

// otherScheme is canonical(u) with https for http and http for https.
func otherScheme(u *url.URL) string {
	o := *u
	o.Scheme = map[string]string{"http": "https", "https": "http"}[u.Scheme]
	return canonical(&o)
}

func (p *Policy) hostAllowed(host string, loopbackListener bool) bool {
	for _, h := range p.Hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	switch {
	case isLoopbackName(host):
		return true
	case loopbackListener:
		return false
	}
	return len(p.Hosts) == 0
}

func (p *Policy) refuse(r *http.Request, ref *Refusal, how string) *Refusal {
	if p.Logger == nil {
		return ref
	}
	held, ok := p.limit.Allow(p.LogEvery)
	if !ok {
		return ref
	}
	p.Logger.Warn("browser request refused", "reason", ref.Reason, "status", ref.Status, "remote", r.RemoteAddr,
		"path", r.URL.Path, "how_to_allow", how, "refusals_not_logged", held)
	return ref
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// hostname is host without its port and brackets.
func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func isLoopbackName(h string) bool {
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// localIsLoopback reports whether r arrived on a loopback address.
func localIsLoopback(r *http.Request) bool {
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
