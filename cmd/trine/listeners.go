package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"

	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/engine/grpcserver"
	"github.com/trinehq/trine/engine/iiiserver"
	"github.com/trinehq/trine/internal/tlsconf"
	"github.com/trinehq/trine/internal/tokenfile"
)

// listenerConfig is one entry of the YAML listeners: list, an extra worker
// listener with its own policy, in iii's shape (iii-worker-manager's
// port, middleware_function_id and rbac block).
type listenerConfig struct {
	Protocol             string         `yaml:"protocol"` // iii or grpc
	Addr                 string         `yaml:"addr"`
	MiddlewareFunctionID string         `yaml:"middleware_function_id"`
	RBAC                 *engine.Access `yaml:"rbac"`
	// TokensFile admits connections by static tokens instead of an auth
	// function (internal/tokenfile); reloaded on SIGHUP.
	TokensFile string `yaml:"tokens_file"`
}

// access is the listener's policy, nil for a trusted one.
func (l listenerConfig) access() *engine.Access {
	if l.RBAC == nil && l.MiddlewareFunctionID == "" && l.TokensFile == "" {
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
	ls, err := decodeStrict[[]listenerConfig](n)
	if err != nil {
		return nil, err
	}
	for i, l := range ls {
		switch {
		case l.Protocol != "iii" && l.Protocol != "grpc":
			return nil, fmt.Errorf("listener %d: protocol %q: want iii or grpc", i+1, l.Protocol)
		case checkAddr(l.Addr) != nil:
			return nil, fmt.Errorf("listener %d: addr %q: %v", i+1, l.Addr, checkAddr(l.Addr))
		}
		if a := l.access(); a != nil {
			if err := checkAccess(a); err != nil {
				return nil, fmt.Errorf("listener %d: %v", i+1, err)
			}
			if a.AuthFunctionID != "" && l.TokensFile != "" {
				return nil, fmt.Errorf("listener %d: auth_function_id and tokens_file exclude each other", i+1)
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
		if f.Match == "" && len(f.Metadata) == 0 {
			return errors.New("expose_functions: every filter needs a match pattern or metadata")
		}
	}
	return nil
}

// iiiAccess is the main iii listener's policy from its flags, nil when
// none is set.
func iiiAccess(cfg engineConfig) *engine.Access {
	a := cfg.III.Access
	if a.AuthFunctionID == "" && len(a.ExposeFunctions) == 0 && a.MiddlewareFunctionID == "" {
		return nil
	}
	return &a
}

// extraListener is one worker listener of cfg.Listeners being served:
// iii (srv and http) or gRPC (grpc).
type extraListener struct {
	name       string
	lis        net.Listener
	tokens     *tokenfile.Table // with tokens_file
	tokensFile string
	srv        *iiiserver.Server
	http       *http.Server
	grpc       *grpc.Server
	refusals   refusals // its server's auth refusals
}

// openListeners opens the extra listeners of cfg.Listeners.
func openListeners(ctx context.Context, cfg engineConfig) ([]extraListener, error) {
	var out []extraListener
	counts := map[string]int{}
	for _, l := range cfg.Listeners {
		counts[l.Protocol]++
		name := fmt.Sprintf("%s/%d", l.Protocol, counts[l.Protocol])
		lis, err := listen(ctx, name, fmt.Sprintf("the addr of listener %d (%s) in %s", len(out)+1, l.Protocol, cfg.ConfigFile), l.Addr)
		if err != nil {
			for _, o := range out {
				_ = o.lis.Close()
			}
			return nil, err
		}
		x := extraListener{name: name, lis: lis, tokensFile: l.TokensFile}
		if l.TokensFile != "" {
			if x.tokens, err = tokenfile.Load(l.TokensFile); err != nil {
				_ = lis.Close()
				for _, o := range out {
					_ = o.lis.Close()
				}
				return nil, err
			}
		}
		out = append(out, x)
	}
	return out, nil
}

// build makes the listener's server for l with the main listeners'
// settings: base for iii, grpcCfg and grpcOpts (TLS) for gRPC.
func (x *extraListener) build(eng *engine.Engine, l listenerConfig, base iiiserver.Config, grpcCfg grpcserver.Config, grpcOpts []grpc.ServerOption, workers *tlsconf.Server, log *slog.Logger) {
	a := l.access()
	if a != nil && x.tokens != nil {
		a.Tokens = x.tokens
	}
	if l.Protocol == "grpc" {
		grpcCfg.Access = a
		srv := grpcserver.New(eng, grpcCfg)
		x.grpc = srv.NewGRPCServer(grpcOpts...)
		x.refusals = refusals{"grpc", srv.AuthRefusals}
		return
	}
	base.Access = a
	x.srv = iiiserver.New(eng, base)
	x.refusals = refusals{"iii", x.srv.AuthRefusals}
	if workers != nil {
		x.lis = workers.Listen(x.lis)
	}
	x.http = &http.Server{Handler: x.srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
}

// serve serves the listener until it is stopped.
func (x *extraListener) serve() error {
	var err error
	if x.grpc != nil {
		err = x.grpc.Serve(x.lis)
	} else if err = x.http.Serve(x.lis); errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("serve %s: %w", x.name, err)
	}
	return nil
}

// stop ends the listener once worker sessions are closed.
func (x *extraListener) stop(ctx context.Context) {
	if x.grpc != nil {
		force := time.AfterFunc(grpcStopTimeout, x.grpc.Stop)
		x.grpc.GracefulStop()
		force.Stop()
		return
	}
	x.srv.Close()
	if err := x.http.Shutdown(ctx); err != nil {
		_ = x.http.Close()
	}
}

// listenerInfo lists the extra listeners for the start line.
func listenerInfo(ls []extraListener) string {
	var b strings.Builder
	for _, l := range ls {
		fmt.Fprintf(&b, " %s=%s", l.name, l.lis.Addr())
	}
	return b.String()
}
