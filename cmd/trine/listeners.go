package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/internal/tlsconf"
)

// listenerConfig is one entry of the YAML listeners: list, an extra worker
// listener with its own policy, in iii's shape (iii-worker-manager's
// port, middleware_function_id and rbac block).
type listenerConfig struct {
	Protocol             string         `yaml:"protocol"` // iii
	Addr                 string         `yaml:"addr"`
	MiddlewareFunctionID string         `yaml:"middleware_function_id"`
	RBAC                 *engine.Access `yaml:"rbac"`
}

// access is the listener's policy, nil for a trusted one.
func (l listenerConfig) access() *engine.Access {
	if l.RBAC == nil && l.MiddlewareFunctionID == "" {
		return nil
	}
	a := engine.Access{}
	if l.RBAC != nil {
		a = *l.RBAC
	}
	a.MiddlewareFunctionID = l.MiddlewareFunctionID
	return &a
}

// decodeListeners reads the listeners: key strictly: an unknown field is
// an error, as for the rest of the file.
func decodeListeners(n *yaml.Node) ([]listenerConfig, error) {
	raw, err := yaml.Marshal(n)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var ls []listenerConfig
	if err := dec.Decode(&ls); err != nil {
		return nil, errors.New(oneLine(err.Error()))
	}
	for i, l := range ls {
		switch {
		case l.Protocol != "iii":
			return nil, fmt.Errorf("listener %d: protocol %q: want iii (policies for gRPC listeners are not supported yet)", i+1, l.Protocol)
		case checkAddr(l.Addr) != nil:
			return nil, fmt.Errorf("listener %d: addr %q: %v", i+1, l.Addr, checkAddr(l.Addr))
		}
		if a := l.access(); a != nil {
			if err := checkAccess(a); err != nil {
				return nil, fmt.Errorf("listener %d: %v", i+1, err)
			}
		}
	}
	return ls, nil
}

// checkAccess refuses a policy that names an invalid function id or
// pattern.
func checkAccess(a *engine.Access) error {
	for kind, id := range map[string]string{"auth_function_id": a.AuthFunctionID, "middleware_function_id": a.MiddlewareFunctionID,
		"on_function_registration_function_id": a.OnFunctionRegistration, "on_trigger_registration_function_id": a.OnTriggerRegistration,
		"on_trigger_type_registration_function_id": a.OnTriggerTypeRegistration} {
		if id != "" {
			if err := engine.ValidateID(kind, id); err != nil {
				return err
			}
		}
	}
	for _, f := range a.ExposeFunctions {
		if f.Match == "" {
			return errors.New("expose_functions: every filter needs a match pattern")
		}
	}
	return nil
}

// iiiAccess is the main iii listener's policy from its flags, nil when
// none is set.
func iiiAccess(cfg engineConfig) *engine.Access {
	if cfg.IIIAuthFunction == "" && len(cfg.IIIExpose) == 0 && cfg.IIIMiddleware == "" {
		return nil
	}
	a := &engine.Access{AuthFunctionID: cfg.IIIAuthFunction, MiddlewareFunctionID: cfg.IIIMiddleware}
	for _, p := range cfg.IIIExpose {
		a.ExposeFunctions = append(a.ExposeFunctions, engine.Filter{Match: p})
	}
	return a
}

// iiiListener is one iii worker listener being served.
type iiiListener struct {
	name string
	lis  net.Listener
	srv  *iiiserver.Server
	http *http.Server
}

// openIIIListeners opens the extra listeners of cfg.Listeners.
func openIIIListeners(ctx context.Context, cfg engineConfig) ([]iiiListener, error) {
	var out []iiiListener
	for i, l := range cfg.Listeners {
		lis, err := listen(ctx, fmt.Sprintf("iii listener %d", i+1), l.Addr)
		if err != nil {
			for _, o := range out {
				_ = o.lis.Close()
			}
			return nil, err
		}
		out = append(out, iiiListener{name: fmt.Sprintf("iii/%d", i+1), lis: lis})
	}
	return out, nil
}

// serve builds the listener's server with policy a and the settings the
// main iii listener has.
func (l *iiiListener) serve(eng *engine.Engine, base iiiserver.Config, a *engine.Access, workers *tlsconf.Server, log *slog.Logger) {
	base.Access = a
	l.srv = iiiserver.New(eng, base)
	if workers != nil {
		l.lis = workers.Listen(l.lis)
	}
	l.http = &http.Server{Handler: l.srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// listenerInfo lists the extra listeners for the start line.
func listenerInfo(ls []iiiListener) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, " %s=%s", l.name, l.lis.Addr())
	}
	return b.String()
}
