package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/engine"
	"github.com/trinehq/trine/internal/natsembed"
	"github.com/trinehq/trine/streammodule"
	"github.com/trinehq/trine/streammodule/contracts"
	"github.com/trinehq/trine/streammodule/store"
	"github.com/trinehq/trine/streammodule/store/jsstore"
)

// contractsJetStream is where --store jetstream keeps contracts.
var contractsJetStream = jsstore.Config{Stream: "TRINE_CONTRACTS", Prefix: "trine.contractkv"}

// contractsConfig is the --contract-* settings and the YAML streams: list.
type contractsConfig struct {
	Limits   contract.Limits
	Refusals contracts.RefusalLimits // the recent refusals kept per stream and in all
	Streams  []contract.Definition   // YAML streams:, schemas read from their files
}

// contractSettings are the --contract-* settings: the contract package's
// limits.
func contractSettings(c *engineConfig) []setting {
	l, r := &c.Contracts.Limits, &c.Contracts.Refusals
	return []setting{
		row("contract-max-schema-bytes", "N", strconv.Itoa(contract.DefaultMaxSchemaBytes), "largest schema source (stream::define, state::define, YAML streams:, a function's request_format and response_format); larger: invalid_argument", &l.MaxSchemaBytes, positiveInt),
		row("contract-max-schema-depth", "N", strconv.Itoa(contract.DefaultMaxSchemaDepth), "deepest nesting of objects and arrays in a schema", &l.MaxSchemaDepth, positiveInt),
		row("contract-max-evaluations", "N", strconv.Itoa(contract.DefaultMaxEvaluations), "subschemas a schema may evaluate at one place of a value, through $ref, anyOf, allOf, oneOf, not, if/then/else and recursion; more: the schema is refused", &l.MaxEvaluations, positiveInt),
		row("contract-max-value-depth", "N", strconv.Itoa(contract.DefaultMaxValueDepth), "deepest nesting of a value checked against a contract; deeper: invalid_argument", &l.MaxValueDepth, positiveInt),
		row("contract-max-validation-work", "N", strconv.Itoa(contract.DefaultMaxValidationWork), "a value's JSON nodes times the subschemas its schema evaluates at one place; more: invalid_argument before validation", &l.MaxValidationWork, positiveInt64),
		row("contract-max-pattern-work", "N", strconv.Itoa(contract.DefaultMaxPatternWork), "a value's bytes of strings times the pattern instructions that can apply to them; more: invalid_argument before matching", &l.MaxPatternWork, positiveInt64),
		row("contract-max-event-types", "N", strconv.Itoa(contract.DefaultMaxEventTypes), "event types one stream definition may declare", &l.MaxEventTypes, positiveInt),
		row("contract-cache-schemas", "N", strconv.Itoa(contract.DefaultMaxCachedSchemas), "compiled schemas kept in memory; the least recently used are compiled again when next needed", &l.MaxCachedSchemas, positiveInt),
		row("contract-cache-bytes", "N", strconv.Itoa(contract.DefaultMaxCachedBytes), "bytes of schema source the compiled schemas and the contracts kept in memory may come to", &l.MaxCachedBytes, positiveInt64),
		row("contract-define-timeout", "DURATION", contract.DefaultDefineTimeout.String(), "how long a new version of a contract may take to re-check (and migrate) the items and history it applies to; longer: refused, nothing stored", &l.DefineTimeout, positiveDuration),
		row("contract-define-max-items", "N", strconv.Itoa(contract.DefaultDefineMaxItems), "most stored items a new version of a contract re-checks; a stream or scope holding more is refused new versions", &l.DefineMaxItems, positiveInt),
		row("contract-define-max-bytes", "N", strconv.Itoa(contract.DefaultDefineMaxBytes), "most bytes of stored items a new version of a contract re-checks", &l.DefineMaxBytes, positiveInt64),
		row("contract-max-versions", "N", strconv.Itoa(contract.DefaultMaxVersions), "definitions one stream or scope keeps (every one is kept, and read by each new one); past it a new version is refused with conflict", &l.MaxVersions, positiveInt),
		row("contract-max-history-bytes", "N", strconv.Itoa(contract.DefaultMaxHistoryBytes), "bytes of schemas (item and event schemas) one stream's or scope's definitions may come to; past it a new version is refused with conflict", &l.MaxHistoryBytes, positiveInt64),
		row("contract-cache-streams", "N", strconv.Itoa(contract.DefaultMaxCachedContracts), "streams and scopes whose contract in force is kept in memory; the others are read from the store when next written", &l.MaxCachedContracts, positiveInt),
		row("contract-refusals-per-stream", "N", strconv.Itoa(contracts.DefaultRefusalsPerName), "recent contract refusals of writes kept per stream, on each engine, for engine::streams::refusals and the console; the oldest go first", &r.PerName, positiveInt),
		row("contract-refusals-stream-bytes", "N", strconv.Itoa(contracts.DefaultRefusalsNameBytes), "bytes those refusals of one stream may come to (each text cut at 512 bytes, no value kept)", &r.NameBytes, positiveInt),
		row("contract-refusals-bytes", "N", strconv.Itoa(contracts.DefaultRefusalsBytes), "bytes the recent refusals of every stream together may come to, on each engine", &r.Bytes, positiveInt),
	}
}

