package store

import (
	"context"
	"errors"

	"golang.org/x/sync/semaphore"

	"github.com/trinehq/trine/codes"
	"github.com/trinehq/trine/engine"
)

// Defaults for Lists.
const (
	// DefaultMaxListBytes is the transports' default message bound
	// (--max-message-bytes): an answer past it could not be sent anyway.
	DefaultMaxListBytes = 4 << 20
	// DefaultMaxListBytesTotal lets sixteen answers of the largest size
	// be built at once.
	DefaultMaxListBytesTotal = 64 << 20
)

// Lists bounds the answers of the list functions: each holds at most
// MaxBytes, and one that would hold more is refused before it is built,
// pointing to paging; answers being built at once hold at most a total,
// and more wait for their turn (until their deadline). One Lists may
// serve several modules; it is safe for concurrent use.
type Lists struct {
	max   int
	total *semaphore.Weighted
}

// NewLists returns the bounds: maxBytes an answer (default
// DefaultMaxListBytes) and totalBytes for those built at once (default
// DefaultMaxListBytesTotal, raised to maxBytes).
func NewLists(maxBytes, totalBytes int) *Lists {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxListBytes
	}
	if totalBytes <= 0 {
		totalBytes = DefaultMaxListBytesTotal
	}
	return &Lists{max: maxBytes, total: semaphore.NewWeighted(int64(max(totalBytes, maxBytes)))}
}

// MaxBytes is the most an answer holds.
func (l *Lists) MaxBytes() int { return l.max }

// Build runs build, which reads at most maxBytes and encodes an answer,
// holding its share of the total meanwhile. An answer over MaxBytes all
// the same (names that JSON escapes) is refused with what.
func (l *Lists) Build(ctx context.Context, fn string, what func() error, build func(maxBytes int) ([]byte, error)) ([]byte, error) {
	if err := l.total.Acquire(ctx, int64(l.max)); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, engine.Errorf(codes.Overloaded, "%s: too many lists being built at once (--max-list-bytes-total); this one could not start before the call's deadline", fn)
		}
		return nil, err
	}
	defer l.total.Release(int64(l.max))
	out, err := build(l.max)
	if err == nil && len(out) > l.max {
		return nil, what()
	}
	return out, err
}

// TooLarge refuses an answer over MaxBytes: fn's what holds more, and
// paging says how to read it in pages.
func (l *Lists) TooLarge(fn, what, paging string) error {
	return engine.Errorf(codes.MessageTooLarge, "%s: %s holds more than %d bytes, more than one answer carries (--max-list-bytes); nothing was read past that. List it in pages: %s",
		fn, what, l.max, paging)
}

// Names bounds a list of names (groups, streams) that the store gives
// whole: the names after after, up to limit (0: all) and MaxBytes; more
// is true when some were left out. An unpaged call (paged false) whose
// names do not fit is refused with tooLarge.
func (l *Lists) Names(all []string, after string, limit int, paged bool, tooLarge func() error) (out []string, more bool, err error) {
	out = []string{}
	size := 2
	for _, n := range all {
		if after != "" && n <= after {
			continue
		}
		if (limit > 0 && len(out) == limit) || (len(out) > 0 && size+len(n)+8 > l.max) {
			more = true
			break
		}
		out, size = append(out, n), size+len(n)+8
	}
	if more && !paged {
		return nil, false, tooLarge()
	}
	return out, more, nil
}

// PageArgs reads the limit and after of a list call: 0 and "" when
// absent; a negative limit is invalid_argument.
func PageArgs(fn string, limit *int, after *string) (int, string, error) {
	l, a := 0, ""
	if limit != nil {
		if *limit < 0 {
			return 0, "", engine.Errorf(codes.InvalidArgument, "%s: limit is negative", fn)
		}
		l = *limit
	}
	if after != nil {
		a = *after
	}
	return l, a, nil
}
