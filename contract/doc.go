// Package contract holds the typed contracts of streams: JSON Schemas
// (draft 2020-12) for a stream's items and for each of its event types,
// with a version and a compatibility mode, and the rules that check a
// value against them and a new version against the old ones.
//
// It is a leaf: it imports the standard library and the validator
// (github.com/santhosh-tekuri/jsonschema/v6) only, so the stream and state
// modules, the gateway and tools can all use it. It knows nothing of how
// definitions are stored: a Registry persists through the Store port, and
// MemoryStore is the in-memory adapter.
//
//	c := contract.NewCompiler(contract.Limits{})
//	s, err := c.Compile([]byte(`{"type":"object","properties":{"title":{"type":"string"}}}`))
//	err = s.Validate([]byte(`{"title":1}`)) // /title: expected string, got number
//
// Schemas are refused at compile time when they could make the engine
// fetch, stall or grow: a $ref that is not a fragment of the schema itself
// (no network or file loads), a source over Limits.MaxSchemaBytes or
// nested deeper than Limits.MaxSchemaDepth, a $schema other than draft
// 2020-12, and a schema whose subschemas, followed through $ref and the
// in-place applicators (allOf, anyOf, oneOf, not, if/then/else,
// dependentSchemas), would be evaluated more than Limits.MaxEvaluations
// times at one place of a value, including through recursion, or a
// pattern compiling to more than MaxPatternInstructions. Patterns are Go
// regular expressions (RE2), linear in the input times the pattern's
// program, so a value whose string bytes times the pattern instructions
// that can apply to them exceed Limits.MaxPatternWork is refused before
// matching, as is a value nested deeper than Limits.MaxValueDepth (the
// validator's cost grows with the square of depth), and a number over
// MaxNumberChars or beyond
// ±MaxNumberExponent, which the validator turns into exact fractions.
//
// Errors carry a stable code through their Code method: invalid_argument
// for a value or a schema that is refused, conflict for a definition whose
// version or compatibility is refused.
//
// Concurrency: a Compiler, a *Schema, a Registry and a MemoryStore are safe
// for concurrent use. The package starts no goroutines.
package contract