// streamContractFile is one entry of the YAML streams: list.
type streamContractFile struct {
	Name          string            `yaml:"name"`
	Schema        string            `yaml:"schema"`
	EventSchemas  map[string]string `yaml:"event_schemas"`
	Version       uint64            `yaml:"version"`
	Compatibility string            `yaml:"compatibility"`
}

// decodeStreamContracts reads the YAML streams: list and the schema files
// it names, relative to dir (the configuration file's).
func decodeStreamContracts(n *yaml.Node, dir string) ([]contract.Definition, error) {
	files, err := decodeStrict[[]streamContractFile](n)
	if err != nil {
		return nil, err
	}
	read := func(name, what, path string) (json.RawMessage, error) {
		if path == "" {
			return nil, fmt.Errorf("stream %q: %s: no file named", name, what)
		}
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("stream %q: %s: %v", name, what, err)
		}
		if !json.Valid(b) {
			return nil, fmt.Errorf("stream %q: %s: %s is not JSON", name, what, path)
		}
		return b, nil
	}
	seen := map[string]bool{}
	var out []contract.Definition
	for _, f := range files {
		if f.Name == "" || f.Version == 0 {
			return nil, fmt.Errorf("every stream needs a name and a version of 1 or more (got name %q, version %d)", f.Name, f.Version)
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("stream %q is listed twice", f.Name)
		}
		seen[f.Name] = true
		d := contract.Definition{Stream: f.Name, Version: f.Version}
		if f.Compatibility != "" {
			if d.Mode, err = contract.ParseMode(f.Compatibility); err != nil {
				return nil, fmt.Errorf("stream %q: %v", f.Name, err)
			}
		}
		if d.Item, err = read(f.Name, "schema", f.Schema); err != nil {
			return nil, err
		}
		for typ, path := range f.EventSchemas {
			s, err := read(f.Name, fmt.Sprintf("event_schemas[%q]", typ), path)
			if err != nil {
				return nil, err
			}
			if d.Events == nil {
				d.Events = map[string]json.RawMessage{}
			}
			d.Events[typ] = s
		}
		out = append(out, d)
	}
	return out, nil
}

// engineContracts keeps the contracts of streams and scopes in a store of
// their own, of the kind --store asks for (DATA_DIR/contracts, or the
// JetStream stream TRINE_CONTRACTS, which every engine of a fleet shares
// and watches). It is a Module so that it closes after the stream and
// state modules that use it.
type engineContracts struct {
	st             store.Store
	streams, state *contracts.Set
	stop           func() // the JetStream watch, or nil
}

