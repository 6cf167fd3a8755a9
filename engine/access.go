package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/trinehq/trine/codes"
)

// Access is one worker listener's authorization policy, in iii's model
// and names (its rbac block and the listener's middleware): the same for
// gRPC and iii connections. Transports carry credentials in (Authenticate)
// and the engine applies the resulting Grant to everything the session
// does. A listener without an Access is trusted.
type Access struct {
	// AuthFunctionID, if set, is called once per connection with an
	// AuthInput and must return an AuthResult; an error, a timeout or no
	// result refuses the connection. Without it every connection gets
	// the default AuthResult.
	AuthFunctionID string `json:"auth_function_id,omitempty" yaml:"auth_function_id"`
	// ExposeFunctions lists the functions a connection may call beyond
	// its allowed_functions: any matching filter allows.
	ExposeFunctions []Filter `json:"expose_functions,omitempty" yaml:"expose_functions"`
	// The registration hooks: each gets the registration and the
	// connection's context and returns the fields it maps, or fails to
	// refuse it.
	OnFunctionRegistration    string `json:"on_function_registration_function_id,omitempty" yaml:"on_function_registration_function_id"`
	OnTriggerRegistration     string `json:"on_trigger_registration_function_id,omitempty" yaml:"on_trigger_registration_function_id"`
	OnTriggerTypeRegistration string `json:"on_trigger_type_registration_function_id,omitempty" yaml:"on_trigger_type_registration_function_id"`
	// MiddlewareFunctionID, if set, is called instead of every function a
	// connection calls, with a MiddlewareInput; it calls the target
	// itself.
	MiddlewareFunctionID string `json:"middleware_function_id,omitempty" yaml:"middleware_function_id"`
	// Tokens, if set instead of AuthFunctionID, admits connections by a
	// static token (Authorization: Bearer <token>): a token it knows gets
	// its AuthResult, any other connection is refused.
	Tokens TokenSource `json:"-" yaml:"-"`
	// Timeout bounds the auth function and each hook. Default 5s.
	Timeout time.Duration `json:"-" yaml:"-"`
}

// TokenSource maps static tokens to what they grant (internal/tokenfile).
type TokenSource interface {
	Lookup(token string) (AuthResult, bool)
}

// Filter is one expose_functions entry, as iii writes it: match("api::*")
// (a function id pattern in which * matches any characters, anchored at
// both ends), or metadata: {k: v}, which matches functions whose
// registered metadata has every key with that value (a value written
// match("…") matches string values by pattern). In YAML a filter is the
// string match("…"), or a map with match: or metadata:.
type Filter struct {
	Match    string                     `json:"match,omitempty"`
	Metadata map[string]json.RawMessage `json:"metadata,omitempty"`
}

// UnmarshalYAML reads iii's forms. It is written against the unmarshal
// callback that YAML decoders pass (gopkg.in/yaml.v3 among them), so that
// the engine does not depend on one.
func (f *Filter) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err == nil {
		p, ok := matchCall(s)
		if !ok {
			return fmt.Errorf("expose_functions: want match(\"pattern\") or metadata: {…}, got %q", s)
		}
		f.Match = p
		return nil
	}
	var raw struct {
		Match    string         `yaml:"match"`
		Metadata map[string]any `yaml:"metadata"`
	}
	if err := unmarshal(&raw); err != nil {
		return err
	}
	if (raw.Match == "") == (len(raw.Metadata) == 0) {
		return errors.New("expose_functions: a filter has a match pattern or metadata, one of them")
	}
	f.Match = raw.Match
	for k, v := range raw.Metadata {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("expose_functions: metadata %s: %v", k, err)
		}
		if f.Metadata == nil {
			f.Metadata = map[string]json.RawMessage{}
		}
		f.Metadata[k] = b
	}
	return nil
}

// matchCall reads match("p") or match('p').
func matchCall(s string) (string, bool) {
	s = strings.TrimSpace(s)
	for _, q := range []string{`"`, "'"} {
		if rest, ok := strings.CutPrefix(s, "match("+q); ok {
			if p, ok := strings.CutSuffix(rest, q+")"); ok {
				return p, true
			}
		}
	}
	return "", false
}

// matchesAll reports whether the filter matches function id served by
// replicas with the given metadata: a metadata filter must match every
// replica's (and there must be one), so that no replica exposes another.
func (f Filter) matchesAll(id string, metadata []json.RawMessage) bool {
	if f.Match != "" {
		return MatchPattern(f.Match, id)
	}
	if len(metadata) == 0 {
		return false
	}
	for _, m := range metadata {
		if !f.matches(id, m) {
			return false
		}
	}
	return true
}

