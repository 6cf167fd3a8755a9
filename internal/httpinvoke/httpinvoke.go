// Package httpinvoke calls HTTP-invoked functions: iii's registerfunction
// with an invocation {url, method, timeout_ms, headers, auth}, whose calls
// the engine makes itself, over HTTP, instead of sending them to the
// worker. It checks the target where it matters: at registration (scheme,
// host allowlist, secrets the operator named) and on every connection (the
// address actually dialled may not be unspecified, private, loopback or one
// of the engine's own listeners), so a name that resolves elsewhere later
// cannot reach inside. Its errors say what failed in its own words: what a
// failed target sent is never repeated to the caller.
//
// Concurrency: an Invoker is safe for concurrent use; each Call runs on its
// caller's goroutine, and Close closes the idle connections of its HTTP
// client. The package starts no goroutines of its own.
package httpinvoke

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/defaults"
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
	// AllowPrivate permits loopback, private and link-local addresses.
	// The engine's own listeners and the unspecified addresses (0.0.0.0,
	// ::), which reach this host itself, stay refused.
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
	defaults.Positive(&cfg.MaxResponseBytes, DefaultMaxResponseBytes)
	defaults.Positive(&cfg.MaxInFlight, DefaultMaxInFlight)
	defaults.Positive(&cfg.MaxTimeout, DefaultTimeout)
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
	return engine.Errorf(codes.InvalidArgument, "invocation: "+format, args...)
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
	u, err := i.checkURL(s.URL)
	if err != nil {
		return nil, err
	}
	f := &Function{url: u.String(), method: strings.ToUpper(s.Method), timeout: i.cfg.MaxTimeout, headers: http.Header{}}
	if err := i.options(f, s); err != nil {
		return nil, err
	}
	if s.Auth != nil {
		if f.auth, err = i.parseAuth(s); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// checkURL checks the url of an invocation: its scheme, its host among
// --http-invoke-hosts, and, for an IP address, one it may reach.
func (i *Invoker) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || raw == "":
		return nil, refuse("url %q does not parse", raw)
	case u.Scheme != "https" && !(u.Scheme == "http" && i.cfg.AllowHTTP):
		return nil, refuse("url %q: the scheme must be https (http only with --http-invoke-allow-http)", raw)
	case u.User != nil:
		return nil, refuse("url %q carries credentials: use auth", raw)
	case u.Hostname() == "":
		return nil, refuse("url %q has no host", raw)
	}
	host := strings.ToLower(u.Hostname())
	if !slices.ContainsFunc(i.cfg.AllowedHosts, func(p string) bool { ok, _ := path.Match(p, host); return ok }) {
		return nil, refuse("host %q is not in --http-invoke-hosts", host)
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err == nil:
		if err := i.checkAddr(netip.AddrPortFrom(ip, port(u))); err != nil {
			return nil, refuse("url %q: %v", raw, err)
		}
	case numeric(host):
		return nil, refuse("url %q: the host is a number but not an IP address in the usual form (a.b.c.d or [IPv6])", raw)
	}
	return u, nil
}

// options reads the method, timeout and headers of s into f.
func (i *Invoker) options(f *Function, s spec) error {
	if f.method == "" {
		f.method = http.MethodPost
	}
	if !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE"}, f.method) {
		return refuse("method %q: want GET, POST, PUT, PATCH or DELETE", s.Method)
	}
	if s.TimeoutMS != nil {
		t := time.Duration(*s.TimeoutMS) * time.Millisecond
		if t <= 0 || t > i.cfg.MaxTimeout {
			return refuse("timeout_ms %d: want 1 to %d", *s.TimeoutMS, i.cfg.MaxTimeout.Milliseconds())
		}
		f.timeout = t
	}
	if len(s.Headers) > maxHeaders {
		return refuse("%d headers, the limit is %d", len(s.Headers), maxHeaders)
	}
	for k, v := range s.Headers {
		if !validHeader(k, v) {
			return refuse("header %q is not a valid HTTP header", k)
		}
		f.headers.Set(k, v)
	}
	return nil
}

// parseAuth reads the auth block of s: its kind and the secret it names, an
// environment variable of --http-invoke-env that is set.
func (i *Invoker) parseAuth(s spec) (auth, error) {
	a := s.Auth
	name := ""
	switch a.Type {
	case "hmac":
		name = a.SecretKey
	case "bearer":
		name = a.TokenKey
	case "api_key":
		name = a.ValueKey
		if !validHeader(a.Header, "x") {
			return auth{}, refuse("auth header %q is not a valid HTTP header name", a.Header)
		}
	default:
		return auth{}, refuse("auth type %q: want hmac, bearer or api_key", a.Type)
	}
	if !slices.Contains(i.cfg.Env, name) {
		return auth{}, refuse("auth names the environment variable %q, which is not in --http-invoke-env", name)
	}
	v, ok := "", false
	if i.cfg.LookupEnv != nil {
		v, ok = i.cfg.LookupEnv(name)
	}
	if !ok || v == "" {
		return auth{}, refuse("the environment variable %q is not set", name)
	}
	return auth{kind: a.Type, header: a.Header, secret: v}, nil
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

// refusal is a connection the engine will not make; its text is the
// reason, in the engine's words.
type refusal string

func (r refusal) Error() string { return string(r) }

const (
	errOwn         refusal = "the address is one of the engine's own listeners"
	errUnspecified refusal = "the address is unspecified (0.0.0.0 or ::), which reaches this host itself"
)

// checkAddr refuses the unspecified address, the engine's own listeners
// and, unless allowed, private addresses.
func (i *Invoker) checkAddr(ap netip.AddrPort) error {
	ip := ap.Addr().Unmap().WithZone("")
	if ip.IsUnspecified() {
		return errUnspecified
	}
	if i.own(ip, ap.Port()) {
		return errOwn
	}
	if !i.cfg.AllowPrivate && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
		return refusal(fmt.Sprintf("the address %s is private (--http-invoke-allow-private)", ip))
	}
	return nil
}

