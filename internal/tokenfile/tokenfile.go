// Package tokenfile reads a listener's static credentials: a YAML file of
// token digests and what each token grants (engine.engine.AuthResult), for
// deployments without an auth function. Reloaded on SIGHUP.
//
// Concurrency: a Table is read-only once loaded and safe for concurrent
// use; the package starts no goroutines.
package tokenfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"gopkg.in/yaml.v3"

	"github.com/trinehq/trine/engine"
)

// Table is a listener's static credentials, for deployments without
// an auth function: each entry is a token's SHA-256 (the tokens
// themselves are never stored) and the engine.AuthResult it grants. Reload reads
// the file again; a file that fails to load leaves the table in use.
type Table struct {
	file    string
	entries atomic.Pointer[map[[sha256.Size]byte]engine.AuthResult]
}

// tokenFile is the file's shape:
//
//	tokens:
//	  - sha256: 9f86d081884c7d65…   # printf %s "$TOKEN" | sha256sum
//	    name: ci-bot                # for logs
//	    allowed_functions: […]      # and any other engine.AuthResult field
type tokenFile struct {
	Tokens []map[string]any `yaml:"tokens"`
}

// Load reads a tokens file.
func Load(file string) (*Table, error) {
	t := &Table{file: file}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload reads the file again.
func (t *Table) Reload() error {
	raw, err := os.ReadFile(t.file)
	if err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f tokenFile
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("tokens file %s: %v", t.file, err)
	}
	m := make(map[[sha256.Size]byte]engine.AuthResult, len(f.Tokens))
	for i, e := range f.Tokens {
		sum, _ := e["sha256"].(string)
		delete(e, "sha256")
		delete(e, "name")
		b, err := hex.DecodeString(strings.TrimSpace(sum))
		if err != nil || len(b) != sha256.Size {
			return fmt.Errorf("tokens file %s: entry %d: sha256 must be 64 hex digits (printf %%s \"$TOKEN\" | sha256sum)", t.file, i+1)
		}
		js, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("tokens file %s: entry %d: %v", t.file, i+1, err)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		var r engine.AuthResult
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("tokens file %s: entry %d: %v", t.file, i+1, err)
		}
		if err := exactIDs("allowed_functions", r.AllowedFunctions); err != nil {
			return fmt.Errorf("tokens file %s: entry %d: %w", t.file, i+1, err)
		}
		if err := exactIDs("forbidden_functions", r.ForbiddenFunctions); err != nil {
			return fmt.Errorf("tokens file %s: entry %d: %w", t.file, i+1, err)
		}
		var key [sha256.Size]byte
		copy(key[:], b)
		if _, dup := m[key]; dup {
			return fmt.Errorf("tokens file %s: entry %d: the same token twice", t.file, i+1)
		}
		m[key] = r
	}
	t.entries.Store(&m)
	return nil
}

// exactIDs refuses a pattern where the engine compares exact function ids,
// as iii does: "deploy::*" would only ever match a function named that.
func exactIDs(field string, ids []string) error {
	for _, id := range ids {
		if strings.Contains(id, "*") {
			return fmt.Errorf("%s: %q: entries are exact function ids, * is not a pattern here; "+
				"to grant a pattern, use the listener's rbac.expose_functions (match(%q))", field, id, id)
		}
	}
	return nil
}

// Lookup returns what token grants, if it is in the table
// (engine.TokenSource).
func (t *Table) Lookup(token string) (engine.AuthResult, bool) {
	if token == "" {
		return engine.AuthResult{}, false
	}
	r, ok := (*t.entries.Load())[sha256.Sum256([]byte(token))]
	return r, ok
}
