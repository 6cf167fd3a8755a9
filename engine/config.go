package engine

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/trinehq/trine/contract"
	"github.com/trinehq/trine/internal/defaults"
)

// Config tunes an Engine. The zero Config is valid.
// Defaults of the calls one worker connection may have in flight.
const (
	DefaultMaxCallsPerWorker     = 1024
	DefaultMaxCallBytesPerWorker = 64 << 20
)

type Config struct {
	// DefaultTimeout bounds calls whose caller set no deadline. Default 30s.
	DefaultTimeout time.Duration
	// ShutdownGrace is how long Run, once its context ends, lets in-flight
	// calls finish before failing them. Default 10s.
	ShutdownGrace time.Duration
	// ProviderTimeout bounds how long a worker that provides a trigger type
	// may take to accept or refuse a trigger. Default 10s.
	ProviderTimeout time.Duration
	// Version is reported by engine::health::check. Default "dev".
	Version string
	// Observer, if set, is told the outcome of every awaited call, and of
	// every void call's start if it is a VoidObserver too.
	Observer Observer
	// TracerProvider, if set, traces every call the engine routes: one
	// span per call, named after the function, with its outcome, whose
	// context the call carries on to the worker or module that runs it.
	// Default: none, and tracing costs nothing.
	TracerProvider trace.TracerProvider
	// Logger receives lifecycle logs. Default: discard.
	Logger *slog.Logger
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Remote, if set, reaches worker functions served through other
	// engines: calls for ids no local worker serves go to it.
	Remote Remote
	// MaxTriggersPerWorker caps the triggers one worker connection owns.
	// Default 1000.
	MaxTriggersPerWorker int
	// MaxTriggers caps the triggers of all connections together. Default
	// 100000.
	MaxTriggers int
	// MaxCallsPerWorker caps the calls one worker connection has in
	// flight at once: awaited calls until they answer, void calls until
	// their function returns, enqueues until the queue took them. One
	// more is refused with overloaded. Default 1024.
	MaxCallsPerWorker int
	// MaxCallBytesPerWorker caps the payload bytes of those calls
	// together (a call larger than it still runs when it is the
	// connection's only one). Default 64 MiB.
	MaxCallBytesPerWorker int
	// MaxFunctionsPerWorker caps the functions one worker connection
	// serves. Default 1000.
	MaxFunctionsPerWorker int
	// MaxFunctions caps the functions registered on the engine, built-ins
	// included. Default 10000.
	MaxFunctions int
	// MaxRegistrationBytesPerWorker caps what one connection's
	// registrations hold: its functions' ids, descriptions, metadata and
	// schemas, and its triggers' ids, configs and metadata. Default 16 MiB.
	MaxRegistrationBytesPerWorker int
	// MaxRegistrationBytes caps what all connections' registrations hold
	// together. Default 256 MiB.
	MaxRegistrationBytes int
	// MaxListBytes caps the answers of the engine's listings (functions,
	// workers, triggers, the *::info functions): a larger one is refused
	// with message_too_large before it is encoded. Default 4 MiB less 16 KiB.
	MaxListBytes int
	// TriggerFireRate caps how often the triggers of one connection under
	// a listener policy fire, per second, with a burst of as many; a fire
	// past it is refused with overloaded. Trusted connections' triggers
	// are not limited. Default 200.
	TriggerFireRate float64
	// Contracts compiles the request and response formats of function
	// registrations, within its limits, and caches them. Default: a
	// compiler with contract's default limits.
	Contracts *contract.Compiler
}

// Remote connects an engine to the others of a fleet. The engine tells it
// which worker functions it serves (so that it can take their calls from
// other engines), and hands it calls for functions it does not serve.
type Remote interface {
	// Call runs c on another engine. It fails with function_not_found
	// when no engine serves c.FunctionID.
	Call(ctx context.Context, c Call) ([]byte, error)
	// Serve and Unserve report that the first worker replica of id has
	// joined this engine, or that its last has left. They are called in
	// order, under the engine's lock: they must not block or call back.
	Serve(id string)
	Unserve(id string)
}

// ElsewhereServer is a Remote that can tell whether another engine of the
// fleet serves a function. A connection under a listener policy may serve
// an id only where no other engine does: its replica would otherwise join
// a replica set of another policy or identity across the fleet.
type ElsewhereServer interface {
	ServedElsewhere(ctx context.Context, id string) (bool, error)
}

// Syncer is a Remote whose Serve takes effect later: Sync returns once
// every Serve and Unserve made before it reaches the other engines.
type Syncer interface {
	Sync(ctx context.Context) error
}

// TakeBacker is a Remote that can tell the other engines that a trusted
// worker here now serves a function, so that each drops the replicas that
// connections under a policy registered there first (TakeBackFromPolicies).
// TakeBack is called under the engine's lock: it must not block.
type TakeBacker interface {
	TakeBack(id string)
}

// Observer receives the outcome of every awaited call: its function id, its
// error code ("" on success) and how long it took. CallDone runs on the
// caller's goroutine and must be quick.
type Observer interface {
	CallDone(functionID string, code Code, d time.Duration)
}

// VoidObserver is an Observer that is also told of every void call: its
// function id, and the code of its refusal ("" when it started). A void
// call's own outcome is never known. VoidCall runs on the caller's
// goroutine and must be quick.
type VoidObserver interface {
	VoidCall(functionID string, code Code)
}

func (c Config) withDefaults() Config {
	defaults.Positive(&c.DefaultTimeout, 30*time.Second)
	defaults.Positive(&c.ShutdownGrace, 10*time.Second)
	defaults.Positive(&c.ProviderTimeout, 10*time.Second)
	if c.Version == "" {
		c.Version = "dev"
	}
	defaults.Logger(&c.Logger)
	if c.Now == nil {
		c.Now = time.Now
	}
	defaults.Positive(&c.MaxTriggersPerWorker, 1000)
	defaults.Positive(&c.MaxTriggers, 100000)
	defaults.Positive(&c.MaxCallsPerWorker, DefaultMaxCallsPerWorker)
	defaults.Positive(&c.MaxCallBytesPerWorker, DefaultMaxCallBytesPerWorker)
	defaults.Positive(&c.MaxFunctionsPerWorker, 1000)
	defaults.Positive(&c.MaxFunctions, 10000)
	defaults.Positive(&c.MaxRegistrationBytesPerWorker, 16<<20)
	defaults.Positive(&c.MaxRegistrationBytes, 256<<20)
	defaults.Positive(&c.MaxListBytes, 4<<20-16<<10)
	defaults.Positive(&c.TriggerFireRate, 200)
	if c.Contracts == nil {
		c.Contracts = contract.NewCompiler(contract.Limits{})
	}
	return c
}
