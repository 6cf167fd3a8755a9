package contracts

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	"github.com/trinehq/trine/contract"
)

// The annotations a schema document served by Handler carries beside the
// item schema's own keywords; validators ignore them.
const (
	DocStream        = "x-trine-stream"
	DocVersion       = "x-trine-version"
	DocCompatibility = "x-trine-compatibility"
	DocEvents        = "x-trine-events" // event type -> its schema
)

// Document is d as one JSON Schema document: the item schema, with d's
// name, version, mode and event schemas as annotations. A boolean item
// schema becomes {} (true) or {"not":{}} (false).
func Document(d contract.Definition) (json.RawMessage, error) {
	doc := map[string]json.RawMessage{}
	switch string(d.Item) {
	case "true":
	case "false":
		doc["not"] = json.RawMessage(`{}`)
	default:
		if err := json.Unmarshal(d.Item, &doc); err != nil {
			return nil, err
		}
	}
	put := func(k string, v any) {
		b, _ := json.Marshal(v)
		doc[k] = b
	}
	put(DocStream, d.Stream)
	put(DocVersion, d.Version)
	put(DocCompatibility, d.Mode)
	if len(d.Events) > 0 {
		put(DocEvents, d.Events)
	}
	return json.Marshal(doc)
}

// Handler serves the contracts in force as JSON Schema documents:
//
//	GET /schemas           {"streams": {name: document}}, the streams the caller may read,
//	                       within about maxBytes (0: no bound): past it, with "more": true,
//	                       and ?after=<the last name> reads on
//	GET /schemas/{stream}  the stream's document; 403 when the caller may
//	                       not read it, 404 when it has no contract
//
// readable admits the request (or answers it and returns false) and
// says which streams the caller may read.
func (s *Set) Handler(readable func(http.ResponseWriter, *http.Request) (func(string) bool, bool), maxBytes int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /schemas", func(w http.ResponseWriter, r *http.Request) {
		allows, ok := readable(w, r)
		if !ok {
			return
		}
		defs, more, err := s.Page(r.Context(), allows, r.URL.Query().Get("after"), 0, maxBytes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out := map[string]json.RawMessage{}
		for _, d := range defs {
			doc, err := Document(d)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			out[d.Stream] = doc
		}
		if more {
			writeJSON(w, map[string]any{"streams": out, "more": true})
			return
		}
		writeJSON(w, map[string]any{"streams": out})
	})
	mux.HandleFunc("GET /schemas/{stream}", func(w http.ResponseWriter, r *http.Request) {
		allows, ok := readable(w, r)
		if !ok {
			return
		}
		n := r.PathValue("stream")
		if !allows(n) {
			http.Error(w, "forbidden: the caller may not read stream "+n, http.StatusForbidden)
			return
		}
		doc, found, err := s.document(r, n)
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		case !found:
			http.Error(w, "stream "+n+" has no contract", http.StatusNotFound)
		default:
			writeJSON(w, doc)
		}
	})
	return mux
}

// Current returns the definitions in force of the names that allows
// accepts, in name order.
func (s *Set) Current(ctx context.Context, allows func(string) bool) ([]contract.Definition, error) {
	out, _, err := s.Page(ctx, allows, "", 0, 0)
	return out, err
}

// Page is Current for the names after after, at most limit of them (0:
// no limit) and about maxBytes of schemas and names (0: no bound; at
// least one definition); more says that some were left out.
func (s *Set) Page(ctx context.Context, allows func(string) bool, after string, limit, maxBytes int) (out []contract.Definition, more bool, err error) {
	names, err := s.store.Names(ctx)
	if err != nil {
		return nil, false, err
	}
	out = []contract.Definition{}
	size := 0
	for _, n := range slices.Sorted(slices.Values(names)) {
		if (after != "" && n <= after) || !allows(n) {
			continue
		}
		if limit > 0 && len(out) == limit {
			return out, true, nil
		}
		c, err := s.Lookup(ctx, n)
		if err != nil {
			return nil, false, err
		}
		if c == nil {
			continue
		}
		d := c.Definition
		n := 128 + len(d.Stream) + len(d.GroupID) + len(d.Item)
		for t, e := range d.Events {
			n += len(t) + len(e) + 8
		}
		if maxBytes > 0 && len(out) > 0 && size+n > maxBytes {
			return out, true, nil
		}
		out, size = append(out, d), size+n
	}
	return out, false, nil
}

func (s *Set) document(r *http.Request, name string) (json.RawMessage, bool, error) {
	c, err := s.Lookup(r.Context(), name)
	if err != nil || c == nil {
		return nil, false, err
	}
	doc, err := Document(c.Definition)
	return doc, err == nil, err
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/schema+json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}
