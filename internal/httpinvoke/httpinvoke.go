// Package httpinvoke calls HTTP-invoked functions: iii's registerfunction
// with an invocation {url, method, timeout_ms, headers, auth}, whose calls
// the engine makes itself, over HTTP, instead of sending them to the
// worker. It checks the target where it matters: at registration (scheme,
// host allowlist, secrets the operator named) and on every connection (the
// address actually dialled may not be private, loopback or one of the
// engine's own listeners), so a name that resolves elsewhere later cannot
// reach inside.
package httpinvoke

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trinehq/trine/engine"
)

// Defaults for Config.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 4 << 20
	DefaultMaxInFlight      = 64
	maxHeaders              = 64
)

// Config says which targets may be called.
type Config struct {
	// AllowedHosts are path.Match patterns of host names ("*",
	// "*.example.com", "api.example.com"). Empty: HTTP-invoked functions
	// are refused.
	AllowedHosts []string
	// AllowHTTP permits http:// URLs; otherwise only https://.
	AllowHTTP bool
	// AllowPrivate permits loopback, private, link-local and unspecified
	// addresses. The engine's own listeners stay refused.
	AllowPrivate bool
	// Env names the environment variables an auth block may name as its
	// secret (secret_key, token_key, value_key); any other is refused.
	Env []string
	// LookupEnv reads them (os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Own are the engine's own listeners, never dialled: an unspecified
	// address (0.0.0.0:port) stands for every local address on its port.
	Own []netip.AddrPort
	// MaxResponseBytes bounds a response body. Default 4 MiB.
	MaxResponseBytes int64
	// MaxTimeout bounds timeout_ms; it is also the default. Default 30 s.
	MaxTimeout time.Duration
	// MaxInFlight bounds the calls one worker connection's HTTP-invoked
	// functions have running at once; a further invocation fails with
	// overloaded. Default DefaultMaxInFlight.
	MaxInFlight int
}

// Invoker makes the calls.
type Invoker struct {
	cfg    Config
	client *http.Client
}

// MaxInFlight is Config.MaxInFlight, defaulted.
func (iv *Invoker) MaxInFlight() int { return iv.cfg.MaxInFlight }

// New returns an Invoker.
func New(cfg Config) *Invoker {
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = DefaultTimeout
	}
	inv := &Invoker{cfg: cfg}
	d := &net.Dialer{Timeout: 10 * time.Second, Control: inv.checkDial}
	tr := &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16,
		IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: cfg.MaxTimeout}
	inv.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is an answer, not a new target
	}}
	return inv
}

// Close releases idle connections.
func (i *Invoker) Close() { i.client.CloseIdleConnections() }

// Function is one registered HTTP-invoked function.
type Function struct {
	url     string
	method  string
	timeout time.Duration
	headers http.Header
	auth    auth
}

type auth struct {
	kind   string // "", hmac, bearer, api_key
	header string
	secret string
}

// spec is iii's HttpInvocationConfig.
type spec struct {
	URL       string            `json:"url"`
	Method    string            `json:"method"`
	TimeoutMS *int64            `json:"timeout_ms"`
	Headers   map[string]string `json:"headers"`
	Auth      *struct {
		Type      string `json:"type"`
		SecretKey string `json:"secret_key"`
		TokenKey  string `json:"token_key"`
		Header    string `json:"header"`
		ValueKey  string `json:"value_key"`
	} `json:"auth"`
}

func refuse(format string, args ...any) error {
	return engine.Errorf(engine.CodeInvalidArgument, "invocation: "+format, args...)
}

// Parse checks an invocation block at registration.
func (i *Invoker) Parse(raw json.RawMessage) (*Function, error) {
	if len(i.cfg.AllowedHosts) == 0 {
		return nil, refuse("HTTP-invoked functions are off (--http-invoke-hosts is empty)")
	}
	var s spec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, refuse("%v", err)
	}
	u, err := url.Parse(s.URL)
	switch {
	case err != nil || s.URL == "":
		return nil, refuse("url %q does not parse", s.URL)
	case u.Scheme != "https" && !(u.Scheme == "http" && i.cfg.AllowHTTP):
		return nil, refuse("url %q: the scheme must be https (http only with --http-invoke-allow-http)", s.URL)
	case u.User != nil:
		return nil, refuse("url %q carries credentials: use auth", s.URL)
	case u.Hostname() == "":
		return nil, refuse("url %q has no host", s.URL)
	}
	host := strings.ToLower(u.Hostname())
	if !slices.ContainsFunc(i.cfg.AllowedHosts, func(p string) bool { ok, _ := path.Match(p, host); return ok }) {
		return nil, refuse("host %q is not in --http-invoke-hosts", host)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := i.checkAddr(netip.AddrPortFrom(ip.Unmap(), port(u))); err != nil {
			return nil, refuse("url %q: %v", s.URL, err)
		}
	}
	f := &Function{url: u.String(), method: strings.ToUpper(s.Method), timeout: i.cfg.MaxTimeout, headers: http.Header{}}
	if f.method == "" {
		f.method = http.MethodPost
	}
	if !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, f.method) {
		return nil, refuse("method %q: want GET, POST, PUT, PATCH or DELETE", s.Method)
	}
	if s.TimeoutMS != nil {
		t := time.Duration(*s.TimeoutMS) * time.Millisecond
		if t <= 0 || t > i.cfg.MaxTimeout {
			return nil, refuse("timeout_ms %d: want 1 to %d", *s.TimeoutMS, i.cfg.MaxTimeout.Milliseconds())
		}
		f.timeout = t
	}
	if len(s.Headers) > maxHeaders {
		return nil, refuse("%d headers, the limit is %d", len(s.Headers), maxHeaders)
	}
	for k, v := range s.Headers {
		if !validHeader(k, v) {
			return nil, refuse("header %q is not a valid HTTP header", k)
		}
		f.headers.Set(k, v)
	}
	if a := s.Auth; a != nil {
		name := ""
		switch a.Type {
		case "hmac":
			name = a.SecretKey
		case "bearer":
			name = a.TokenKey
		case "api_key":
			name = a.ValueKey
			if !validHeader(a.Header, "x") {
				return nil, refuse("auth header %q is not a valid HTTP header name", a.Header)
			}
		default:
			return nil, refuse("auth type %q: want hmac, bearer or api_key", a.Type)
		}
		if !slices.Contains(i.cfg.Env, name) {
			return nil, refuse("auth names the environment variable %q, which is not in --http-invoke-env", name)
		}
		v, ok := "", false
		if i.cfg.LookupEnv != nil {
			v, ok = i.cfg.LookupEnv(name)
		}
		if !ok || v == "" {
			return nil, refuse("the environment variable %q is not set", name)
		}
		f.auth = auth{kind: a.Type, header: a.Header, secret: v}
	}
	return f, nil
}

