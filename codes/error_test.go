package codes_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/trinehq/trine/codes"
)

// TestErrorIsByCode: an *Error with only a code (a sentinel) matches every
// error of its code; one with a message matches only itself.
func TestErrorIsByCode(t *testing.T) {
	unavailable := &codes.Error{Code: codes.Unavailable}
	closed := &codes.Error{Code: codes.Unavailable, Message: "closed"}
	shutdown := &codes.Error{Code: codes.Unavailable, Message: "engine shutting down"}
	wrapped := fmt.Errorf("call: %w", shutdown)
	for _, tt := range []struct {
		err, target error
		want        bool
	}{
		{shutdown, unavailable, true},
		{wrapped, unavailable, true},
		{closed, unavailable, true},
		{closed, closed, true},
		{shutdown, closed, false},
		{wrapped, &codes.Error{Code: codes.Internal}, false},
		{errors.New("x"), unavailable, false},
	} {
		if got := errors.Is(tt.err, tt.target); got != tt.want {
			t.Errorf("errors.Is(%v, %v) = %v", tt.err, tt.target, got)
		}
	}
	if got, want := shutdown.Error(), "trine: unavailable: engine shutting down"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := unavailable.Error(), "trine: unavailable"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestFromError: an *Error anywhere in the chain as is, context errors by
// their codes, anything else under the code given.
func TestFromError(t *testing.T) {
	own := &codes.Error{Code: codes.Conflict, Message: "seq"}
	for _, tt := range []struct {
		err  error
		want codes.Error
	}{
		{fmt.Errorf("wrapped: %w", own), *own},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.Error{Code: codes.DeadlineExceeded, Message: "deadline exceeded"}},
		{context.Canceled, codes.Error{Code: codes.Cancelled, Message: "call cancelled"}},
		{errors.New("boom"), codes.Error{Code: codes.HandlerError, Message: "boom"}},
	} {
		if got := codes.FromError(tt.err, codes.HandlerError); *got != tt.want {
			t.Errorf("FromError(%v) = %+v, want %+v", tt.err, *got, tt.want)
		}
	}
	if got := codes.FromError(nil, codes.Internal); got != nil {
		t.Errorf("FromError(nil) = %v", got)
	}
}

// FromError(nil) is on every successful call's path: it allocates nothing.
func TestFromErrorNilAllocates(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = codes.FromError(nil, codes.Internal) }); n != 0 {
		t.Fatalf("FromError(nil) allocates %v times, want 0", n)
	}
}
