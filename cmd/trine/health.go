package main

import (
	"encoding/json"
	"net/http"

	"github.com/trinehq/trine/engine"
)

// httpHandler serves the engine's HTTP endpoints:
//
//	GET /healthz  200 {"status":"ok"} while the process serves
//	GET /readyz   200 {"status":"ok"} while the engine accepts calls,
//	              503 {"status":"draining"} once shutdown has begun
//	GET /metrics  Prometheus metrics
//	anything else the routes of http triggers
func httpHandler(eng *engine.Engine, metrics, routes http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", routes)
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := eng.Health().Status
		code := http.StatusOK
		if st != "ok" {
			code = http.StatusServiceUnavailable
		}
		writeStatus(w, code, st)
	})
	return mux
}

func writeStatus(w http.ResponseWriter, code int, status string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Status string `json:"status"`
	}{status})
}
