// Package grpcserver is the gRPC transport of the engine: it serves
// trinev1.EngineService, adapting each Connect stream onto an engine.Session
// and each Trigger RPC onto Engine.Trigger. It holds no business logic; the
// one mapping from engine errors to gRPC statuses lives in status.go.
//
// Concurrency: each Connect stream has one reader (the handler goroutine),
// one writer goroutine draining a bounded queue, and a pool of goroutines
// (internal/workpool) that run the calls the worker makes and the
// registrations that may wait on a provider. The pool keeps up to
// keptWorkers of them between calls, each for Config.WorkerIdle. All of
// them end before, or promptly after, the handler returns.
package grpcserver