// matches reports whether the filter matches function id with one
// replica's registered metadata.
func (f Filter) matches(id string, metadata json.RawMessage) bool {
	if f.Match != "" {
		return MatchPattern(f.Match, id)
	}
	if len(f.Metadata) == 0 || len(metadata) == 0 {
		return false
	}
	var got map[string]json.RawMessage
	if json.Unmarshal(metadata, &got) != nil {
		return false
	}
	for k, want := range f.Metadata {
		v, ok := got[k]
		if !ok {
			return false
		}
		var ws string
		if json.Unmarshal(want, &ws) == nil {
			if p, isMatch := matchCall(ws); isMatch {
				var s string
				if json.Unmarshal(v, &s) != nil || !MatchPattern(p, s) {
					return false
				}
				continue
			}
		}
		if !jsonEqual(want, v) {
			return false
		}
	}
	return true
}

// jsonEqual compares two JSON values by meaning, not spelling.
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// AuthInput is the auth function's input.
type AuthInput struct {
	// Headers are the connection's HTTP headers (iii) or gRPC metadata,
	// names lowercased, several values joined with ", ".
	Headers     map[string]string   `json:"headers"`
	QueryParams map[string][]string `json:"query_params"`
	IPAddress   string              `json:"ip_address"`
	// Identity is the verified client certificate's identity (mTLS), or
	// "" (a Trine addition).
	Identity string `json:"identity,omitempty"`
}

// AuthResult is what an auth function returns; omitted fields take iii's
// defaults.
type AuthResult struct {
	AllowedFunctions   []string `json:"allowed_functions"`
	ForbiddenFunctions []string `json:"forbidden_functions"`
	// AllowedTriggerTypes, when present, limits the trigger types the
	// connection may register triggers of; omitted, all.
	AllowedTriggerTypes          *[]string       `json:"allowed_trigger_types"`
	AllowTriggerTypeRegistration bool            `json:"allow_trigger_type_registration"`
	AllowFunctionRegistration    *bool           `json:"allow_function_registration"`
	FunctionRegistrationPrefix   string          `json:"function_registration_prefix"`
	Context                      json.RawMessage `json:"context"`
}

// MiddlewareInput is the middleware function's input.
type MiddlewareInput struct {
	FunctionID string          `json:"function_id"`
	Payload    json.RawMessage `json:"payload"`
	Context    json.RawMessage `json:"context"`
	// Action is the caller's action when it is not a plain call, as iii
	// passes it: {"type":"enqueue","queue":…}. The middleware then makes
	// the call with that action itself.
	Action json.RawMessage `json:"action,omitempty"`
}

// infrastructure are the functions every connection may call (iii's
// carve-out): the SDKs call them on their own.
var infrastructure = []string{"engine::channels::create", "engine::workers::register", "engine::log::*", "engine::baggage::*"}

// Grant is what one connection may do: its listener's Access and the
// answer of the auth function.
type Grant struct {
	access *Access
	result AuthResult
	// principal names who the connection is: its listener's Access, its
	// static token or mTLS identity, and what the auth function answered.
	// Connections with the same principal may serve the same functions.
	principal string
}

// NoRights returns a Grant that may call nothing but the functions every
// connection may call: the rights of work a connection under a policy
// left to be done later, where its own rights are no longer known (a
// queued job, which any engine of a fleet may run). What such work has
// the engine call on the connection's behalf (a migrate function, a
// redrive) is then refused, not run as trusted.
func NoRights() *Grant {
	return &Grant{access: &Access{}, result: AuthResult{Context: json.RawMessage("{}")}, principal: "no-rights"}
}

// accountKey names the identity a Grant admits: its listener and
// principal.
func (g *Grant) accountKey() string { return fmt.Sprintf("%p/%s", g.access, g.principal) }

// samePrincipal reports whether two sessions' grants name the same
// principal (nil: trusted, which all trusted sessions share).
func samePrincipal(a, b *Grant) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.access == b.access && a.principal == b.principal
}

// Context is the connection's context from the auth function ({} when
// none).
func (g *Grant) Context() json.RawMessage { return g.result.Context }

// Prefix is the prefix of the functions the connection registers, with
// its "::" separator, or "".
func (g *Grant) Prefix() string {
	if g == nil || g.result.FunctionRegistrationPrefix == "" {
		return ""
	}
	return strings.TrimSuffix(g.result.FunctionRegistrationPrefix, "::") + "::"
}

