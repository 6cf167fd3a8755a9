package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"html"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/trinehq/trine/internal/defaults"
	"github.com/trinehq/trine/internal/origin"
	"github.com/trinehq/trine/internal/ratelog"
)

//go:embed dist/console.js web/index.html web/style.css
var assets embed.FS

// files are the assets by the name they are served under.
var files = map[string]string{"": "web/index.html", "style.css": "web/style.css", "console.js": "dist/console.js"}

// Path is where the console is served.
const Path = "/console"

// cookieName carries the console token from the first request that
// brought it (?token=) to the page's later requests.
const cookieName = "trine_console"

// Config configures a Handler.
type Config struct {
	// Open serves the console to anyone who reaches it (a loopback
	// listener); otherwise a request needs a token Admit accepts.
	Open bool
	// Admit reports whether token may open the console; nil admits no
	// token.
	Admit func(token string) bool
	// StreamPort and IIIPort are the ports of the stream listener and the
	// iii listener the page connects to, on the host it was loaded from
	// (0: none).
	StreamPort, IIIPort int
	// TLS makes the page use https and wss.
	TLS bool
	// Origin refuses requests for a Host that is not the listener's (DNS
	// rebinding) or from other origins. Default: the zero Policy, which
	// accepts only loopback hosts on a loopback listener.
	Origin *origin.Policy
	// Logger receives refused requests, at most one every
	// ratelog.DefaultEvery (with the number held back). Default: none.
	Logger *slog.Logger
}

// Handler serves the console under Path.
type Handler struct {
	cfg        Config
	refusals   atomic.Int64
	refusalLog ratelog.Limiter
}

// AuthRefusals counts the requests refused for want of a console token
// (401).
func (h *Handler) AuthRefusals() int64 { return h.refusals.Load() }

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.Origin == nil {
		cfg.Origin = &origin.Policy{}
	}
	defaults.Logger(&cfg.Logger)
	return &Handler{cfg: cfg}
}

// refuse answers r with status and msg, and logs it (rate-limited).
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.refusalLog.Warn(h.cfg.Logger, "console request refused", "remote", r.RemoteAddr, "status", status, "reason", msg)
	http.Error(w, msg, status)
}

// Loopback reports whether addr (a listener's host:port) is bound to a
// loopback address only.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// token is the console token a request carries: ?token=, the
// Authorization header (Bearer), or the cookie.
func token(r *http.Request) (tok string, fromQuery bool) {
	if t := r.URL.Query().Get("token"); t != "" {
		return t, true
	}
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:]), false
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return c.Value, false
	}
	return "", false
}

// ServeHTTP serves the page and its assets.
//
// http triggers share this origin, so any page a worker serves here can
// run scripts that fetch what the console serves. The console token is
// therefore only in the document itself (a meta element the script reads
// and removes), and the document is served only to a top-level
// navigation (Sec-Fetch-Dest: document), in no frame, with
// Cross-Origin-Opener-Policy: same-origin so that a page that opens it
// gets no handle on it, and with a strict Content-Security-Policy.
// Nothing a fetch can read carries the token.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if ref := h.cfg.Origin.Check(r); ref != nil {
		http.Error(w, "console: "+ref.Reason, ref.Status)
		return
	}
	tok, fromQuery := token(r)
	if fromQuery && !typedNavigation(r) {
		// Login CSRF: another site must not set the user's console token.
		h.refuse(w, r, http.StatusForbidden, "console: ?token= is taken only from a link typed or followed on this origin")
		return
	}
	// On an open listener any token passes: the page only hands it on
	// to the listeners, which check it.
	if !h.cfg.Open && (tok == "" || h.cfg.Admit == nil || !h.cfg.Admit(tok)) {
		msg := "console: this listener is not bound to loopback; open " + Path + "?token=TOKEN with a console token " +
			"(--console-tokens-file, or a --stream-jwt-* token with \"console\": true)"
		if tok != "" {
			msg = "console: not a console token"
		}
		h.refusals.Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="trine console"`)
		h.refuse(w, r, http.StatusUnauthorized, msg)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Cross-Origin-Resource-Policy", "same-origin")
	if fromQuery {
		// Keep the token out of the address bar and history.
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: tok, Path: Path, HttpOnly: true, Secure: h.cfg.TLS,
			SameSite: http.SameSiteStrictMode, Expires: time.Now().Add(12 * time.Hour)})
		http.Redirect(w, r, Path+"/", http.StatusSeeOther)
		return
	}
	switch r.URL.Path {
	case Path:
		http.Redirect(w, r, Path+"/", http.StatusMovedPermanently)
	case Path + "/":
		h.document(w, r, tok)
	default:
		name, ok := files[strings.TrimPrefix(r.URL.Path, Path+"/")]
		if !ok || name == files[""] {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, assets, name)
	}
}

// typedNavigation reports whether r is a top-level navigation the user
// typed or followed from this origin. A client that sends no
// Sec-Fetch-* headers (not a browser) passes.
func typedNavigation(r *http.Request) bool {
	site, mode := r.Header.Get("Sec-Fetch-Site"), r.Header.Get("Sec-Fetch-Mode")
	if site == "" && mode == "" {
		return true
	}
	return (site == "none" || site == "same-origin") && mode == "navigate"
}

// document serves index.html with the page's settings, the token among
// them, in a meta element, and only to a top-level navigation.
func (h *Handler) document(w http.ResponseWriter, r *http.Request, tok string) {
	if d := r.Header.Get("Sec-Fetch-Dest"); d != "" && d != "document" {
		http.Error(w, "console: the page is served only to a top-level navigation", http.StatusForbidden)
		return
	}
	page, err := assets.ReadFile(files[""])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	settings, _ := json.Marshal(struct {
		StreamPort int    `json:"stream_port,omitempty"`
		IIIPort    int    `json:"iii_port,omitempty"`
		TLS        bool   `json:"tls,omitempty"`
		Token      string `json:"token,omitempty"`
	}{h.cfg.StreamPort, h.cfg.IIIPort, h.cfg.TLS, tok})
	meta := `<meta name="trine-console" content="` + html.EscapeString(string(settings)) + `">`
	page = bytes.Replace(page, []byte(`<meta charset="utf-8">`), []byte(`<meta charset="utf-8">`+"\n"+meta), 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", h.csp())
	w.Header().Set("Cross-Origin-Opener-Policy", "same-origin")
	_, _ = w.Write(page)
}

// csp lets the page load only its own assets and talk only to its own
// origin and the two listeners' ports; blob: workers are @trine/client's
// unthrottled timers (clients/js/src/timers.ts).
func (h *Handler) csp() string {
	connect := "'self'"
	for _, p := range []int{h.cfg.StreamPort, h.cfg.IIIPort} {
		if p == 0 {
			continue
		}
		for _, scheme := range []string{"http", "ws"} {
			if h.cfg.TLS {
				scheme += "s"
			}
			connect += " " + scheme + "://*:" + strconv.Itoa(p)
		}
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}