func openContracts(cfg engineConfig, ns *natsembed.Server, log *slog.Logger) (_ *engineContracts, err error) {
	st, err := storeOpener(cfg, ns, log, "contracts", contractsJetStream)(store.Options{})
	if err != nil {
		return nil, fmt.Errorf("open contract store: %w", err)
	}
	c := contract.NewCompiler(cfg.Contracts.Limits)
	ec := &engineContracts{st: st, streams: contracts.NewSet(st, contracts.Streams, c), state: contracts.NewSet(st, contracts.State, c)}
	ec.streams.KeepRefusals(cfg.Contracts.Refusals)
	defer func() {
		if err != nil {
			_ = ec.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), jetStreamBootTimeout)
	defer cancel()
	if js, ok := st.(*jsstore.Store); ok {
		// Watch before reading, so that no definition falls between.
		if ec.stop, err = js.Watch(ctx, ec.changed); err != nil {
			return nil, err
		}
	}
	if err := ec.streams.Load(ctx); err != nil {
		return nil, err
	}
	if err := ec.state.Load(ctx); err != nil {
		return nil, err
	}
	return ec, nil
}

// changed hands a definition another engine stored to its Set.
func (ec *engineContracts) changed(k store.Key) {
	switch k.Stream {
	case contracts.Streams:
		ec.streams.Changed(k.Group)
	case contracts.State:
		ec.state.Changed(k.Group)
	}
}

// defineStreamsAtStart defines the streams of the YAML streams: list
// through m, whose stored items and history a new version is checked
// against.
func defineStreamsAtStart(m *streammodule.Module, s *contracts.Set, defs []contract.Definition, timeout time.Duration, log *slog.Logger) error {
	for _, d := range defs {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := defineAtStart(ctx, s, d, log, func(ctx context.Context, d contract.Definition) error {
			return m.Define(ctx, fmt.Sprintf("version %d", d.Version), d)
		})
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// defineAtStart defines a stream of the YAML streams: list with define. A
// version the stream already has is left as it is if it is the same
// definition, and stops the start if it is not; a stream already past it
// (defined since, through stream::define or by another engine) keeps its
// newer contract.
func defineAtStart(ctx context.Context, s *contracts.Set, d contract.Definition, log *slog.Logger, define func(context.Context, contract.Definition) error) error {
	history, err := s.History(ctx, d.Stream)
	if err != nil {
		return fmt.Errorf("streams: %q: %w", d.Stream, err)
	}
	for _, h := range history {
		if h.Version != d.Version {
			continue
		}
		if !sameDefinition(h, d) {
			return fmt.Errorf("streams: %q: version %d is already defined, differently; give the changed schema a higher version", d.Stream, d.Version)
		}
		return nil
	}
	if n := len(history); n > 0 && history[n-1].Version > d.Version {
		log.Info("stream contract in the configuration is older than the one in force; keeping the one in force", "stream", d.Stream, "configured", d.Version, "in_force", history[n-1].Version)
		return nil
	}
	if err := define(ctx, d); err != nil {
		var ee *engine.Error
		if errors.As(err, &ee) {
			return fmt.Errorf("streams: %q: %s", d.Stream, ee.Message)
		}
		return fmt.Errorf("streams: %q: %w", d.Stream, err)
	}
	return nil
}

// sameDefinition compares two definitions' schemas as JSON values.
func sameDefinition(a, b contract.Definition) bool {
	if (b.Mode != "" && a.Mode != b.Mode) || !sameJSON(a.Item, b.Item) || len(a.Events) != len(b.Events) {
		return false
	}
	for k, v := range a.Events {
		if !sameJSON(v, b.Events[k]) {
			return false
		}
	}
	return true
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// Register implements engine.Module: the modules register the functions.
func (ec *engineContracts) Register(*engine.Engine) error { return nil }

// Close stops the watch and closes the store.
func (ec *engineContracts) Close() error {
	if ec.stop != nil {
		ec.stop()
	}
	return ec.st.Close()
}
