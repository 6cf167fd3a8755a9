package httptrigger

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// methods lists the HTTP methods a route may use.
var methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

// triggerConfig is the config of an http trigger.
type triggerConfig struct {
	APIPath             *string  `json:"api_path"`
	HTTPMethod          *string  `json:"http_method"`
	ConditionFunctionID string   `json:"condition_function_id"`
	MiddlewareIDs       []string `json:"middleware_function_ids"`
	MaxBodyBytes        *int64   `json:"max_body_bytes"`
}

// maxMiddleware bounds a route's middleware chain.
const maxMiddleware = 16

// segment is one path segment of a route: a literal (decoded) or a :param.
type segment struct {
	lit   string
	param string // the name, when the segment is a parameter
}

// route is one registered http trigger. It is immutable once built.
type route struct {
	trigger    engine.Trigger // whose owner's rights every call runs with (engine.Fire)
	triggerID  string
	functionID string
	condition  string
	middleware []string        // called in order before the function
	maxBody    int64           // the route's max_body_bytes; 0: Config.MaxBodyBytes
	metadata   json.RawMessage // the trigger's, passed with every call
	method     string
	pattern    string // normalised, with a leading slash: "/users/:id"
	segs       []segment
	shape      string // see shapeOf
}

// shapeOf identifies routes that would match the same requests: the method
// and the segments, with every parameter as a wildcard whatever its name.
func shapeOf(method string, segs []segment) string {
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte(' ')
	for _, s := range segs {
		if s.param != "" {
			b.WriteString("/:")
		} else {
			b.WriteString("/=") // a decoded literal may be ":" itself
			b.WriteString(url.PathEscape(s.lit))
		}
	}
	return b.String()
}

// literalPath is the route's path when it has no parameters, else "".
func (r *route) literalPath() (string, bool) {
	parts := make([]string, len(r.segs))
	for i, s := range r.segs {
		if s.param != "" {
			return "", false
		}
		parts[i] = s.lit
	}
	return "/" + strings.Join(parts, "/"), true
}

func invalid(t engine.Trigger, format string, args ...any) *engine.Error {
	return engine.Errorf(codes.InvalidArgument, "http trigger %q: "+format, append([]any{t.ID}, args...)...)
}

// parseRoute validates an http trigger's config.
func parseRoute(t engine.Trigger) (*route, error) {
	raw := bytes.TrimSpace(t.Config)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, invalid(t, "config must be a JSON object with api_path and http_method")
	}
	var c triggerConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, invalid(t, "bad config: %v", err)
	}
	if c.APIPath == nil || *c.APIPath == "" {
		return nil, invalid(t, "config needs api_path")
	}
	if c.HTTPMethod == nil || *c.HTTPMethod == "" {
		return nil, invalid(t, "config needs http_method (one of %s)", strings.Join(methods, ", "))
	}
	method := strings.ToUpper(*c.HTTPMethod)
	if !slices.Contains(methods, method) {
		return nil, invalid(t, "http_method %q is not one of %s", *c.HTTPMethod, strings.Join(methods, ", "))
	}
	if len(c.MiddlewareIDs) > maxMiddleware {
		return nil, invalid(t, "middleware_function_ids has %d ids, the limit is %d", len(c.MiddlewareIDs), maxMiddleware)
	}
	for _, id := range c.MiddlewareIDs {
		if err := engine.ValidateID("middleware function id", id); err != nil {
			return nil, invalid(t, "%s", engine.AsError(err).Message)
		}
	}
	if err := engine.ValidateCondition(c.ConditionFunctionID); err != nil {
		return nil, invalid(t, "%s", engine.AsError(err).Message)
	}
	var maxBody int64
	if c.MaxBodyBytes != nil {
		if *c.MaxBodyBytes <= 0 {
			return nil, invalid(t, "max_body_bytes must be positive")
		}
		maxBody = *c.MaxBodyBytes
	}
	pattern, segs, err := parsePath(*c.APIPath)
	if err != nil {
		return nil, invalid(t, "api_path %q: %s", *c.APIPath, err.Error())
	}
	return &route{trigger: t, triggerID: t.ID, functionID: t.FunctionID, condition: c.ConditionFunctionID, middleware: c.MiddlewareIDs, maxBody: maxBody, metadata: t.Metadata,
		method: method, pattern: pattern, segs: segs, shape: shapeOf(method, segs)}, nil
}

