// Package codes defines the error codes of Trine's public contract, in the
// shape of grpc-go's codes package: one list, imported by the engine, its
// modules and transports, and the worker SDK, so that no second copy can
// drift. docs/reference.md says what each means and how each transport
// carries it. Spellings that differ at an edge (iii's, HTTP's) are mapped
// in one table at that edge (engine/iiiserver, httptrigger).
//
// Codes are stable strings: new ones may be added, none renamed. The
// package imports nothing but the standard library.
//
// Concurrency: the package holds constants only and starts no goroutines.
package codes

// Code is a stable error code.
type Code string

// The error codes.
const (
	FunctionNotFound    Code = "function_not_found"
	TriggerTypeNotFound Code = "trigger_type_not_found"
	TriggerNotFound     Code = "trigger_not_found"
	InvalidArgument     Code = "invalid_argument"
	DeadlineExceeded    Code = "deadline_exceeded"
	Cancelled           Code = "cancelled"
	WorkerDisconnected  Code = "worker_disconnected"
	HandlerError        Code = "handler_error"
	Unauthorized        Code = "unauthorized"
	Forbidden           Code = "forbidden"
	Overloaded          Code = "overloaded"
	Conflict            Code = "conflict"
	MessageTooLarge     Code = "message_too_large"
	Unavailable         Code = "unavailable"
	Internal            Code = "internal"
	// ValueTooLarge is a state value over the engine's limit. Its
	// spelling is iii's, which Trine's contract took over with the state
	// functions, so every transport carries it as is.
	ValueTooLarge Code = "VALUE_TOO_LARGE"
	// EnqueueError is an enqueue refused: an unknown queue, a fifo job
	// without its group field (iii's code).
	EnqueueError Code = "enqueue_error"
)

// All lists every code, in the order above.
func All() []Code {
	return []Code{FunctionNotFound, TriggerTypeNotFound, TriggerNotFound, InvalidArgument, DeadlineExceeded,
		Cancelled, WorkerDisconnected, HandlerError, Unauthorized, Forbidden, Overloaded, Conflict,
		MessageTooLarge, Unavailable, Internal, ValueTooLarge, EnqueueError}
}
