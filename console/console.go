package console

import (
	"embed"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trinehq/trine/internal/origin"
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
}

// Handler serves the console under Path.
type Handler struct{ cfg Config }

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.Origin == nil {
		cfg.Origin = &origin.Policy{}
	}
	return &Handler{cfg: cfg}
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

// ServeHTTP serves the page, its assets and config.json.
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
	// On an open listener any token passes: the page only hands it on
	// to the listeners, which check it.
	tok, fromQuery := token(r)
	if !h.cfg.Open && (tok == "" || h.cfg.Admit == nil || !h.cfg.Admit(tok)) {
		msg := "console: this listener is not bound to loopback; open " + Path + "?token=TOKEN with a console token " +
			"(--console-tokens-file, or a --stream-jwt-* token with \"console\": true)"
		if tok != "" {
			msg = "console: not a console token"
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="trine console"`)
		http.Error(w, msg, http.StatusUnauthorized)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
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
	case Path + "/config.json":
		h.config(w, r, tok)
	default:
		name, ok := files[strings.TrimPrefix(r.URL.Path, Path+"/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeFileFS(w, r, assets, name)
	}
}

// config tells the page where the listeners are and the token to use.
func (h *Handler) config(w http.ResponseWriter, r *http.Request, tok string) {
	host := r.Host
	if hh, _, err := net.SplitHostPort(r.Host); err == nil {
		host = hh
	}
	url := func(scheme string, port int) string {
		if port == 0 {
			return ""
		}
		if h.cfg.TLS {
			scheme += "s"
		}
		return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		Stream string `json:"stream"`
		III    string `json:"iii"`
		Token  string `json:"token,omitempty"`
	}{url("http", h.cfg.StreamPort), url("ws", h.cfg.IIIPort), tok})
}