type pathError string

func (e pathError) Error() string { return string(e) }

// parsePath normalises a route path: one leading and one trailing slash are
// optional, so "users/:id", "/users/:id" and "/users/:id/" are the same
// route. "/" is the root. Literal segments are URL-decoded.
func parsePath(p string) (string, []segment, error) {
	if strings.Contains(p, "//") {
		return "", nil, pathError("empty path segment")
	}
	p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
	if p == "" {
		return "/", nil, nil
	}
	if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
		return "", nil, pathError("control character or invalid UTF-8")
	}
	if strings.ContainsAny(p, "?#") {
		return "", nil, pathError(`"?" and "#" are not allowed (escape them as %3F and %23)`)
	}
	parts := strings.Split(p, "/")
	segs := make([]segment, len(parts))
	names := make(map[string]bool)
	for i, part := range parts {
		if name, ok := strings.CutPrefix(part, ":"); ok {
			if name == "" {
				return "", nil, pathError("parameter without a name")
			}
			if names[name] {
				return "", nil, pathError("duplicate parameter :" + name)
			}
			names[name] = true
			segs[i] = segment{param: name}
			continue
		}
		lit, err := url.PathUnescape(part)
		if err != nil {
			return "", nil, pathError("bad escape in segment " + part)
		}
		segs[i] = segment{lit: lit}
	}
	return "/" + p, segs, nil
}

// normalReserved turns a reserved path into the form of literalPath.
func normalReserved(p string) string {
	p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
	return "/" + p
}

// splitRequestPath splits an escaped request path into decoded segments.
// One leading and one trailing slash are ignored, as in parsePath; ok is
// false when a segment is empty or badly escaped.
func splitRequestPath(escaped string) (segs []string, ok bool) {
	p := strings.TrimSuffix(strings.TrimPrefix(escaped, "/"), "/")
	if p == "" {
		return nil, !strings.Contains(escaped, "//")
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if part == "" {
			return nil, false
		}
		v, err := url.PathUnescape(part)
		if err != nil {
			return nil, false
		}
		parts[i] = v
	}
	return parts, true
}

// table is an immutable snapshot of the routes, as a segment trie.
type table struct {
	root node
}

type node struct {
	lits   map[string]*node
	param  *node
	routes map[string]*route // by method
}

func buildTable(routes map[string]*route) *table {
	t := &table{}
	for _, r := range routes {
		n := &t.root
		for _, s := range r.segs {
			if s.param != "" {
				if n.param == nil {
					n.param = &node{}
				}
				n = n.param
				continue
			}
			if n.lits == nil {
				n.lits = make(map[string]*node)
			}
			next := n.lits[s.lit]
			if next == nil {
				next = &node{}
				n.lits[s.lit] = next
			}
			n = next
		}
		if n.routes == nil {
			n.routes = make(map[string]*route)
		}
		n.routes[r.method] = r
	}
	return t
}

// match finds the route for method and path segments. Literal segments are
// tried before parameters, and the first matching route with the method
// wins. With no such route, allowed lists the methods of the routes that
// match the path (empty: no route matches it at all).
func (t *table) match(method string, segs []string) (r *route, params map[string]string, allowed []string) {
	var walk func(n *node, i int) bool
	walk = func(n *node, i int) bool {
		if i == len(segs) {
			if len(n.routes) == 0 {
				return false
			}
			if found := n.routes[method]; found != nil {
				r = found
				return true
			}
			for m := range n.routes {
				if !slices.Contains(allowed, m) {
					allowed = append(allowed, m)
				}
			}
			return false
		}
		if next := n.lits[segs[i]]; next != nil && walk(next, i+1) {
			return true
		}
		return n.param != nil && walk(n.param, i+1)
	}
	if walk(&t.root, 0) {
		params = make(map[string]string)
		for i, s := range r.segs {
			if s.param != "" {
				params[s.param] = segs[i]
			}
		}
		return r, params, nil
	}
	slices.Sort(allowed)
	return nil, nil, allowed
}