// own reports whether ip:port reaches one of the engine's listeners: the
// address a listener is bound to, any loopback address for one bound to
// loopback, and every local address for one bound to 0.0.0.0 or ::.
func (i *Invoker) own(ip netip.Addr, port uint16) bool {
	for _, o := range i.cfg.Own {
		if o.Port() != port {
			continue
		}
		a := o.Addr().Unmap().WithZone("")
		switch {
		case a == ip, a.IsLoopback() && ip.IsLoopback():
			return true
		case a.IsUnspecified() && (ip.IsLoopback() || local(ip)):
			return true
		}
	}
	return false
}

// local reports whether ip is an address of one of this host's
// interfaces; when they cannot be listed, every address is.
func local(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(n.IP); ok && x.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// checkDial runs on every connection, with the address resolved.
func (i *Invoker) checkDial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return refusal(fmt.Sprintf("the address %q does not parse", address))
	}
	return i.checkAddr(ap)
}

// numeric reports whether host is an IPv4 address in one of the forms
// URL parsers and resolvers read differently ("0", "127.1", "0x7f.1",
// "2130706433", "010.0.0.1"): its last label is a number, as the WHATWG
// URL standard puts it, while it is not a plain dotted quad.
func numeric(host string) bool {
	last := strings.TrimSuffix(host, ".")
	last = last[strings.LastIndex(last, ".")+1:]
	if last == "" {
		return false
	}
	if x, ok := strings.CutPrefix(strings.ToLower(last), "0x"); ok {
		return strings.Trim(x, "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

// failure says why an exchange failed, in the engine's words. The text of
// the error itself may quote what the other side sent (a malformed status
// line, a header, a TLS alert, an HTTP/2 GOAWAY's debug data), so none of
// it is repeated.
func failure(err error) string {
	var r refusal
	var dns *net.DNSError
	var op *net.OpError
	var cert *tls.CertificateVerificationError
	var host x509.HostnameError
	var authority x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &r):
		return "refused: " + string(r)
	case errors.As(err, &dns):
		return "the host name does not resolve"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the connection was refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "the address is unreachable"
	case errors.As(err, &cert), errors.As(err, &host), errors.As(err, &authority), errors.As(err, &invalid):
		return "the server's TLS certificate is not valid for the host or not trusted"
	case errors.As(err, &op) && op.Op == "dial":
		return "could not connect"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed before a complete HTTP answer"
	default:
		return "the server did not answer with valid HTTP"
	}
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
		return nil, engine.Errorf(codes.Internal, "invoke %s: %v", functionID, err)
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
		if err := ended(ctx, functionID, f); err != nil {
			return nil, err
		}
		return nil, engine.Errorf(codes.Unavailable, "invoke %s: %s: %s", functionID, f.url, failure(err))
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, i.cfg.MaxResponseBytes+1))
	switch {
	case err != nil:
		if err := ended(ctx, functionID, f); err != nil {
			return nil, err
		}
		return nil, engine.Errorf(codes.Unavailable, "invoke %s: %s: reading the answer: %s", functionID, f.url, failure(err))
	case int64(len(body)) > i.cfg.MaxResponseBytes:
		return nil, engine.Errorf(codes.MessageTooLarge, "invoke %s: the answer is over %d bytes", functionID, i.cfg.MaxResponseBytes)
	}
	if res.StatusCode/100 == 2 {
		if len(bytes.TrimSpace(body)) == 0 {
			return []byte("null"), nil
		}
		if !json.Valid(body) {
			return nil, engine.Errorf(codes.HandlerError, "invoke %s: %s answered %d with a body that is not JSON", functionID, f.url, res.StatusCode)
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
	return nil, engine.Errorf(codes.HandlerError, "invoke %s: %s answered HTTP %d", functionID, f.url, res.StatusCode)
}

// ended is the error of a call whose context ended: its deadline
// (timeout_ms, or the caller's) passed, or its caller went away.
func ended(ctx context.Context, functionID string, f *Function) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return engine.Errorf(codes.DeadlineExceeded, "invoke %s: no complete answer from %s within %v", functionID, f.url, f.timeout)
	case ctx.Err() != nil:
		return engine.Errorf(codes.Cancelled, "invoke %s: the call was cancelled", functionID)
	}
	return nil
}

// Sign is iii's request signature: "sha256=" and the hex HMAC-SHA256, keyed
// by the secret, of the timestamp, ":" and the base64 of the body.
func Sign(body []byte, secret, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp + ":" + base64.StdEncoding.EncodeToString(body)))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
