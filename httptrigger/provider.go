package httptrigger

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/tracing"
)

// TriggerType is the trigger type the Provider serves.
const TriggerType = "http"

// Provider serves the http trigger type: it keeps the route table and
// answers HTTP requests by calling the routes' functions.
type Provider struct {
	e        *engine.Engine
	cfg      Config
	log      *slog.Logger
	reserved map[string]bool // normalised paths
	tracer   trace.Tracer    // nil: tracing off

	mu     sync.Mutex        // serialises route changes
	routes map[string]*route // by trigger id; guarded by mu
	table  atomic.Pointer[table]

	responses statusCounts
}

var (
	_ engine.TriggerProvider = (*Provider)(nil)
	_ http.Handler           = (*Provider)(nil)
)

// New returns a Provider. It registers nothing: Register adds the http
// trigger type to an engine, whose functions the routes call.
func New(cfg Config) (*Provider, error) {
	cfg = cfg.withDefaults()
	p := &Provider{cfg: cfg, log: cfg.Logger, tracer: tracing.Tracer(cfg.TracerProvider), reserved: make(map[string]bool), routes: make(map[string]*route)}
	for _, r := range cfg.Reserved {
		if r != "" {
			p.reserved[normalReserved(r)] = true
		}
	}
	p.table.Store(buildTable(nil))
	return p, nil
}

// Register registers the http trigger type on e, served by p; the routes
// call e's functions. Register p before it serves requests.
func (p *Provider) Register(e *engine.Engine) error {
	p.e = e
	return e.RegisterTriggerType(TriggerType,
		"Calls a function for HTTP requests to a route (config: api_path, http_method, condition_function_id?).", p)
}

// Close releases nothing: the requests p serves end with the HTTP server
// that serves them. It makes Provider an engine.Module.
func (p *Provider) Close() error { return nil }

// RegisterTrigger adds t's route. A bad config is refused with
// invalid_argument; a route that conflicts with another trigger's (same
// method and same segments, parameters compared as wildcards) or equals a
// reserved path is refused with conflict. Registering a trigger id again
// replaces its route.
func (p *Provider) RegisterTrigger(_ context.Context, t engine.Trigger) error {
	r, err := parseRoute(t)
	if err != nil {
		return err
	}
	if r.maxBody > p.cfg.MaxBodyBytes {
		switch {
		case p.cfg.Channels == nil:
			return invalid(t, "max_body_bytes %d is over --http-max-body-bytes (%d): such a route streams its body through request_body, which needs --http-streaming on", r.maxBody, p.cfg.MaxBodyBytes)
		case r.maxBody > p.cfg.MaxStreamBodyBytes:
			return invalid(t, "max_body_bytes %d is over --http-max-stream-body-bytes (%d)", r.maxBody, p.cfg.MaxStreamBodyBytes)
		}
	}
	if lp, ok := r.literalPath(); ok && p.reserved[lp] {
		return engine.Errorf(codes.Conflict, "http trigger %q: path %s is reserved by the server", t.ID, r.pattern)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.routes {
		if o.triggerID != r.triggerID && o.shape == r.shape {
			if t.Trusted() && !o.trigger.Trusted() {
				// A trusted worker's route takes the path back from a
				// connection under a policy that took it first.
				p.e.TakeBack(o.trigger)
				delete(p.routes, o.triggerID)
				p.log.Warn("a trusted worker's http route took its path back from a connection under a listener policy",
					engine.LogTriggerID, o.triggerID, "method", o.method, "path", o.pattern)
				continue
			}
			// In iii's words, which iii's SDKs look for.
			return engine.Errorf(codes.Conflict, "http trigger %q: Route '%s %s' conflicts with already-registered route '%s %s' of trigger %q: "+
				"routes of one method whose paths differ only in parameter names cannot both be registered",
				t.ID, r.method, r.pattern, o.method, o.pattern, o.triggerID)
		}
	}
	p.routes[t.ID] = r
	p.publish()
	p.log.Debug("http route added", engine.LogTriggerID, t.ID, engine.LogFunctionID, t.FunctionID, "method", r.method, "path", r.pattern)
	return nil
}

// UnregisterTrigger removes t's route, found by trigger id. Removing an
// unknown trigger does nothing.
func (p *Provider) UnregisterTrigger(_ context.Context, t engine.Trigger) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.routes[t.ID]
	if !ok {
		return nil
	}
	delete(p.routes, t.ID)
	p.publish()
	p.log.Debug("http route removed", engine.LogTriggerID, t.ID, "method", r.method, "path", r.pattern)
	return nil
}

// publish swaps in a table built from p.routes. Callers hold p.mu.
func (p *Provider) publish() {
	p.table.Store(buildTable(p.routes))
}