// Authenticate decides whether a connection to a listener with Access a
// is admitted: with an auth function, that function must answer with an
// AuthResult (an error, a timeout, null or anything else refuses the
// connection with codes.Unauthorized, fail closed). It returns the
// connection's Grant.
func (e *Engine) Authenticate(ctx context.Context, a *Access, in AuthInput) (*Grant, error) {
	g := &Grant{access: a}
	h := sha256.New()
	h.Write([]byte(in.Identity))
	h.Write([]byte{0})
	if a.Tokens != nil {
		tok := bearerToken(in.Headers)
		h.Write([]byte(tok))
		r, ok := a.Tokens.Lookup(tok)
		if !ok {
			return nil, Errorf(codes.Unauthorized, "connection refused: no known token in the authorization header (Bearer)")
		}
		g.result = r
	} else if a.AuthFunctionID != "" {
		out, err := e.hook(ctx, a, a.AuthFunctionID, in)
		if err != nil {
			return nil, Errorf(codes.Unauthorized, "connection refused: auth function %s: %s", a.AuthFunctionID, AsError(err).Message)
		}
		t := bytes.TrimSpace(out)
		if len(t) == 0 || t[0] != '{' {
			return nil, Errorf(codes.Unauthorized, "connection refused: auth function %s returned %.40s, not an AuthResult object", a.AuthFunctionID, t)
		}
		if err := json.Unmarshal(t, &g.result); err != nil {
			return nil, Errorf(codes.Unauthorized, "connection refused: auth function %s returned a bad AuthResult: %v", a.AuthFunctionID, err)
		}
	}
	if len(bytes.TrimSpace(g.result.Context)) == 0 || string(g.result.Context) == "null" {
		g.result.Context = json.RawMessage("{}")
	}
	if p := g.result.FunctionRegistrationPrefix; p != "" {
		if err := ValidateID("function registration prefix", p); err != nil {
			return nil, Errorf(codes.Unauthorized, "connection refused: auth function %s: %s", a.AuthFunctionID, AsError(err).Message)
		}
	}
	h.Write([]byte{0})
	if b, err := json.Marshal(g.result); err == nil {
		h.Write(b)
	}
	g.principal = hex.EncodeToString(h.Sum(nil))
	return g, nil
}

// hook calls a policy function within the Access's timeout.
func (e *Engine) hook(ctx context.Context, a *Access, fn string, in any) ([]byte, error) {
	p, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	d := a.Timeout
	if d <= 0 {
		d = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return e.Trigger(ctx, Call{FunctionID: fn, Payload: p})
}

// MatchPattern reports whether id matches pattern, in which * matches any
// run of characters and the rest must match exactly, end to end.
func MatchPattern(pattern, id string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == id
	}
	if !strings.HasPrefix(id, parts[0]) {
		return false
	}
	id = id[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(id, p)
		if i < 0 {
			return false
		}
		id = id[i+len(p):]
	}
	return strings.HasSuffix(id, parts[len(parts)-1])
}

func matchAny(patterns []string, id string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return MatchPattern(p, id) })
}

// CanCall decides a call to fn, whose replicas registered metadata (one
// entry each; a metadata filter must match every one), in iii's order: forbidden_functions deny, allowed_functions allow (both
// exact ids, as in iii), the infrastructure functions are allowed, any
// expose_functions filter allows, and the rest is denied. The error names
// the rule.
func (g *Grant) CanCall(fn string, metadata []json.RawMessage) error {
	switch {
	case g == nil:
		return nil
	case slices.Contains(g.result.ForbiddenFunctions, fn):
		return Errorf(codes.Forbidden, "function %q is in this connection's forbidden_functions", fn)
	case slices.Contains(g.result.AllowedFunctions, fn), matchAny(infrastructure, fn):
		return nil
	}
	for _, f := range g.access.ExposeFunctions {
		if f.matchesAll(fn, metadata) {
			return nil
		}
	}
	return Errorf(codes.Forbidden, "function %q is not exposed to this connection: no expose_functions filter and no allowed_functions entry matches", fn)
}

// canRegisterFunction, canRegisterTriggerType and canRegisterTrigger
// check the AuthResult's switches; the hooks run after them.
func (g *Grant) canRegisterFunction(id string) error {
	if f := g.result.AllowFunctionRegistration; f != nil && !*f {
		return Errorf(codes.Forbidden, "function %q not registered: allow_function_registration is false for this connection", id)
	}
	if g.Prefix() == "" && g.access.OnFunctionRegistration == "" && reserved(id) {
		return Errorf(codes.Forbidden, "function %q not registered: ids under engine:: and stream:: (built-in functions, custom streams) are reserved on this listener; give it a function_registration_prefix, or let its on_function_registration hook decide", id)
	}
	return nil
}

