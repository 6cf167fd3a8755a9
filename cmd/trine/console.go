package main

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"

	"github.com/trinehq/trine/console"
	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/internal/origin"
	"github.com/trinehq/trine/internal/tokenfile"
)

// consoleTokens loads --console-tokens-file, or returns nil.
func consoleTokens(cfg engineConfig) (*tokenfile.Table, error) {
	if cfg.Console.TokensFile == "" {
		return nil, nil
	}
	return tokenfile.Load(cfg.Console.TokensFile)
}

// consoleHandler is the console --console asks for, nil when off. It is
// open on a loopback HTTP listener; elsewhere a request needs a token of
// tokens or a JWT the stream listener's keys verify with "console": true.
func consoleHandler(cfg engineConfig, httpLis, streamLis, iiiLis net.Listener, tokens *tokenfile.Table, jwt *jwtauth.Verifier, log *slog.Logger) http.Handler {
	if cfg.Console.Mode == "off" {
		return nil
	}
	cc := console.Config{Open: console.Loopback(httpLis.Addr().String()), StreamPort: port(streamLis), IIIPort: port(iiiLis), TLS: cfg.TLS.Enabled(),
		Origin: &origin.Policy{Origins: cfg.AllowedOrigins, Hosts: cfg.AllowedHosts, Logger: log, OriginsSetting: "--allowed-origins", HostsSetting: "--allowed-hosts"},
		Logger: log}
	if tokens == nil && jwt == nil {
		return console.New(cc)
	}
	cc.Admit = func(tok string) bool {
		if tokens != nil {
			if _, ok := tokens.Lookup(tok); ok {
				return true
			}
		}
		if jwt != nil {
			if t, err := jwt.Verify(tok); err == nil {
				var c struct {
					Console bool `json:"console"`
				}
				return json.Unmarshal(t.Claims, &c) == nil && c.Console
			}
		}
		return false
	}
	return console.New(cc)
}

// consoleMux serves the console alone, on --console-addr: / leads to it.
func consoleMux(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(console.Path, h)
	mux.Handle(console.Path+"/", h)
	mux.Handle("GET /{$}", http.RedirectHandler(console.Path+"/", http.StatusSeeOther))
	return mux
}

// port is the port l listens on, 0 for none.
func port(l net.Listener) int {
	if l == nil {
		return 0
	}
	if a, ok := l.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}
