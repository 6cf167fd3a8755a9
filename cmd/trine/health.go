package main

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"

	"github.com/trinehq/trine/engine"
)

// httpHandler serves the engine's HTTP endpoints:
//
//	GET /healthz  200 {"status":"ok"} while the process serves
//	GET /readyz   200 {"status":"ok", <part>: <state>…} while the engine
//	              accepts calls, whatever its optional parts' states
//	              ("up", "starting", "waiting_for_jetstream", "failed":
//	              see jsboot); 503 {"status":"draining",…} once shutdown
//	              has begun
//	GET /metrics  Prometheus metrics
//	GET /schemas  the streams' contracts as JSON Schema documents, to the
//	              callers the stream listener admits (contracts.Handler)
//	/console      the live console (package console), when on
//	anything else the routes of http triggers
func httpHandler(eng *engine.Engine, parts func() map[string]string, metrics, routes, schemas, console http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", routes)
	mux.Handle("GET /schemas", schemas)
	mux.Handle("GET /schemas/{stream}", schemas)
	if console != nil {
		mux.Handle("/console", console)
		mux.Handle("/console/", console)
	}
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
		// {"status": …} first, then the parts by name.
		body, _ := json.Marshal(map[string]string{"status": st})
		ps := parts()
		for _, name := range slices.Sorted(maps.Keys(ps)) {
			kv, _ := json.Marshal(map[string]string{name: ps[name]})
			body = append(append(body[:len(body)-1], ','), kv[1:]...)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_, _ = w.Write(append(body, '\n'))
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
