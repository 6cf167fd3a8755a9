package contract

import (
	"time"

	"github.com/trinehq/trine/internal/defaults"
)

// Limits bound what a schema may cost. The zero Limits is valid: every zero
// field takes its default.
type Limits struct {
	// MaxSchemaBytes is the largest schema source accepted. Default 256 KiB.
	MaxSchemaBytes int
	// MaxSchemaDepth is the deepest nesting of JSON objects and arrays in a
	// schema source. Default 64.
	MaxSchemaDepth int
	// MaxEvaluations is how many subschemas may be evaluated at one place
	// of a value (a property, an item, the root), counting every path
	// through $ref, allOf, anyOf, oneOf, not, if/then/else and
	// dependentSchemas, and through recursion. Validating a value then
	// costs at most its number of JSON nodes times this. Default 256.
	MaxEvaluations int
	// MaxValueDepth is the deepest nesting of objects and arrays in a
	// value checked against a schema; the validator's cost grows with the
	// square of it. Default 64.
	MaxValueDepth int
	// MaxValidationWork bounds what validating one value may cost: its
	// JSON nodes (values, items, properties) times the most subschemas
	// the schema evaluates at one place. A value over it is refused
	// before validation. Default 2,000,000 (400,000 nodes for a schema
	// evaluating 5 subschemas at a place, about 2 s of CPU at worst).
	MaxValidationWork int64
	// MaxPatternWork bounds the regular expression matching one value may
	// cost: the bytes of its strings and property names times the most
	// pattern instructions (pattern, patternProperties) that can apply at
	// one place of it. A value over it is refused before matching. A
	// schema without patterns has no such bound. Default 10,000,000
	// (a string of 10,000 bytes against a 1000-instruction pattern).
	MaxPatternWork int64
	// MaxCachedSchemas and MaxCachedBytes bound the compiled schemas a
	// Compiler keeps, by count and by the bytes of their sources; the
	// least recently used go first. Defaults 1024 and 64 MiB.
	MaxCachedSchemas int
	MaxCachedBytes   int64
	// MaxProblems is how many violations an error lists. Default 3.
	MaxProblems int
	// MaxMessageBytes bounds an error's message. Default 1 KiB.
	MaxMessageBytes int
	// MaxEventTypes is how many event types a definition may declare.
	// Default 256.
	MaxEventTypes int
	// MaxCachedContracts bounds the streams whose current contract (or
	// lack of one) a Registry keeps in memory; the others are read from
	// its Store when next needed. Their schemas count against
	// MaxCachedBytes too. Default 10000.
	MaxCachedContracts int
	// MaxVersions and MaxHistoryBytes bound a stream's history, which is
	// kept forever and read whole by every definition: how many
	// definitions, and how many bytes of their schemas (item and event
	// schemas). A new version past either is refused. Defaults 1000 and
	// 64 MiB.
	MaxVersions     int
	MaxHistoryBytes int64
	// DefineTimeout bounds re-checking (and migrating) what a stream or
	// scope holds when a new version is defined; past it the definition
	// is refused and nothing of it is stored. Default 30 s.
	DefineTimeout time.Duration
	// DefineMaxItems and DefineMaxBytes bound the stored items (and their
	// bytes of JSON) a definition re-checks; a stream holding more is
	// refused a new version (the re-check keeps each item's key and
	// sequence in memory meanwhile). Defaults 100,000 and 256 MiB.
	DefineMaxItems int
	DefineMaxBytes int64
}

// The defaults of Limits.
const (
	DefaultMaxSchemaBytes     = 256 << 10
	DefaultMaxSchemaDepth     = 64
	DefaultMaxEvaluations     = 256
	DefaultMaxCachedSchemas   = 1024
	DefaultMaxCachedBytes     = 64 << 20
	DefaultMaxPatternWork     = 10_000_000
	DefaultMaxValidationWork  = 2_000_000
	DefaultMaxValueDepth      = 64
	DefaultMaxProblems        = 3
	DefaultMaxMessageBytes    = 1 << 10
	DefaultMaxEventTypes      = 256
	DefaultMaxCachedContracts = 10000
	DefaultDefineTimeout      = 30 * time.Second
	DefaultDefineMaxItems     = 100_000
	DefaultDefineMaxBytes     = 256 << 20
	DefaultMaxVersions        = 1000
	DefaultMaxHistoryBytes    = 64 << 20
)

// MaxVersion is the highest version a definition may have: the largest
// integer JavaScript reads exactly (2^53-1), so that browsers tell every
// version apart.
const MaxVersion = 1<<53 - 1

func (l Limits) withDefaults() Limits {
	defaults.Positive(&l.MaxSchemaBytes, DefaultMaxSchemaBytes)
	defaults.Positive(&l.MaxSchemaDepth, DefaultMaxSchemaDepth)
	defaults.Positive(&l.MaxValueDepth, DefaultMaxValueDepth)
	defaults.Positive(&l.MaxEvaluations, DefaultMaxEvaluations)
	defaults.Positive(&l.MaxCachedSchemas, DefaultMaxCachedSchemas)
	defaults.Positive(&l.MaxProblems, DefaultMaxProblems)
	defaults.Positive(&l.MaxMessageBytes, DefaultMaxMessageBytes)
	defaults.Positive(&l.MaxEventTypes, DefaultMaxEventTypes)
	defaults.Positive(&l.MaxCachedContracts, DefaultMaxCachedContracts)
	defaults.Positive(&l.MaxValidationWork, DefaultMaxValidationWork)
	defaults.Positive(&l.MaxPatternWork, DefaultMaxPatternWork)
	defaults.Positive(&l.MaxCachedBytes, DefaultMaxCachedBytes)
	defaults.Positive(&l.DefineMaxItems, DefaultDefineMaxItems)
	defaults.Positive(&l.DefineTimeout, DefaultDefineTimeout)
	defaults.Positive(&l.DefineMaxBytes, DefaultDefineMaxBytes)
	defaults.Positive(&l.MaxVersions, DefaultMaxVersions)
	defaults.Positive(&l.MaxHistoryBytes, DefaultMaxHistoryBytes)
	return l
}
