package iiiserver

import (
	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// iiiCodes maps Trine's error codes to iii's spelling of the same error,
// the one place where they differ: iii workers see iii's codes in every
// error body (invocationresult, triggerregistrationresult), and the codes
// they send map back, so that gRPC workers and Trine's SDK see Trine's.
// Codes not listed are the same in both (function_not_found,
// trigger_type_not_found) or already iii's (VALUE_TOO_LARGE,
// enqueue_error, INVALID_NAMESPACE), and pass unchanged, as do a
// worker's own codes.
var iiiCodes = map[engine.Code]string{
	codes.Forbidden:          "FORBIDDEN",          // iii's RBAC refusals
	codes.DeadlineExceeded:   "TIMEOUT",            // the iii SDKs' own code for a call past its timeout
	codes.WorkerDisconnected: "invocation_stopped", // iii's code for a call whose worker left
}

// trineCodes is iiiCodes reversed.
var trineCodes = func() map[string]engine.Code {
	m := make(map[string]engine.Code, len(iiiCodes))
	for trine, iii := range iiiCodes {
		m[iii] = trine
	}
	return m
}()

// toIII is iii's spelling of code.
func toIII(code engine.Code) string {
	if c, ok := iiiCodes[code]; ok {
		return c
	}
	return string(code)
}

// fromIII is Trine's code for a code an iii worker sent.
func fromIII(code string) engine.Code {
	if c, ok := trineCodes[code]; ok {
		return c
	}
	return engine.Code(code)
}

// rejectionCode maps a registration error to iii's codes: the SDKs treat
// FUNCTION_NAMESPACE_CONFLICT as "this function is not yours" and keep
// serving, and any other code as fatal.
func rejectionCode(err error) string {
	switch code := engine.AsError(err).Code; code {
	case codes.Conflict, codes.Forbidden:
		return "FUNCTION_NAMESPACE_CONFLICT"
	default:
		return toIII(code)
	}
}