// reserved reports whether id is in a namespace of the engine's own: a
// connection under a policy may not serve those (a custom stream, say)
// unless a hook allows it.
func reserved(id string) bool {
	return strings.HasPrefix(id, "engine::") || strings.HasPrefix(id, "stream::")
}

func (g *Grant) canRegisterTriggerType(id string) error {
	if !g.result.AllowTriggerTypeRegistration {
		return Errorf(codes.Forbidden, "trigger type %q not registered: allow_trigger_type_registration is false for this connection", id)
	}
	return nil
}

func (g *Grant) canRegisterTrigger(t Trigger) error {
	if at := g.result.AllowedTriggerTypes; at != nil && !slices.Contains(*at, t.Type) {
		return Errorf(codes.Forbidden, "trigger %q not registered: type %q is not in this connection's allowed_trigger_types", t.ID, t.Type)
	}
	return nil
}

// registration is what a registration hook gets and may map: the fields
// of a function, a trigger type or a trigger (those that do not apply are
// empty and left out; ids are checked before the hook runs, so they are
// never empty), and the connection's context.
type registration struct {
	FunctionID    string          `json:"function_id,omitempty"`
	TriggerTypeID string          `json:"trigger_type_id,omitempty"`
	TriggerID     string          `json:"trigger_id,omitempty"`
	TriggerType   string          `json:"trigger_type,omitempty"`
	Description   string          `json:"description,omitempty"`
	Config        json.RawMessage `json:"config,omitempty"`
	Context       json.RawMessage `json:"context,omitempty"`
}

// onFunctionRegistration runs the function registration hook: it returns
// the id and description to register, maybe mapped.
func (e *Engine) onFunctionRegistration(ctx context.Context, g *Grant, id, description string) (string, string, error) {
	m, err := runHook(ctx, e, g, g.access.OnFunctionRegistration, "on_function_registration", fmt.Sprintf("function %q", id),
		registration{FunctionID: id, Description: description, Context: g.result.Context})
	return m.FunctionID, m.Description, err
}

// onTriggerTypeRegistration runs the trigger type registration hook.
func (e *Engine) onTriggerTypeRegistration(ctx context.Context, g *Grant, id, description string) (string, string, error) {
	m, err := runHook(ctx, e, g, g.access.OnTriggerTypeRegistration, "on_trigger_type_registration", fmt.Sprintf("trigger type %q", id),
		registration{TriggerTypeID: id, Description: description, Context: g.result.Context})
	return m.TriggerTypeID, m.Description, err
}

// onTriggerRegistration runs the trigger registration hook.
func (e *Engine) onTriggerRegistration(ctx context.Context, g *Grant, t Trigger) (Trigger, error) {
	m, err := runHook(ctx, e, g, g.access.OnTriggerRegistration, "on_trigger_registration", fmt.Sprintf("trigger %q", t.ID),
		registration{TriggerID: t.ID, TriggerType: t.Type, FunctionID: t.FunctionID, Config: t.Config, Context: g.result.Context})
	if err != nil || g.access.OnTriggerRegistration == "" {
		return t, err
	}
	t.ID, t.Type, t.FunctionID, t.Config = m.TriggerID, m.TriggerType, m.FunctionID, m.Config
	return t, validateTrigger(t)
}

// runHook calls registration hook fn (none: in as is) with in, the
// registration and the connection's context, and returns in with the
// fields the hook's answer gives; a failing hook refuses the registration
// (forbidden, naming it as what).
func runHook[T any](ctx context.Context, e *Engine, g *Grant, fn, hook, what string, in T) (T, error) {
	if fn == "" {
		return in, nil
	}
	out, err := e.hook(ctx, g.access, fn, in)
	if err != nil {
		return in, Errorf(codes.Forbidden, "%s refused by %s hook %s: %s", what, hook, fn, AsError(err).Message)
	}
	m := in
	if err := mapFields(out, &m); err != nil {
		return in, Errorf(codes.Forbidden, "%s: %s hook %s: %v", what, hook, fn, err)
	}
	return m, nil
}

// mapFields applies a hook's answer to m: the fields it gives replace
// m's; null or {} keeps them all.
func mapFields(out []byte, m any) error {
	t := bytes.TrimSpace(out)
	if len(t) == 0 || string(t) == "null" {
		return nil
	}
	if t[0] != '{' {
		return fmt.Errorf("answered %.40s, not an object", t)
	}
	return json.Unmarshal(t, m)
}

// bearerToken is the token of an "authorization: Bearer …" header.
func bearerToken(h map[string]string) string {
	v := h["authorization"]
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	return ""
}