func port(u *url.URL) uint16 {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return uint16(p)
	}
	if u.Scheme == "http" {
		return 80
	}
	return 443
}

func validHeader(k, v string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return !strings.ContainsAny(v, "\r\n\x00")
}

var errOwn = errors.New("the address is one of the engine's own listeners")

// checkAddr refuses private addresses (unless allowed) and the engine's
// own listeners.
func (i *Invoker) checkAddr(ap netip.AddrPort) error {
	ip := ap.Addr().Unmap()
	for _, own := range i.cfg.Own {
		if own.Port() == ap.Port() && (own.Addr().Unmap() == ip || own.Addr().IsUnspecified() || ip.IsLoopback() && own.Addr().IsLoopback()) {
			return errOwn
		}
	}
	if !i.cfg.AllowPrivate && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return fmt.Errorf("the address %s is private (--http-invoke-allow-private)", ip)
	}
	return nil
}

// checkDial runs on every connection, with the address resolved.
func (i *Invoker) checkDial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	return i.checkAddr(ap)
}

// Call invokes f with payload, as iii does: a JSON body, x-iii-* headers,
// the auth, and the result as the JSON answer of a 2xx response. A non-2xx
// answer's {"error":{code,message}} becomes the call's error.
func (i *Invoker) Call(ctx context.Context, f *Function, functionID, invocationID string, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	if len(payload) == 0 {
		payload = []byte("null")
	}
	req, err := http.NewRequestWithContext(ctx, f.method, f.url, bytes.NewReader(payload))
	if err != nil {
		return nil, engine.Errorf(engine.CodeInternal, "invoke %s: %v", functionID, err)
	}
	req.Header = f.headers.Clone()
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Iii-Function-Path", functionID)
	req.Header.Set("X-Iii-Invocation-Id", invocationID)
	req.Header.Set("X-Iii-Timestamp", ts)
	switch f.auth.kind {
	case "hmac":
		req.Header.Set("X-Iii-Signature", Sign(payload, f.auth.secret, ts))
	case "bearer":
		req.Header.Set("Authorization", "Bearer "+f.auth.secret)
	case "api_key":
		req.Header.Set(f.auth.header, f.auth.secret)
	}
	res, err := i.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, engine.Errorf(engine.CodeDeadlineExceeded, "invoke %s: no answer from %s within %v", functionID, f.url, f.timeout)
		}
		return nil, engine.Errorf(engine.CodeUnavailable, "invoke %s: %v", functionID, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, i.cfg.MaxResponseBytes+1))
	switch {
	case err != nil:
		return nil, engine.Errorf(engine.CodeUnavailable, "invoke %s: reading the answer: %v", functionID, err)
	case int64(len(body)) > i.cfg.MaxResponseBytes:
		return nil, engine.Errorf(engine.CodeMessageTooLarge, "invoke %s: the answer is over %d bytes", functionID, i.cfg.MaxResponseBytes)
	}
	if res.StatusCode/100 == 2 {
		if len(bytes.TrimSpace(body)) == 0 {
			return []byte("null"), nil
		}
		if !json.Valid(body) {
			return nil, engine.Errorf(engine.CodeHandlerError, "invoke %s: %s answered %d with a body that is not JSON", functionID, f.url, res.StatusCode)
		}
		return body, nil
	}
	var env struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Code != "" {
		return nil, &engine.Error{Code: engine.Code(env.Error.Code), Message: env.Error.Message}
	}
	return nil, engine.Errorf(engine.CodeHandlerError, "invoke %s: %s answered HTTP %d", functionID, f.url, res.StatusCode)
}

// Sign is iii's request signature: "sha256=" and the hex HMAC-SHA256, keyed
// by the secret, of the timestamp, ":" and the base64 of the body.
func Sign(body []byte, secret, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp + ":" + base64.StdEncoding.EncodeToString(body)))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
